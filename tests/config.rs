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

    // Each setting has a sane maximum: 100000 threads used to be accepted (and start ~1,700
    // threads at the next embedding); a cache of 2^30 entries could grow without bound.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
    for key in ["embed_threads", "index_threads"] {
        let before = get(&c, &format!("SELECT subcog_config('{key}')")).unwrap_or(-1);
        for bad in [100_000, cores * 4 + 1, i64::MAX] {
            let e = err(&c, &format!("SELECT subcog_config('{key}', {bad})"));
            assert!(
                e.contains(key)
                    && e.contains(&format!("0..={}", cores * 4))
                    && e.contains(&bad.to_string()),
                "{e}"
            );
        }
        assert_eq!(
            get(&c, &format!("SELECT subcog_config('{key}')")).ok(),
            Some(before),
            "{key} changed by a refused value"
        );
    }
    assert_eq!(
        get(
            &c,
            &format!("SELECT subcog_config('index_threads', {})", cores * 4)
        )
        .ok(),
        Some(cores * 4)
    );
    assert!(get(&c, "SELECT subcog_config('index_threads', 0)").is_ok());
    let e = err(&c, "SELECT subcog_config('embed_cache_size', 1073741824)");
    assert!(
        e.contains("embed_cache_size")
            && e.contains("0..=161319")
            && e.contains("1073741824")
            && e.contains("MiB"),
        "{e}"
    );
    assert_eq!(
        get(&c, "SELECT subcog_config('embed_cache_size', 161319)").ok(),
        Some(161319)
    );
    assert_eq!(
        get(&c, "SELECT subcog_config('embed_cache_size', 4096)").ok(),
        Some(4096)
    );
}
