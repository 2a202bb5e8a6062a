//! `subcog_integrity('mem')`: do the table, the FTS5 index, the stored vectors and the
//! HNSW snapshot agree?
//!
//! Checks, each reported as a count and, when wrong, as a problem line:
//! * every `mem_vectors` row belongs to a memory (`orphan_vectors`), every link joins two
//!   memories (`orphan_links`; for a branch, memories it shows: its own rows and its base's
//!   as of the fork that it did not mask);
//! * the FTS5 index has exactly one document per memory (`fts_missing`, `fts_orphans`,
//!   via FTS5's `mem_fts_docsize`) and passes FTS5's own `integrity-check` (a write
//!   statement: run only outside a read transaction; "skipped" when another connection
//!   holds the lock);
//! * every pending id is a memory or a deleted one (always true) and, for every id *not*
//!   pending, the HNSW snapshot holds its vector exactly (`hnsw_missing`, `hnsw_stale`),
//!   and holds nothing else (`hnsw_extra`) — the invariant of [`crate::ann`];
//! * every memory's dedup `hash` is the hash of its content (`stale_hashes`), so exact
//!   duplicates are found ([`crate::table::dedup`]);
//! * the history agrees with the table (`history_mismatches`, history on): each memory's
//!   changes chain (a change's `before` is the previous change's `after`) and its last
//!   change's `after` is its current row (NULL when it is deleted), so undoing the changes
//!   from the current table gives back every version ([`crate::store::history`]).
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

/// The report being built: counts by name and the problems found.
#[derive(Default)]
struct Report {
    counts: serde_json::Map<String, serde_json::Value>,
    problems: Vec<String>,
    /// Checks that could not run now, each `"check: why"`; not problems.
    skipped: Vec<String>,
}

impl Report {
    /// Records count `key` = `n`, and `problem` (given `n`) when `n > 0`.
    fn count(&mut self, key: &str, n: i64, problem: impl FnOnce(i64) -> Option<String>) {
        self.counts.insert(key.into(), n.into());
        if n > 0
            && let Some(p) = problem(n)
        {
            self.problems.push(p);
        }
    }
}

/// Checks the `memories` table `table` (optionally `schema.table`) and returns the JSON
/// report `{"table", "ok", "counts": {...}, "fts_integrity_check", "problems": [...],
/// "skipped": [...], "repair"}`. Read-only: `ok` is whether the checks that ran found no
/// problem; a check that could not run now (FTS5's own check while another connection
/// holds the lock or inside a read transaction) is listed in `skipped`, not a problem.
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
    let mut r = Report::default();
    check_rows(&store, &mut r)?;
    check_history(&store, &mut r)?;
    let fts_check = check_fts(&store, &schema, &table, &mut r)?;
    check_snapshot(&store, &mut r)?;
    Ok(json!({
        "table": name,
        "ok": r.problems.is_empty(),
        "counts": r.counts,
        "fts_integrity_check": fts_check,
        "problems": r.problems,
        "skipped": r.skipped,
        "repair": format!("INSERT INTO {}({}) VALUES ('rebuild')", quote(&table), quote(&table)),
    }))
}

/// Rows, vectors, links and dedup hashes.
fn check_rows(store: &Store, r: &mut Report) -> Result<()> {
    let (c, q) = (store.conn(), &store.q);
    r.count(
        "memories",
        count(c, &format!("SELECT count(*) FROM {}", q.content))?,
        |_| None,
    );
    r.count(
        "vectors",
        count(c, &format!("SELECT count(*) FROM {}", q.vectors))?,
        |_| None,
    );
    let orphans = format!(
        "SELECT count(*) FROM {} v WHERE NOT EXISTS (SELECT 1 FROM {} c WHERE c.id = v.id)",
        q.vectors, q.content
    );
    r.count("orphan_vectors", count(c, &orphans)?, |n| {
        Some(format!("{n} stored vectors belong to no memory"))
    });
    let orphan_links = format!(
        "SELECT count(*) FROM {l} l WHERE NOT EXISTS (SELECT 1 FROM {c} c WHERE c.id = l.src) \
         OR NOT EXISTS (SELECT 1 FROM {c} c WHERE c.id = l.dst)",
        l = q.links,
        c = q.content
    );
    // A branch's links may join memories it shows from its base (as of the fork).
    let orphans_found = match store.branch_info()? {
        None => count(c, &orphan_links)?,
        Some((base, fork)) => {
            // SAFETY: the same connection, not owned (the Store only runs statements on it).
            let own = unsafe { Connection::from_handle(c.handle())? };
            let base = Store::connect(own, &store.q.raw_schema, &base)?;
            let visible = store.branch_visible_ids(&base, fork)?;
            store
                .all_links()?
                .iter()
                .filter(|l| !visible.contains(&l.src) || !visible.contains(&l.dst))
                .count() as i64
        }
    };
    r.count("orphan_links", orphans_found, |n| {
        Some(format!(
            "{n} links between memories name a memory that does not exist"
        ))
    });
    r.count(
        "links",
        count(c, &format!("SELECT count(*) FROM {}", q.links))?,
        |_| None,
    );
    let mut bad = 0i64;
    store.scan_vectors(None, |_, blob| {
        if vector::decode(blob, store.opts.dim, "stored vector").is_err() {
            bad += 1;
        }
    })?;
    let dim = store.opts.dim;
    r.count("invalid_vectors", bad, |n| {
        Some(format!("{n} stored vectors are not {dim} finite float32"))
    });
    let stale = store.stale_hashes()?.len() as i64;
    r.count("stale_hashes", stale, |n| {
        Some(format!(
            "{n} memories have a dedup hash that is not their content's"
        ))
    });
    Ok(())
}

/// The history against the table: per memory, consecutive changes chain (a change's
/// `after` is the next one's `before`) and the last change leaves the current row. An
/// `after` not stored ([`super::history::after_elided`]) says only that the memory exists
/// after the change: the next `before` must be a row, or the memory must exist now.
fn check_history(store: &Store, r: &mut Report) -> Result<()> {
    if !store.history_on() {
        return Ok(());
    }
    r.count("history_changes", store.history_len()?, |_| None);
    /// What a change left: a stored row (or absence), or an elided row (some row).
    enum Left {
        Stored(Option<String>),
        Elided,
    }
    let mut bad = 0i64;
    let mut first_bad: Option<i64> = None;
    let mut last: Option<(i64, Left)> = None;
    let mut flag = |id: i64, bad: &mut i64| {
        *bad += 1;
        first_bad.get_or_insert(id);
    };
    let mut close = |prev: Option<(i64, Left)>, bad: &mut i64| -> Result<()> {
        if let Some((id, left)) = prev {
            let now = store.get(id)?.map(|row| super::history::row_json(&row));
            let ok = match left {
                Left::Stored(after) => now == after,
                Left::Elided => now.is_some(),
            };
            if !ok {
                flag(id, bad);
            }
        }
        Ok(())
    };
    store.row_chain(|id, op, before, after| {
        match last.take() {
            Some((prev, left)) if prev == id => {
                let ok = match left {
                    Left::Stored(prev_after) => prev_after == before,
                    Left::Elided => before.is_some(),
                };
                if !ok {
                    bad += 1;
                }
            }
            other => close(other, &mut bad)?,
        }
        let left = if super::history::after_elided(op, after.as_deref()) {
            Left::Elided
        } else {
            Left::Stored(after)
        };
        last = Some((id, left));
        Ok(())
    })?;
    close(last.take(), &mut bad)?;
    r.count("history_mismatches", bad, |n| {
        Some(format!(
            "{n} changes in the history do not chain to the table's rows (first: memory {})",
            first_bad.map_or("?".to_string(), |i| i.to_string())
        ))
    });
    Ok(())
}

/// The FTS5 index against the content table, and FTS5's own integrity-check (returned:
/// `ok`, `skipped: ...` or `failed: ...`).
fn check_fts(store: &Store, schema: &str, table: &str, r: &mut Report) -> Result<String> {
    let c = store.conn();
    let content = &store.q.content;
    let docsize = format!(
        "{}.{}",
        quote(schema),
        quote(&format!("{table}_fts_docsize"))
    );
    r.count(
        "fts_documents",
        count(c, &format!("SELECT count(*) FROM {docsize}"))?,
        |_| None,
    );
    let missing = format!(
        "SELECT count(*) FROM {content} c WHERE NOT EXISTS (SELECT 1 FROM {docsize} d WHERE d.id = c.id)"
    );
    r.count("fts_missing", count(c, &missing)?, |n| {
        Some(format!("{n} memories are missing from the FTS5 index"))
    });
    let orphans = format!(
        "SELECT count(*) FROM {docsize} d WHERE NOT EXISTS (SELECT 1 FROM {content} c WHERE c.id = d.id)"
    );
    r.count("fts_orphans", count(c, &orphans)?, |n| {
        Some(format!("{n} FTS5 documents belong to no memory"))
    });
    let fts = &store.q.fts_bare;
    // FTS5's check is an INSERT of a command: it changes nothing, but it is a write
    // statement. It is run only where that cannot change or wait on anything: never inside
    // a read transaction of this connection (it would become a write transaction, whose
    // COMMIT may then fail), and a lock held by another connection makes it "skipped", not
    // a problem. A read-only connection refuses it: skipped too.
    if c.transaction_state(Some(schema))? == rusqlite::TransactionState::Read {
        let why = "inside a read transaction (FTS5's integrity-check is a write statement \
                   and would make it a write transaction)";
        r.skipped.push(format!("fts5: {why}"));
        return Ok(format!("skipped: {why}"));
    }
    Ok(
        match c.execute(
            &format!(
                "INSERT INTO {}({fts}, rank) VALUES ('integrity-check', 0)",
                store.q.fts
            ),
            [],
        ) {
            Ok(_) => "ok".to_string(),
            Err(rusqlite::Error::SqliteFailure(f, _))
                if f.code == rusqlite::ErrorCode::ReadOnly =>
            {
                r.skipped.push("fts5: read-only connection".into());
                "skipped: read-only connection".to_string()
            }
            Err(rusqlite::Error::SqliteFailure(f, msg))
                if matches!(
                    f.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) =>
            {
                let why = msg.unwrap_or_else(|| "database is locked".into());
                r.skipped.push(format!(
                    "fts5: {why} (another connection holds the lock; try again later)"
                ));
                format!("skipped: {why}")
            }
            Err(e) => {
                r.problems.push(format!("FTS5 integrity-check failed: {e}"));
                format!("failed: {e}")
            }
        },
    )
}

/// The HNSW snapshot against the stored vectors and the pending list.
fn check_snapshot(store: &Store, r: &mut Report) -> Result<()> {
    let pending: HashSet<i64> = store.pending_ids()?.into_iter().collect();
    r.count("pending", pending.len() as i64, |_| None);
    r.counts.insert(
        "hnsw_generation".into(),
        store.generation()?.to_string().into(),
    );
    let (nodes, missing, stale, extra) = match Ann::new().snapshot_check(store, &pending) {
        Ok(x) => x,
        Err(e) => {
            r.problems
                .push(format!("the HNSW snapshot does not load: {e}"));
            (0, 0, 0, 0)
        }
    };
    r.counts.insert("hnsw_nodes".into(), nodes.into());
    r.count("hnsw_missing", missing as i64, |n| {
        Some(format!(
            "{n} vectors are neither pending nor in the HNSW snapshot"
        ))
    });
    r.count("hnsw_stale", stale as i64, |n| {
        Some(format!(
            "{n} vectors differ from their copy in the HNSW snapshot and are not pending"
        ))
    });
    r.count("hnsw_extra", extra as i64, |n| {
        Some(format!(
            "the HNSW snapshot holds {n} vectors of deleted memories that are not pending"
        ))
    });
    Ok(())
}
