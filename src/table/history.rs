//! The table's history at work: the table as of a version (for `AND as_of = ?`), the
//! diff of two versions, and the restore of one.
//!
//! * **As of** version `v`: the changes after `v` are undone ([`Store::undo_to`]) over the
//!   current rows, and the result is loaded into a private in-memory copy (a
//!   [`MemoryTable`] on its own in-memory SQLite connection: content, FTS5, vectors and
//!   links; above `exact_max` vectors its HNSW graph is built once, with the table's
//!   parameters, so KNN is planned as the table plans it). The query then runs
//!   through the ordinary [`MemoryTable::query`] of that copy, with the copy's clock set to
//!   the time of `v` (expiry and recency are judged then): the same retrievers, the same
//!   BM25 statistics (the FTS5 index holds exactly the rows of then), the same fusion and
//!   hidden-row rules. The copy of the last version asked for is kept per table and
//!   connection ([`MemoryTable::as_of_table`]) and reused while no change is recorded.
//! * **Restore** to `v`: each memory, vector and link that changed since `v` is written
//!   back through the store's ordinary write path (content, FTS5, vectors, pending ids,
//!   links), so the indexes follow exactly as for any UPDATE; the changes are themselves
//!   recorded (op `restore`), so a restore is undone by restoring again.
//! * **Diff** of `from` and `to`: the memories whose row differs between the two
//!   versions, read from the changes after the older one.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use rusqlite::Connection;

use super::MemoryTable;
use super::dedup::content_hash;
use super::query::{Answer, Query};
use crate::ann::Checkpoint;
use crate::error::{Error, Result};
use crate::options::DedupPolicy;
use crate::row::{Row, now_ms};
use crate::store::history::{TIME_MIN, changes_recorded, row_json};
use crate::store::{Store, VectorChange};
use crate::vector;

/// What an `as_of` value, a `subcog_restore` or `subcog_diff` argument names.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Target {
    /// A version number (below [`TIME_MIN`]).
    Version(i64),
    /// A time, ms since the Unix epoch (at least [`TIME_MIN`]).
    Time(i64),
    /// A snapshot's name.
    Snapshot(String),
}

impl Target {
    /// An integer: a version below [`TIME_MIN`], a time from it on.
    pub(crate) fn from_int(i: i64) -> Self {
        if i >= TIME_MIN {
            Target::Time(i)
        } else {
            Target::Version(i)
        }
    }
}

/// A version resolved: the version and the time the table is judged at (expiry,
/// recency) when queried as of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub(crate) version: i64,
    /// ms since the Unix epoch.
    pub(crate) clock: i64,
}

/// The cached as-of copy of a table: its key and the copy.
pub(crate) struct AsOfCache {
    version: i64,
    clock: i64,
    changes: u64,
    table: Rc<MemoryTable>,
}

/// `subcog_diff`'s row: the memory, `added`/`removed`/`changed`, and its row (JSON)
/// in each version.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DiffRow {
    pub(crate) id: i64,
    pub(crate) change: &'static str,
    pub(crate) before: Option<String>,
    pub(crate) after: Option<String>,
}

/// Resolves `target` against `store`'s history (`what`: the argument, for errors).
///
/// # Errors
/// [`Error::Invalid`] when the history is off, the snapshot is unknown, the version is in
/// the future or older than the history kept, or the time is before the history starts or
/// in the future.
pub(crate) fn resolve(store: &Store, what: &str, target: &Target) -> Result<Resolved> {
    let table = &store.table;
    if !store.history_on() {
        return Err(Error::invalid(format!(
            "{what}: {table} keeps no history (created with history=off)"
        )));
    }
    let current = store.version()?;
    let floor = store.history_floor()?;
    let now = now_ms();
    let time_of = |v: i64| -> Result<i64> {
        Ok(match store.version_time(v)? {
            Some(t) => t,
            None if v == current => now,
            None => store.history_since()?.max(0),
        })
    };
    match target {
        Target::Version(v) => {
            if *v > current {
                return Err(Error::invalid(format!(
                    "{what}: version {v} is in the future ({table} is at version {current})"
                )));
            }
            if *v < floor {
                return Err(Error::invalid(format!(
                    "{what}: version {v} is older than the history {table} keeps (oldest \
                     version {floor}; see the history_keep option)"
                )));
            }
            Ok(Resolved {
                version: *v,
                clock: time_of(*v)?,
            })
        }
        Target::Time(t) => {
            if *t > now {
                return Err(Error::invalid(format!(
                    "{what}: time {t} ms is in the future (now is {now} ms since the Unix epoch)"
                )));
            }
            let version = match store.version_at_time(*t)? {
                Some(v) => v,
                None if floor == 0 && *t >= store.history_since()? => 0,
                None => {
                    return Err(Error::invalid(format!(
                        "{what}: time {t} ms is before the history {table} keeps (it starts \
                         at {} ms, version {floor})",
                        store.history_since()?
                    )));
                }
            };
            if version < floor {
                return Err(Error::invalid(format!(
                    "{what}: time {t} ms is before the history {table} keeps (oldest version \
                     {floor})"
                )));
            }
            Ok(Resolved { version, clock: *t })
        }
        Target::Snapshot(name) => {
            let Some(s) = store.snapshot(name)? else {
                let known: Vec<String> = store
                    .snapshots()?
                    .into_iter()
                    .take(10)
                    .map(|s| format!("'{}'", s.name))
                    .collect();
                return Err(Error::invalid(format!(
                    "{what}: {table} has no snapshot named '{name}' (snapshots: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                )));
            };
            if s.version < floor || s.version > current {
                return Err(Error::Corrupt(format!(
                    "{what}: snapshot '{name}' of {table} names version {}, outside the \
                     history kept ({floor}..={current})",
                    s.version
                )));
            }
            Ok(Resolved {
                version: s.version,
                clock: s.created_at,
            })
        }
    }
}

/// The rows of memories `ids` at version `v` given the changes after it (`undo`): the
/// undone row, else the current one.
fn row_then(store: &Store, undo_rows: &HashMap<i64, Option<Row>>, id: i64) -> Result<Option<Row>> {
    match undo_rows.get(&id) {
        Some(r) => Ok(r.clone()),
        None => store.get(id),
    }
}

/// The memories whose row differs between versions `from` and `to` of `store` (already
/// resolved), by id: `added` (absent at `from`), `removed` (absent at `to`), `changed`.
///
/// # Errors
/// SQLite errors; [`Error::Corrupt`] for a history row that does not parse.
pub(crate) fn diff(store: &Store, from: i64, to: i64) -> Result<Vec<DiffRow>> {
    let (lo, hi) = (from.min(to), from.max(to));
    // For each memory changed after `lo`: its state at `lo` (first change after lo) and
    // at `hi` (first change after hi; none: its current row).
    let mut at_lo: BTreeMap<i64, Option<String>> = BTreeMap::new();
    let mut at_hi: HashMap<i64, Option<String>> = HashMap::new();
    store.row_changes_after(lo, |r| {
        if r.version <= hi {
            at_lo.entry(r.id).or_insert(r.before);
        } else if at_lo.contains_key(&r.id) {
            at_hi.entry(r.id).or_insert(r.before);
        }
        Ok(())
    })?;
    let mut out = Vec::new();
    for (id, lo_row) in at_lo {
        let hi_row = match at_hi.remove(&id) {
            Some(r) => r,
            None => store.get(id)?.map(|r| row_json(&r)),
        };
        let (before, after) = if from <= to {
            (lo_row, hi_row)
        } else {
            (hi_row, lo_row)
        };
        let change = match (&before, &after) {
            (None, None) => continue,
            (None, Some(_)) => "added",
            (Some(_), None) => "removed",
            (Some(b), Some(a)) if a == b => continue,
            _ => "changed",
        };
        out.push(DiffRow {
            id,
            change,
            before,
            after,
        });
    }
    Ok(out)
}

impl MemoryTable {
    /// The time searches judge expiry and recency at: the as-of copy's version time, else
    /// now.
    pub(crate) fn now(&self) -> i64 {
        self.clock.get().unwrap_or_else(now_ms)
    }

    /// Runs `query` against the table as of `target` ([`Target`]).
    ///
    /// # Errors
    /// [`resolve`]'s errors; the query's own.
    pub(crate) fn query_as_of(&self, query: Query, target: &Target) -> Result<Answer> {
        if self.branch.is_some() {
            return Err(self.branch_as_of());
        }
        let at = resolve(&self.store, "as_of", target)?;
        let copy = self.as_of_table(at)?;
        let scan = matches!(query, Query::Scan { .. });
        let mut answer = copy.query(query)?;
        if scan {
            // A scan's rows are read when reached: read them now, from the copy.
            let ids: Vec<i64> = answer.results.iter().map(|f| f.id).collect();
            answer.rows = copy.store.rows_of(&ids)?;
        }
        answer.as_of = Some(super::query::AsOf {
            version: Some(at.version),
            table: copy,
        });
        Ok(answer)
    }

    /// The private copy of this table as of `at` (cached: the last one asked for, while no
    /// change has been recorded since it was built).
    fn as_of_table(&self, at: Resolved) -> Result<Rc<MemoryTable>> {
        let changes = changes_recorded();
        if let Some(c) = self.as_of.borrow().as_ref()
            && c.version == at.version
            && c.clock == at.clock
            && c.changes == changes
        {
            return Ok(Rc::clone(&c.table));
        }
        self.as_of.replace(None);
        let table = Rc::new(self.build_as_of(at)?);
        self.as_of.replace(Some(AsOfCache {
            version: at.version,
            clock: at.clock,
            changes,
            table: Rc::clone(&table),
        }));
        Ok(table)
    }

    /// Builds the in-memory copy of this table as of `at`.
    fn build_as_of(&self, at: Resolved) -> Result<MemoryTable> {
        let table = copy_at(&self.store, at.version, |_| Ok(0))?;
        table.clock.set(Some(at.clock));
        Ok(table)
    }

    /// Brings the table back to version `target` (a snapshot, version or time): every
    /// memory, vector and link changed since is written back through the ordinary write
    /// path, recorded as op `restore`. Returns how many memories were written.
    ///
    /// # Errors
    /// [`resolve`]'s errors; SQLite errors.
    pub(crate) fn restore(&self, target: &Target) -> Result<usize> {
        self.flush()?;
        let store = &self.store;
        let at = resolve(store, "restore", target)?;
        let undo = store.undo_to(at.version)?;
        let dim = store.opts.dim;
        let mut ids: Vec<i64> = undo
            .rows
            .keys()
            .chain(undo.vectors.keys())
            .copied()
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let mut written = 0;
        store.with_op("restore", || {
            for id in ids {
                let then = row_then(store, &undo.rows, id)?;
                let now = store.get(id)?;
                let blob_then = undo.vectors.get(&id);
                let decoded = blob_then
                    .and_then(|b| b.as_deref())
                    .and_then(|b| vector::decode_stored(b, dim));
                match (then, now) {
                    (None, None) => {}
                    (None, Some(cur)) => {
                        store.delete(&cur)?;
                        written += 1;
                    }
                    (Some(row), None) => {
                        let change = match (&decoded, blob_then) {
                            (Some(v), _) => VectorChange::Set(v),
                            (None, Some(None)) => VectorChange::Remove,
                            (None, _) if store.opts.auto_embed => VectorChange::Defer,
                            (None, _) => VectorChange::Remove,
                        };
                        store.insert(&row, &content_hash(&row.content), change, false)?;
                        written += 1;
                    }
                    (Some(row), Some(cur)) => {
                        let vector_differs = match blob_then {
                            Some(b) => store.embedding_blob(id)?.as_deref() != b.as_deref(),
                            None => false,
                        };
                        if row == cur && !vector_differs {
                            continue;
                        }
                        let change = match (&decoded, blob_then) {
                            _ if !vector_differs => VectorChange::Keep,
                            (Some(v), _) => VectorChange::Set(v),
                            _ => VectorChange::Remove,
                        };
                        store.update(&cur, &row, change)?;
                        written += 1;
                    }
                }
            }
            Ok(())
        })?;
        // Links last: the memories they join exist again (a DELETE above removed the
        // links of the memories it deleted).
        let mut keys: Vec<_> = undo.links.iter().collect();
        keys.sort_by(|a, b| a.0.cmp(b.0));
        for ((src, kind, dst), then) in keys {
            let cur = store
                .links_of(&[*src])?
                .into_iter()
                .find(|l| l.src == *src && l.dst == *dst && &l.kind == kind);
            match then {
                Some(l) if cur.as_ref() != Some(l) => {
                    let ends = store.exists(l.src)? && store.exists(l.dst)?;
                    if ends {
                        store.add_link(l.src, l.dst, &l.kind, l.weight, l.created_at)?;
                    }
                }
                None if cur.is_some() => {
                    store.remove_link(*src, *dst, Some(kind))?;
                }
                _ => {}
            }
        }
        self.checkpoint_write()?;
        Ok(written)
    }
}

/// The private in-memory copy of `store` as of `version` (history, auto_embed and dedup
/// off), with `overlay` applied to the copy's store before the copy is committed (a
/// branch's own rows and masks, [`super::branch`]; it returns how many vectors it added).
/// The copy's clock is left unset (now).
///
/// # Errors
/// SQLite errors; [`Error::Corrupt`] for a history row that does not parse.
pub(crate) fn copy_at(
    store: &Store,
    version: i64,
    overlay: impl FnOnce(&Store) -> Result<usize>,
) -> Result<MemoryTable> {
    let undo = store.undo_to(version)?;
    let mut opts = store.opts.clone();
    opts.history = false;
    opts.auto_embed = false;
    opts.dedup = DedupPolicy::Off;
    let conn = Connection::open_in_memory()?;
    let copy = Store::create(conn, "main", &store.table, opts)?;
    copy.conn().execute_batch("BEGIN")?;
    let dim = store.opts.dim;
    let vectors = std::cell::Cell::new(0usize);
    let put = |row: &Row, blob: Option<&[u8]>| -> Result<()> {
        let v = blob.and_then(|b| vector::decode_stored(b, dim));
        vectors.set(vectors.get() + usize::from(v.is_some()));
        let change = match &v {
            Some(v) => VectorChange::Set(v),
            None => VectorChange::Keep,
        };
        copy.insert(row, &content_hash(&row.content), change, false)
    };
    let mut seen: std::collections::HashSet<i64> = std::collections::HashSet::new();
    store.scan_rows_with_vectors(|row, blob| {
        seen.insert(row.id);
        let then = match undo.rows.get(&row.id) {
            Some(None) => return Ok(()),
            Some(Some(r)) => r.clone(),
            None => row,
        };
        let blob = match undo.vectors.get(&then.id) {
            Some(b) => b.clone(),
            None => blob,
        };
        put(&then, blob.as_deref())
    })?;
    for (id, then) in &undo.rows {
        if let Some(row) = then
            && !seen.contains(id)
        {
            let blob = match undo.vectors.get(id) {
                Some(b) => b.clone(),
                None => store.embedding_blob(*id)?,
            };
            put(row, blob.as_deref())?;
        }
    }
    let mut links: HashMap<(i64, String, i64), crate::store::Link> = store
        .all_links()?
        .into_iter()
        .map(|l| ((l.src, l.kind.clone(), l.dst), l))
        .collect();
    for (key, then) in &undo.links {
        match then {
            Some(l) => {
                links.insert(key.clone(), l.clone());
            }
            None => {
                links.remove(key);
            }
        }
    }
    for l in links.values() {
        copy.add_link(l.src, l.dst, &l.kind, l.weight, l.created_at)?;
    }
    // KNN is planned as the table plans its own: an exact scan up to exact_max
    // vectors, else the table's own HNSW snapshot, shared: every id whose row or
    // vector changed since `v` (and every id pending in the table) is pending in the
    // copy, so the graph walk skips it and it is scanned exactly from the copy's
    // vectors: the invariant of `crate::ann` holds for the copy. Distances are
    // recomputed exactly either way.
    let (generation, saved) = store.snapshot_state()?;
    let shared = generation != 0 && generation == saved;
    if shared {
        copy.save_hnsw(&store.hnsw_blob()?, generation, store.hnsw_unit()?)?;
        copy.clear_pending()?;
        let mut pending = store.pending_ids()?;
        pending.extend(undo.rows.keys().chain(undo.vectors.keys()));
        pending.sort_unstable();
        pending.dedup();
        copy.mark_pending_all(&pending)?;
    }
    vectors.set(vectors.get() + overlay(&copy)?);
    copy.conn().execute_batch("COMMIT")?;
    let table = MemoryTable::new(copy, "main");
    // No snapshot to share (none yet, or a deferred one not written until COMMIT):
    // the copy builds its own graph once.
    if !shared && vectors.get() > table.store.opts.exact_max {
        table
            .ann
            .borrow_mut()
            .maybe_checkpoint(&table.store, Checkpoint::Force)?;
    }
    Ok(table)
}

/// The per-table cache cell of the as-of copy.
pub(crate) type AsOfCell = RefCell<Option<AsOfCache>>;
