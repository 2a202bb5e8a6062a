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
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;

use rusqlite::Connection;

use super::MemoryTable;
use super::dedup::content_hash;
use super::query::{Answer, Query};
use crate::ann::Checkpoint;
use crate::error::{Error, Result};
use crate::options::DedupPolicy;
use crate::row::{Row, now_ms};
use crate::store::bulk::{BulkLoad, RawRow, raw_content, raw_id, raw_row};
use crate::store::history::{LinkKey, TIME_MIN, changes_recorded, row_json};
use crate::store::{Link, Store, VectorChange};
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
        let table = copy_at(&self.store, at.version, &HashSet::new(), |_| Ok(()))?;
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

/// A copy being filled by [`copy_at`]: the bulk load into the copy's store, the links
/// it will hold, and the ids its pending list gets. A branch's working copy adds the
/// branch's own rows and links through it ([`Filling::add`], [`Filling::links`]).
pub(crate) struct Filling<'c> {
    load: BulkLoad<'c>,
    /// The table's `dim` (a stored vector is `dim * 4` bytes; another length is not
    /// copied, as it cannot be decoded).
    dim: usize,
    /// The links the copy gets, by `(src, kind, dst)`; written when the copy is done.
    pub(crate) links: HashMap<LinkKey, Link>,
    /// Ids of the base as of the version (written or hidden): pending when the copy
    /// builds its own graph.
    then_ids: Vec<i64>,
    /// Ids pending in any case: the hidden ones and the ones added by [`Filling::add`].
    marked: Vec<i64>,
    /// Vectors copied (the hidden rows' included), for the graph decision.
    vectors: usize,
}

impl Filling<'_> {
    /// Adds a memory: `row` with its dedup hash (`hash`: as stored with the row; `None`:
    /// computed), its stored vector `blob` when it is one (`dim` float32), and per
    /// `unembedded` (`Some(near_check)`) the note that it awaits its embedding (no
    /// vector) or its near-duplicate check (`near_check`); marks it pending. As
    /// [`Store::insert`] with the vector set (or deferred) does.
    ///
    /// # Errors
    /// SQLite errors (an id already in the copy); [`Error::Corrupt`] for a row whose id or
    /// content has the wrong type.
    pub(crate) fn add(
        &mut self,
        row: &RawRow<'_>,
        hash: Option<&[u8; 32]>,
        blob: Option<&[u8]>,
        unembedded: Option<bool>,
    ) -> Result<()> {
        let id = raw_id(row)?;
        self.load.row(row, &hash_of(row, hash)?)?;
        match blob.filter(|b| b.len() == self.dim * 4) {
            Some(b) => {
                self.vectors += 1;
                self.load.vector(id, b)?;
                if unembedded == Some(true) {
                    self.load.unembedded(id, true)?;
                }
            }
            None => {
                if let Some(near_check) = unembedded {
                    self.load.unembedded(id, near_check)?;
                }
            }
        }
        self.marked.push(id);
        Ok(())
    }

    /// A memory of the base as of the version (`hash`: as for [`Filling::add`]): written,
    /// or when `hidden` (a branch wrote it) left out, its links dropped and its id
    /// pending (as a DELETE of it would).
    fn base_row(
        &mut self,
        row: &RawRow<'_>,
        hash: Option<&[u8; 32]>,
        blob: Option<&[u8]>,
        hidden: bool,
    ) -> Result<()> {
        let id = raw_id(row)?;
        self.then_ids.push(id);
        let blob = blob.filter(|b| b.len() == self.dim * 4);
        if hidden {
            self.vectors += usize::from(blob.is_some());
            self.marked.push(id);
            return Ok(());
        }
        self.load.row(row, &hash_of(row, hash)?)?;
        if let Some(b) = blob {
            self.vectors += 1;
            self.load.vector(id, b)?;
        }
        Ok(())
    }
}

/// The dedup hash a copied row gets: `stored`, the hash stored with the very row read
/// (the content hash written with it, [`content_hash`]), else the content hash computed.
///
/// # Errors
/// [`Error::Corrupt`] for content that is not UTF-8 text.
fn hash_of(row: &RawRow<'_>, stored: Option<&[u8; 32]>) -> Result<[u8; 32]> {
    match stored {
        Some(h) => Ok(*h),
        None => Ok(content_hash(raw_content(row)?)),
    }
}

/// The private in-memory copy of `store` as of `version` (history, auto_embed and dedup
/// off). `hide`: memories of the base left out of the copy (a branch's masked ones: they
/// are pending, their links kept for the overlay to judge); `overlay` then adds to it
/// (a branch's own rows and links, [`super::branch`], which drops the links of the
/// memories it deleted) before the copy is committed. The
/// copy's clock is left unset (now).
///
/// Built in bulk ([`crate::store::bulk`]): the base's rows, dedup hashes and vectors are
/// read in one statement on the caller's connection (so its uncommitted changes are seen)
/// and written as stored (a row the undo gives back gets its hash computed), through
/// statements prepared once; the FTS5 index is filled once at the end. The result is the
/// table a row-by-row [`Store::insert`] of the same rows would give: the same rows,
/// vectors, links, pending ids, embedding notes and FTS5 documents (so the same BM25
/// statistics).
///
/// # Errors
/// SQLite errors; [`Error::Corrupt`] for a history row that does not parse.
pub(crate) fn copy_at(
    store: &Store,
    version: i64,
    hide: &HashSet<i64>,
    overlay: impl FnOnce(&mut Filling<'_>) -> Result<()>,
) -> Result<MemoryTable> {
    let undo = store.undo_to(version)?;
    let mut opts = store.opts.clone();
    opts.history = false;
    opts.auto_embed = false;
    opts.dedup = DedupPolicy::Off;
    let conn = Connection::open_in_memory()?;
    let copy = Store::create(conn, "main", &store.table, opts)?;
    copy.conn().execute_batch("BEGIN")?;
    let (generation, saved) = store.snapshot_state()?;
    let shared = generation != 0 && generation == saved;
    let vectors = {
        let mut f = Filling {
            load: copy.bulk_load()?,
            dim: store.opts.dim,
            links: HashMap::new(),
            then_ids: Vec::new(),
            marked: Vec::new(),
            vectors: 0,
        };
        // The rows of then: the current ones with the undo applied, then the ones deleted
        // since (in id order).
        let mut seen: HashSet<i64> = HashSet::new();
        store.scan_raw(|row, hash, blob| {
            let id = raw_id(row)?;
            let blob = match undo.vectors.get(&id) {
                Some(b) => b.as_deref(),
                None => blob,
            };
            match undo.rows.get(&id) {
                None => f.base_row(row, hash, blob, hide.contains(&id)),
                Some(then) => {
                    seen.insert(id);
                    match then {
                        None => Ok(()),
                        Some(r) => f.base_row(&raw_row(r), None, blob, hide.contains(&id)),
                    }
                }
            }
        })?;
        let mut gone: Vec<(&i64, &Row)> = undo
            .rows
            .iter()
            .filter(|(id, _)| !seen.contains(id))
            .filter_map(|(id, then)| then.as_ref().map(|r| (id, r)))
            .collect();
        gone.sort_unstable_by_key(|(id, _)| **id);
        for (id, row) in gone {
            let blob = match undo.vectors.get(id) {
                Some(b) => b.clone(),
                None => store.embedding_blob(*id)?,
            };
            f.base_row(&raw_row(row), None, blob.as_deref(), hide.contains(id))?;
        }
        f.links = store
            .all_links()?
            .into_iter()
            .map(|l| ((l.src, l.kind.clone(), l.dst), l))
            .collect();
        for (key, then) in &undo.links {
            match then {
                Some(l) => {
                    f.links.insert(key.clone(), l.clone());
                }
                None => {
                    f.links.remove(key);
                }
            }
        }
        // A hidden memory's links stay: the overlay knows which hidden memories it
        // deleted (their links go) and which it rewrote (their links stay).
        overlay(&mut f)?;
        let mut links: Vec<&Link> = f.links.values().collect();
        links.sort_unstable_by(|a, b| (a.src, &a.kind, a.dst).cmp(&(b.src, &b.kind, b.dst)));
        for l in links {
            f.load.link(l)?;
        }
        // KNN is planned as the table plans its own: an exact scan up to exact_max
        // vectors, else the table's own HNSW snapshot, shared: every id whose row or
        // vector changed since `v` (and every id pending in the table) is pending in the
        // copy, so the graph walk skips it and it is scanned exactly from the copy's
        // vectors: the invariant of `crate::ann` holds for the copy. Without a snapshot
        // to share, every id is pending until the copy builds its own graph. Distances
        // are recomputed exactly either way.
        let mut pending = if shared {
            let mut p = store.pending_ids()?;
            p.extend(undo.rows.keys().chain(undo.vectors.keys()));
            p
        } else {
            std::mem::take(&mut f.then_ids)
        };
        pending.append(&mut f.marked);
        pending.sort_unstable();
        pending.dedup();
        for id in pending {
            f.load.pending(id)?;
        }
        let vectors = f.vectors;
        f.load.finish()?;
        vectors
    };
    if shared {
        copy.save_hnsw_from(store, generation, store.hnsw_vectors()?)?;
    }
    copy.conn().execute_batch("COMMIT")?;
    let table = MemoryTable::new(copy, "main");
    // No snapshot to share (none yet, or a deferred one not written until COMMIT):
    // the copy builds its own graph once.
    if !shared && vectors > table.store.opts.exact_max {
        table
            .ann
            .borrow_mut()
            .maybe_checkpoint(&table.store, Checkpoint::Force)?;
    }
    Ok(table)
}

/// The per-table cache cell of the as-of copy.
pub(crate) type AsOfCell = RefCell<Option<AsOfCache>>;
