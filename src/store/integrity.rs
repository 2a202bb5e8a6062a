//! `subcog_integrity('mem')`: do the table, the FTS5 index, the stored vectors and the
//! HNSW snapshot agree?
//!
//! Checks, each reported as a count and, when wrong, as a problem line:
//! * every `mem_vectors` row belongs to a memory (`orphan_vectors`);
//! * the FTS5 index has exactly one document per memory (`fts_missing`, `fts_orphans`,
//!   via FTS5's `mem_fts_docsize`) and passes FTS5's own `integrity-check`;
//! * every pending id is a memory or a deleted one (always true) and, for every id *not*
//!   pending, the HNSW snapshot holds its vector exactly (`hnsw_missing`, `hnsw_stale`),
//!   and holds nothing else (`hnsw_extra`) — the invariant of [`crate::ann`];
//! * every memory's dedup `hash` is the hash of its content (`stale_hashes`), so exact
//!   duplicates are found ([`crate::table::dedup`]).
//!
//! `INSERT INTO mem(mem) VALUES ('rebuild')` repairs everything it can report.

use std::collections::HashSet;

use rusqlite::Connection;
use serde_json::json;

use crate::ann::Ann;
use crate::error::Result;
use crate::names::quote;
use crate::store::Store;
use crate::vector;

fn count(conn: &Connection, sql: &str) -> Result<i64> {
    Ok(conn.query_row(sql, [], |r| r.get(0))?)
}

/// Checks the `memories` table `table` (optionally `schema.table`) and returns the JSON
/// report `{"table", "ok", "counts": {...}, "problems": [...]}`.
///
/// # Errors
/// [`crate::error::Error::Invalid`] if `table` is not a `memories` table; SQLite errors.
pub(crate) fn check(conn: Connection, name: &str) -> Result<serde_json::Value> {
    let (schema, table) =
        crate::names::resolve(&conn, &format!("subcog_integrity('{name}')"), name)?;
    let store = Store::connect(conn, &schema, &table).map_err(|e| {
        crate::error::Error::invalid(format!(
            "subcog_integrity('{name}'): not a memories table ({e})"
        ))
    })?;
    let c = store.conn();
    let s = quote(&schema);
    let t = |suffix: &str| format!("{s}.{}", quote(&format!("{table}_{suffix}")));
    let mut problems: Vec<String> = Vec::new();

    let memories = count(c, &format!("SELECT count(*) FROM {}", t("content")))?;
    let vectors = count(c, &format!("SELECT count(*) FROM {}", t("vectors")))?;
    let orphan_vectors = count(
        c,
        &format!(
            "SELECT count(*) FROM {} v WHERE NOT EXISTS (SELECT 1 FROM {} c WHERE c.id = v.id)",
            t("vectors"),
            t("content")
        ),
    )?;
    if orphan_vectors > 0 {
        problems.push(format!(
            "{orphan_vectors} stored vectors belong to no memory"
        ));
    }
    let orphan_links = count(
        c,
        &format!(
            "SELECT count(*) FROM {l} l WHERE NOT EXISTS (SELECT 1 FROM {c} c WHERE c.id = l.src) \
             OR NOT EXISTS (SELECT 1 FROM {c} c WHERE c.id = l.dst)",
            l = t("links"),
            c = t("content")
        ),
    )?;
    if orphan_links > 0 {
        problems.push(format!(
            "{orphan_links} links between memories name a memory that does not exist"
        ));
    }
    let links = count(c, &format!("SELECT count(*) FROM {}", t("links")))?;
    let bad_vectors = {
        let mut bad = 0i64;
        store.scan_vectors(None, |_, blob| {
            if vector::decode(blob, store.opts.dim, "stored vector").is_err() {
                bad += 1;
            }
        })?;
        bad
    };
    if bad_vectors > 0 {
        problems.push(format!(
            "{bad_vectors} stored vectors are not {} finite float32",
            store.opts.dim
        ));
    }

    let docsize = t("fts_docsize");
    let fts_docs = count(c, &format!("SELECT count(*) FROM {docsize}"))?;
    let fts_missing = count(
        c,
        &format!(
            "SELECT count(*) FROM {} c WHERE NOT EXISTS (SELECT 1 FROM {docsize} d WHERE d.id = c.id)",
            t("content")
        ),
    )?;
    let fts_orphans = count(
        c,
        &format!(
            "SELECT count(*) FROM {docsize} d WHERE NOT EXISTS (SELECT 1 FROM {} c WHERE c.id = d.id)",
            t("content")
        ),
    )?;
    if fts_missing > 0 {
        problems.push(format!(
            "{fts_missing} memories are missing from the FTS5 index"
        ));
    }
    if fts_orphans > 0 {
        problems.push(format!("{fts_orphans} FTS5 documents belong to no memory"));
    }
    let fts = quote(&format!("{table}_fts"));
    // FTS5's check is an INSERT of a command: it writes nothing, but a read-only
    // connection refuses it, so it is skipped there (and said so).
    let fts_check = match c.execute(
        &format!("INSERT INTO {s}.{fts}({fts}, rank) VALUES ('integrity-check', 0)"),
        [],
    ) {
        Ok(_) => "ok".to_string(),
        Err(rusqlite::Error::SqliteFailure(f, _)) if f.code == rusqlite::ErrorCode::ReadOnly => {
            "skipped: read-only connection".to_string()
        }
        Err(e) => {
            problems.push(format!("FTS5 integrity-check failed: {e}"));
            format!("failed: {e}")
        }
    };

    let stale_hashes = store.stale_hashes()?.len();
    if stale_hashes > 0 {
        problems.push(format!(
            "{stale_hashes} memories have a dedup hash that is not their content's"
        ));
    }

    let pending: HashSet<i64> = store.pending_ids()?.into_iter().collect();
    let generation = store.generation()?;
    let mut ann = Ann::new();
    let (nodes, missing, stale, extra) = match ann.snapshot_check(&store, &pending) {
        Ok(r) => r,
        Err(e) => {
            problems.push(format!("the HNSW snapshot does not load: {e}"));
            (0, 0, 0, 0)
        }
    };
    if missing > 0 {
        problems.push(format!(
            "{missing} vectors are neither pending nor in the HNSW snapshot"
        ));
    }
    if stale > 0 {
        problems.push(format!(
            "{stale} vectors differ from their copy in the HNSW snapshot and are not pending"
        ));
    }
    if extra > 0 {
        problems.push(format!(
            "the HNSW snapshot holds {extra} vectors of deleted memories that are not pending"
        ));
    }

    Ok(json!({
        "table": name,
        "ok": problems.is_empty(),
        "counts": {
            "memories": memories,
            "vectors": vectors,
            "fts_documents": fts_docs,
            "pending": pending.len(),
            "hnsw_nodes": nodes,
            "hnsw_generation": generation.to_string(),
            "orphan_vectors": orphan_vectors,
            "links": links,
            "orphan_links": orphan_links,
            "invalid_vectors": bad_vectors,
            "fts_missing": fts_missing,
            "fts_orphans": fts_orphans,
            "hnsw_missing": missing,
            "hnsw_stale": stale,
            "hnsw_extra": extra,
            "stale_hashes": stale_hashes,
        },
        "fts_integrity_check": fts_check,
        "problems": problems,
        "repair": format!("INSERT INTO {}({}) VALUES ('rebuild')", quote(&table), quote(&table)),
    }))
}
