//! Property tests (proptest) of every SQL entry point with random values: the vtab's
//! INSERT/UPDATE/MATCH arguments, `embed` (short strings: it runs the model), `vec_f32`,
//! `vec_distance`, `vec_search`, `subcog_config`, the options parser (`CREATE VIRTUAL
//! TABLE ... USING memories(<random>)`) and the FTS query builder (`subcog_fts_query`).
//! Each asserts: no panic (the process survives, and no error is a caught panic or an
//! internal error), every failure is a clean SQL error, and the table stays consistent
//! (`subcog_integrity` ok). Regression cases found by these runs are kept as plain tests
//! at the end.
//!
//! `make test` runs a bounded number of cases per property (`PROPTEST_CASES`, default 48;
//! the whole file takes a few seconds); `make stress` runs many more. Bundled SQLite.

mod common;

use common::{assert_integrity, blob, mem};
use proptest::prelude::*;
use proptest::test_runner::Config;
use rusqlite::Connection;
use rusqlite::types::Value;

/// Cases per property: `PROPTEST_CASES`, else 48.
fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(48);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// A clean SQL error: SQLite's or the module's own message, never a caught panic or an
/// internal error (SQL errors are what every entry point must return for bad input).
fn clean<T>(r: rusqlite::Result<T>, ctx: &str) -> Result<Option<T>, TestCaseError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(
                !msg.contains("caught panic") && !msg.contains("internal error"),
                "{ctx}: {msg}"
            );
            prop_assert!(
                matches!(
                    e,
                    rusqlite::Error::SqliteFailure(..)
                        | rusqlite::Error::SqlInputError { .. }
                        | rusqlite::Error::ModuleError(_)
                        | rusqlite::Error::UserFunctionError(_)
                ),
                "{ctx}: not an SQL error: {e:?}"
            );
            Ok(None)
        }
    }
}

/// Any SQL value, biased towards the shapes the entry points take: vectors as BLOBs and
/// JSON, JSON objects and arrays, durations, huge and non-finite numbers.
fn sql_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<i64>().prop_map(Value::Integer),
        (-3i64..3).prop_map(Value::Integer),
        prop_oneof![
            any::<f64>(),
            Just(f64::INFINITY),
            Just(-0.0),
            Just(1e300),
            Just(0.5)
        ]
        .prop_map(Value::Real),
        ".{0,24}".prop_map(Value::Text),
        prop::collection::vec(any::<u8>(), 0..24).prop_map(Value::Blob),
        prop::collection::vec(any::<f32>(), 4).prop_map(|v| Value::Blob(blob(&v))),
        prop::collection::vec(-1e20f32..1e20, 4).prop_map(|v| Value::Blob(blob(&v))),
        "\\[[-0-9eE., ]{0,24}\\]".prop_map(Value::Text),
        "\\{\"[a-z]{0,4}\": ?[0-9\\[\\]\"a-z{}]{0,8}\\}".prop_map(Value::Text),
        "\\[(\"[a-z]{0,4}\",? ?){0,3}\\]".prop_map(Value::Text),
        "[0-9]{1,4}[smhdw]?".prop_map(Value::Text),
    ]
}

/// A 4-d cosine table `mem` with two rows.
fn table() -> Connection {
    let c = mem();
    c.execute_batch(
        "CREATE VIRTUAL TABLE mem USING memories(dim=4, auto_embed=off);
         INSERT INTO mem(id, content, embedding) VALUES (1, 'apples are red', vec_f32('[1,0,0,0]'));
         INSERT INTO mem(id, content, embedding) VALUES (2, 'sky is blue', vec_f32('[0,1,0,0]'));",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    c
}

/// The writable columns of a `memories` table.
const COLUMNS: &[&str] = &[
    "id",
    "content",
    "namespace",
    "tags",
    "metadata",
    "source",
    "importance",
    "created_at",
    "updated_at",
    "expires_at",
    "embedding",
    "ttl",
];

proptest! {
    #![proptest_config(config())]

    #[test]
    fn vtab_insert_and_update_arguments(
        cols in prop::sample::subsequence(COLUMNS, 1..COLUMNS.len()),
        vals in prop::collection::vec(sql_value(), COLUMNS.len()),
        set in prop::sample::select(COLUMNS),
        set_val in sql_value(),
        target in 1i64..4,
    ) {
        let c = table();
        let names = cols.join(", ");
        let marks = (1..=cols.len()).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ");
        let sql = format!("INSERT INTO mem({names}) VALUES ({marks})");
        let params = rusqlite::params_from_iter(vals.iter().take(cols.len()));
        clean(c.execute(&sql, params), &format!("{sql} {vals:?}"))?;
        let sql = format!("UPDATE mem SET {set} = ?1 WHERE id = ?2");
        clean(c.execute(&sql, rusqlite::params![set_val, target]), &format!("{sql} {set_val:?}"))?;
        clean(c.execute("DELETE FROM mem WHERE id = ?1", [target + 1]), "DELETE")?;
        assert_integrity(&c, "mem", "after random writes");
    }

    #[test]
    fn vtab_match_k_and_hidden_arguments(
        column in prop::sample::select(&["embedding", "content", "mem"][..]),
        q in sql_value(),
        k in sql_value(),
        ns in sql_value(),
        ranking in sql_value(),
        limit in -2i64..5000,
    ) {
        let c = table();
        let sql = format!(
            "SELECT id, distance, score, explain FROM mem WHERE {column} MATCH ?1 AND k = ?2 \
             AND namespace = ?3 AND ranking = ?4 LIMIT {limit}"
        );
        let r = c.prepare(&sql).and_then(|mut st| {
            let rows = st.query_map(rusqlite::params![q, k, ns, ranking], |r| r.get::<_, i64>(0))?;
            rows.collect::<rusqlite::Result<Vec<i64>>>()
        });
        // A hybrid search embeds its text: without the model that is an error, also clean.
        clean(r, &format!("{sql} {q:?} {k:?} {ns:?} {ranking:?}"))?;
        let sql = format!("SELECT id FROM mem WHERE {column} MATCH ?1 LIMIT {limit}");
        let r = c.prepare(&sql).and_then(|mut st| {
            st.query_map([&q], |r| r.get::<_, i64>(0))?.collect::<rusqlite::Result<Vec<i64>>>()
        });
        clean(r, &format!("{sql} {q:?}"))?;
        assert_integrity(&c, "mem", "after random searches");
    }

    #[test]
    fn vector_functions(a in sql_value(), b in sql_value(), metric in sql_value()) {
        let c = mem();
        clean(c.query_row("SELECT vec_f32(?1)", [&a], |r| r.get::<_, Option<Vec<u8>>>(0)), "vec_f32")?;
        clean(c.query_row("SELECT vec_to_json(?1)", [&a], |r| r.get::<_, Option<String>>(0)), "vec_to_json")?;
        let d = clean(
            c.query_row("SELECT vec_distance(?1, ?2, ?3)", rusqlite::params![a, b, metric], |r| {
                r.get::<_, Option<f64>>(0)
            }),
            "vec_distance",
        )?;
        if let Some(Some(d)) = d {
            prop_assert!(d.is_finite(), "vec_distance({a:?}, {b:?}, {metric:?}) = {d}");
        }
    }

    #[test]
    fn vec_search_arguments(name in prop_oneof![
        Just("mem".to_string()), Just("MEM".to_string()), Just("main.mem".to_string()),
        ".{0,12}".prop_map(String::from),
    ], v in sql_value(), k in sql_value()) {
        let c = table();
        let r = c.prepare("SELECT id, distance FROM vec_search(?1, ?2, ?3)").and_then(|mut st| {
            st.query_map(rusqlite::params![name, v, k], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, f64>(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()
        });
        if let Some(hits) = clean(r, &format!("vec_search({name:?}, {v:?}, {k:?})"))? {
            for (_, d) in hits {
                prop_assert!(d.is_finite());
            }
        }
        assert_integrity(&c, "mem", "after vec_search");
    }

    #[test]
    fn subcog_config_arguments(key in prop_oneof![
        Just("embed_cache_size".to_string()), Just("index_threads".to_string()),
        Just("embed_threads".to_string()), Just("EMBED_THREADS".to_string()),
        ".{0,16}".prop_map(String::from),
    ], value in sql_value()) {
        let c = mem();
        // A valid new embed_threads reloads the model (~0.3 s): only invalid values for it.
        let value = match (key.to_ascii_lowercase().as_str(), &value) {
            ("embed_threads", Value::Integer(i)) if (0..=1024).contains(i) => Value::Integer(-1),
            _ => value,
        };
        clean(c.query_row("SELECT subcog_config(?1)", [&key], |r| r.get::<_, i64>(0)), "read")?;
        let set = clean(
            c.query_row("SELECT subcog_config(?1, ?2)", rusqlite::params![key, value], |r| r.get::<_, i64>(0)),
            &format!("subcog_config({key:?}, {value:?})"),
        )?;
        // A value set is what reads back (0 means "the default": any positive count).
        if let (Some(n), Value::Integer(i)) = (set, &value) {
            if *i > 0 || key.eq_ignore_ascii_case("embed_cache_size") {
                prop_assert_eq!(n, *i);
            } else {
                prop_assert!(n > 0);
            }
        }
        // Back to the defaults for the other tests of this binary.
        let _ = c.query_row("SELECT subcog_config('index_threads', 0)", [], |r| r.get::<_, i64>(0));
        let _ = c.query_row("SELECT subcog_config('embed_cache_size', 4096)", [], |r| r.get::<_, i64>(0));
    }

    #[test]
    fn options_parser(opts in prop_oneof![
        ".{0,30}".prop_map(String::from),
        prop::collection::vec(
            (prop::sample::select(&[
                "dim", "metric", "m", "ef_construction", "ef_search", "auto_embed", "exact_max",
                "dedup", "dedup_threshold", "recency_weight", "importance_weight", "half_life",
                "hybrid_depth", "hybrid_keyword_weight", "pii", "nope", "DIM",
            ][..]), "[-0-9a-z.\"' =]{0,8}"),
            0..4,
        ).prop_map(|kv| kv.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")),
    ]) {
        let c = mem();
        let sql = format!("CREATE VIRTUAL TABLE t USING memories({opts})");
        if clean(c.execute_batch(&sql), &sql)?.is_some() {
            // Created: usable and consistent.
            let dim: i64 = c
                .query_row("SELECT value FROM t_config WHERE key = 'dim'", [], |r| r.get::<_, String>(0))
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(384);
            let v: Vec<f32> = (0..dim).map(|i| if i == 0 { 1.0 } else { 0.0 }).collect();
            clean(
                c.execute("INSERT INTO t(content, embedding) VALUES ('x', ?1)", [blob(&v)]),
                &sql,
            )?;
            assert_integrity(&c, "t", &sql);
        }
    }

    #[test]
    fn fts_query_builder(text in prop_oneof![
        ".{0,40}".prop_map(String::from),
        "[a-z\"*()^:+ -]{0,30}".prop_map(String::from),
        Just("\"unbalanced NEAR(".to_string()),
        Just("AND OR NOT NEAR".to_string()),
    ]) {
        let c = table();
        let q = clean(
            c.query_row("SELECT subcog_fts_query(?1)", [&text], |r| r.get::<_, Option<String>>(0)),
            "subcog_fts_query",
        )?;
        prop_assert!(q.is_some(), "subcog_fts_query failed on {text:?}");
        if let Some(Some(fts)) = q {
            // What it builds is always a valid FTS5 query.
            let r = c.prepare("SELECT id FROM mem WHERE content MATCH ?1").and_then(|mut st| {
                st.query_map([&fts], |r| r.get::<_, i64>(0))?.collect::<rusqlite::Result<Vec<_>>>()
            });
            prop_assert!(r.is_ok(), "{text:?} -> {fts:?}: {r:?}");
        }
    }
}

/// `embed` on short random strings: each a 384-float unit vector (needs the model; the
/// property is skipped, saying so, when it is not installed).
#[test]
fn embed_short_strings() {
    let c = mem();
    let info: String = c
        .query_row("SELECT subcog_info()", [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{e}"));
    if !info.contains("\"model_present\":true") {
        eprintln!("embed_short_strings: SKIPPED (model not installed)");
        return;
    }
    let mut cfg = config();
    cfg.cases = cfg.cases.min(64) / 4 + 1;
    proptest!(cfg, |(text in ".{0,12}")| {
        let v = clean(
            c.query_row("SELECT embed(?1)", [&text], |r| r.get::<_, Vec<u8>>(0)),
            "embed",
        )?;
        let v = v.unwrap_or_default();
        prop_assert_eq!(v.len(), 384 * 4, "embed({:?})", text);
        let n: f32 = common::unblob(&v).iter().map(|x| x * x).sum::<f32>().sqrt();
        prop_assert!((n - 1.0).abs() < 1e-3, "embed({:?}) norm {}", text, n);
    });
}

// Regression cases (the properties found no crash in 1,500 cases each; this one is the
// issue-15 case they would have found, kept as a plain test).

/// A huge finite vector poisoned distances before the norm check (issue 15).
#[test]
fn regression_huge_vector_distance_is_finite_or_refused() {
    let c = mem();
    let r = c.query_row(
        "SELECT vec_distance(?1, ?1, 'l2')",
        [blob(&[3e19, 3e19, 0.0, 0.0])],
        |r| r.get::<_, f64>(0),
    );
    let e = common::err_of(r);
    assert!(e.contains("too large"), "{e}");
}
