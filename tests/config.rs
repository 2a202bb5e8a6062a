//! subcog_config: reading and changing the process-wide settings, and their errors; the
//! embedding cache's size and counters in subcog_info(). Needs no model. Bundled SQLite.

mod common;

use common::{err_of, mem};
use rusqlite::Connection;

fn get(c: &Connection, sql: &str) -> rusqlite::Result<i64> {
    c.query_row(sql, [], |r| r.get(0))
}

fn info(c: &Connection) -> serde_json::Value {
    let s: String = c
        .query_row("SELECT subcog_info()", [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{e}"));
    serde_json::from_str(&s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

fn err(c: &Connection, sql: &str) -> String {
    err_of(get(c, sql))
}

#[test]
fn settings_read_change_and_reject_bad_values() {
    let c = mem();
    // One connection changes them for the process; another sees the change.
    let d = mem();
    assert_eq!(
        get(&c, "SELECT subcog_config('index_threads', 3)").ok(),
        Some(3)
    );
    assert_eq!(
        get(&d, "SELECT subcog_config('INDEX_THREADS')").ok(),
        Some(3)
    );
    assert_eq!(info(&d)["index_threads"], 3);
    let default = get(&c, "SELECT subcog_config('index_threads', 0)").unwrap_or(-1);
    assert!(
        (1..=4).contains(&default),
        "default index_threads {default}"
    );

    assert_eq!(
        get(&c, "SELECT subcog_config('embed_cache_size', 10)").ok(),
        Some(10)
    );
    assert_eq!(info(&c)["embed_cache"]["capacity"], 10);
    assert_eq!(
        get(&c, "SELECT subcog_config('embed_cache_size', 0)").ok(),
        Some(0)
    );
    assert_eq!(info(&c)["embed_cache"]["capacity"], 0);
    assert_eq!(
        get(&c, "SELECT subcog_config('embed_cache_size', 4096)").ok(),
        Some(4096)
    );
    let cache = &info(&c)["embed_cache"];
    for key in ["entries", "hits", "misses"] {
        assert!(cache[key].is_u64(), "embed_cache.{key} missing: {cache}");
    }
    let threads = get(&c, "SELECT subcog_config('embed_threads')").unwrap_or(-1);
    assert!(threads >= 1, "embed_threads {threads}");

    let e = err(&c, "SELECT subcog_config('threads')");
    assert!(
        e.contains("embed_cache_size") && e.contains("'threads'"),
        "{e}"
    );
    let e = err(&c, "SELECT subcog_config('index_threads', -1)");
    assert!(e.contains("index_threads") && e.contains("-1"), "{e}");
    let e = err(&c, "SELECT subcog_config('index_threads', 'many')");
    assert!(e.contains("INTEGER") && e.contains("TEXT"), "{e}");
    let e = err(&c, "SELECT subcog_config(1)");
    assert!(e.contains("expected TEXT"), "{e}");
}
