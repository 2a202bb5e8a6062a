//! `<table>_history` (one row per change, in the transaction of the change) and
//! `<table>_snapshots` (names of versions).
//!
//! Every INSERT, UPDATE and DELETE of a memory written through [`Store::insert`],
//! [`Store::update`] and [`Store::delete`], and every link added or removed
//! ([`super::links`]: the `supersedes` links of the near-duplicate check, `subcog_link`), adds
//! one row: `version` (INTEGER PRIMARY KEY: the largest + 1, so versions only grow; the
//! newest row is never purged), `time` (ms since the Unix epoch), `op`, `id` (the memory;
//! a link's `src`), `before`/`after` (the row as JSON, [`row_json`], or the link, NULL for
//! none), `vector_changed` and `embedding`: the vector the change *replaced* (NULL: there was
//! none) when the change touched the vector.
//!
//! The `after` of an `insert` or `update` is not stored (NULL, [`ELIDED_AFTER`]): it is
//! the `before` of the memory's next change, or its current row when there is none, which
//! [`Store::history_of`] reads back. It was a third of the file's history bytes (about 350
//! bytes per memory). Rows written by earlier builds keep theirs, and are read as stored.
//!
//! The table as of version `v` is the current table with every change after `v` undone:
//! for each memory (and each link) the `before` of its first change after `v`, for each
//! vector the `embedding` of its first vector change after `v` ([`Store::undo_to`]). So the
//! history needs no copy of the table at its start (a format 3 table upgraded in place
//! starts its history at version 0 = the table at the upgrade), and a query as of `v` costs
//! the changes since `v`.
//!
//! Because the rows are ordinary SQLite data written in the same transaction, a rolled back
//! change leaves no history.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{OptionalExtension, ffi, params};
use serde::{Deserialize, Serialize};

use super::{Link, Store};
use crate::error::{Error, Result};
use crate::options::Retention;
use crate::row::{Row, now_ms};

/// The ops whose `after` is not stored: the memory exists after them, as the next change's
/// `before` or the current row says (the `merge`, `restore` and `merge_branch` labels of
/// the same writes keep theirs).
pub(crate) const ELIDED_AFTER: [&str; 2] = ["insert", "update"];

/// Whether a memory change's `after` was left out ([`ELIDED_AFTER`]): `op` is one of
/// those and the stored `after` is NULL.
pub(crate) fn after_elided(op: &str, after: Option<&str>) -> bool {
    after.is_none() && ELIDED_AFTER.contains(&op)
}

/// `op` of a link added (or its weight replaced).
pub(crate) const LINK: &str = "link";
/// `op` of a link removed.
pub(crate) const UNLINK: &str = "unlink";

/// `_config` key: the oldest version the table can be reconstructed at (0 until a purge
/// of the history drops older changes).
const FLOOR: &str = "history_floor";
/// `_config` key: when the history started (table created or upgraded to format 4), ms.
const SINCE: &str = "history_since";

/// Integers of at least this value given as a version are read as a time in ms since the
/// Unix epoch (10^12 ms is 2001-09-09): `as_of = 42` is version 42,
/// `as_of = 1765000000000` a time.
pub(crate) const TIME_MIN: i64 = 1_000_000_000_000;

/// Changes recorded by this process (any table): part of the key of cached as-of
/// reconstructions, so a reconstruction is never reused across a write that a rollback
/// could later undo.
static CHANGES: AtomicU64 = AtomicU64::new(0);

/// Counts `n` changes recorded outside [`Store::record`] (a branch's copied changes).
pub(crate) fn count_changes(n: u64) {
    CHANGES.fetch_add(n, Ordering::Relaxed);
}

/// The number of changes recorded by this process so far.
pub(crate) fn changes_recorded() -> u64 {
    CHANGES.load(Ordering::Relaxed)
}

/// A memory's row as stored in `before`/`after`: the columns of [`Row`], `tags` and
/// `metadata` as their JSON text (exact, so a restore writes back the same bytes).
#[derive(Serialize, Deserialize)]
struct RowJson {
    id: i64,
    content: String,
    namespace: String,
    tags: String,
    metadata: String,
    source: Option<String>,
    importance: f64,
    created_at: i64,
    updated_at: i64,
    expires_at: Option<i64>,
}

/// A link as stored in `before`/`after`.
#[derive(Serialize, Deserialize)]
struct LinkJson {
    src: i64,
    dst: i64,
    kind: String,
    weight: f64,
    created_at: i64,
}

/// `row` as the JSON text of `before`/`after` (keys in [`Row`]'s order).
pub(crate) fn row_json(r: &Row) -> String {
    serde_json::to_string(&RowJson {
        id: r.id,
        content: r.content.clone(),
        namespace: r.namespace.clone(),
        tags: r.tags.clone(),
        metadata: r.metadata.clone(),
        source: r.source.clone(),
        importance: r.importance,
        created_at: r.created_at,
        updated_at: r.updated_at,
        expires_at: r.expires_at,
    })
    .unwrap_or_default()
}

/// The [`Row`] of a `before`/`after` text ([`row_json`]).
///
/// # Errors
/// [`Error::Corrupt`] when the text is not such a row.
pub(crate) fn row_from_json(s: &str) -> Result<Row> {
    let j: RowJson = serde_json::from_str(s)
        .map_err(|e| Error::Corrupt(format!("history row is not a memory's JSON ({e})")))?;
    Ok(Row {
        id: j.id,
        content: j.content,
        namespace: j.namespace,
        tags: j.tags,
        metadata: j.metadata,
        source: j.source,
        importance: j.importance,
        created_at: j.created_at,
        updated_at: j.updated_at,
        expires_at: j.expires_at,
    })
}

fn link_json(l: &Link) -> String {
    serde_json::to_string(&LinkJson {
        src: l.src,
        dst: l.dst,
        kind: l.kind.clone(),
        weight: l.weight,
        created_at: l.created_at,
    })
    .unwrap_or_default()
}

pub(crate) fn link_from_json(s: &str) -> Result<Link> {
    let j: LinkJson = serde_json::from_str(s)
        .map_err(|e| Error::Corrupt(format!("history link is not a link's JSON ({e})")))?;
    Ok(Link {
        src: j.src,
        dst: j.dst,
        kind: j.kind,
        weight: j.weight,
        created_at: j.created_at,
    })
}

/// A link's key: `(src, kind, dst)`.
pub(crate) type LinkKey = (i64, String, i64);

/// What undoing every change after a version gives ([`Store::undo_to`]): only the
/// memories, vectors and links that changed since; everything else is as it is now.
#[derive(Debug, Default)]
pub(crate) struct Undo {
    /// Memory id -> its row then (`None`: it did not exist).
    pub(crate) rows: HashMap<i64, Option<Row>>,
    /// Memory id -> its stored vector BLOB then (`None`: it had none).
    pub(crate) vectors: HashMap<i64, Option<Vec<u8>>>,
    /// Link -> the link then (`None`: absent).
    pub(crate) links: HashMap<LinkKey, Option<Link>>,
}

/// One row of `<table>_history` (without the embedding).
#[derive(Debug, Clone)]
pub(crate) struct Record {
    /// The version this change made.
    pub(crate) version: i64,
    /// When, ms since the Unix epoch.
    pub(crate) time: i64,
    /// `insert`, `update`, `delete`, `merge` (dedup merge), `restore`, `link`, `unlink`.
    pub(crate) op: String,
    /// The memory (a link's `src`).
    pub(crate) id: i64,
    /// JSON before (NULL: absent).
    pub(crate) before: Option<String>,
    /// JSON after (NULL: absent).
    pub(crate) after: Option<String>,
}

/// A named version.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub(crate) name: String,
    pub(crate) version: i64,
    /// When it was taken, ms since the Unix epoch.
    pub(crate) created_at: i64,
}

impl Store {
    /// Whether changes are recorded (`history=on`).
    pub(crate) fn history_on(&self) -> bool {
        self.opts.history
    }

    /// Records a change of memory `id` (`op`, or the op set by [`Store::with_op`]):
    /// `before`/`after` rows (`after` not stored for the ops of [`ELIDED_AFTER`]), and when
    /// the vector changed, the vector it replaced (`Some(None)`: it had none).
    pub(super) fn record_row(
        &self,
        op: &'static str,
        id: i64,
        before: Option<&Row>,
        after: Option<&Row>,
        vector: Option<Option<&[u8]>>,
    ) -> Result<()> {
        let op = self.history_op.get().unwrap_or(op);
        let after = if ELIDED_AFTER.contains(&op) {
            None
        } else {
            after.map(row_json)
        };
        self.record(op, id, before.map(row_json), after, vector)
    }

    /// Records a link added, replaced or removed.
    pub(super) fn record_link(
        &self,
        op: &'static str,
        before: Option<&Link>,
        after: Option<&Link>,
    ) -> Result<()> {
        let id = before.or(after).map_or(0, |l| l.src);
        self.record(op, id, before.map(link_json), after.map(link_json), None)
    }

    fn record(
        &self,
        op: &str,
        id: i64,
        before: Option<String>,
        after: Option<String>,
        vector: Option<Option<&[u8]>>,
    ) -> Result<()> {
        if self.quiet.get() {
            return Ok(());
        }
        let sql = self.sql(|| {
            format!(
                "INSERT INTO {}(time, op, id, before, after, vector_changed, embedding) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                self.q.history
            )
        });
        // The history's rowid must not become the connection's last_insert_rowid() (a
        // `subcog_link` in a SELECT would change what the user's last INSERT reports).
        let saved = self.conn.last_insert_rowid();
        self.conn.prepare_cached(&sql)?.execute(params![
            now_ms(),
            op,
            id,
            before,
            after,
            i64::from(vector.is_some()),
            vector.flatten()
        ])?;
        // SAFETY: the handle is this store's open connection, used on its own thread.
        unsafe { ffi::sqlite3_set_last_insert_rowid(self.conn.handle(), saved) };
        CHANGES.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Runs `f` with every memory change it records labelled `op` (`merge`, `restore`).
    pub(crate) fn with_op<T>(&self, op: &'static str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let saved = self.history_op.replace(Some(op));
        let r = f();
        self.history_op.set(saved);
        r
    }

    /// The current version: the newest change's (0 before any change).
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn version(&self) -> Result<i64> {
        let sql = self.sql(|| format!("SELECT max(version) FROM {}", self.q.history));
        let v: Option<i64> = self
            .conn
            .prepare_cached(&sql)?
            .query_row([], |r| r.get(0))?;
        match v {
            Some(v) => Ok(v),
            None => self.history_floor(),
        }
    }

    /// The oldest version the table can be reconstructed at.
    pub(crate) fn history_floor(&self) -> Result<i64> {
        Ok(self
            .config_get(FLOOR)?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// When the history started (ms since the Unix epoch).
    pub(crate) fn history_since(&self) -> Result<i64> {
        Ok(self
            .config_get(SINCE)?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// Writes the `_config` keys of a history that starts now (at CREATE, or the
    /// upgrade to format 4).
    pub(super) fn start_history(&self) -> Result<()> {
        self.config_set(SINCE, &now_ms().to_string())?;
        self.config_set(FLOOR, "0")
    }

    /// When version `v` was made (`None`: no such change is kept).
    pub(crate) fn version_time(&self, v: i64) -> Result<Option<i64>> {
        let sql = self.sql(|| format!("SELECT time FROM {} WHERE version = ?1", self.q.history));
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row([v], |r| r.get(0))
            .optional()?)
    }

    /// The version current at time `t` (ms since the Unix epoch): the newest change made
    /// at or before `t`; `None` when every kept change is later.
    pub(crate) fn version_at_time(&self, t: i64) -> Result<Option<i64>> {
        let sql = self.sql(|| {
            format!(
                "SELECT max(version) FROM {} WHERE time <= ?1",
                self.q.history
            )
        });
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row([t], |r| r.get(0))?)
    }

    /// The changes after version `v` undone, from the current table ([`Undo`]): one pass
    /// over the changes after `v`, in version order, the first change of each memory,
    /// vector and link giving its state at `v`.
    ///
    /// # Errors
    /// [`Error::Corrupt`] for a history row that does not parse; SQLite errors.
    pub(crate) fn undo_to(&self, v: i64) -> Result<Undo> {
        let sql = self.sql(|| {
            format!(
                "SELECT op, id, before, vector_changed, embedding, after FROM {} \
                 WHERE version > ?1 ORDER BY version",
                self.q.history
            )
        });
        let mut st = self.conn.prepare_cached(&sql)?;
        let mut rows = st.query([v])?;
        let mut out = Undo::default();
        while let Some(r) = rows.next()? {
            let op: String = r.get(0)?;
            let before: Option<String> = r.get(2)?;
            if op == LINK || op == UNLINK {
                let then = before.as_deref().map(link_from_json).transpose()?;
                let key = match &then {
                    Some(l) => (l.src, l.kind.clone(), l.dst),
                    None => {
                        let after: Option<String> = r.get(5)?;
                        let Some(a) = after else { continue };
                        let l = link_from_json(&a)?;
                        (l.src, l.kind, l.dst)
                    }
                };
                out.links.entry(key).or_insert(then);
                continue;
            }
            let id: i64 = r.get(1)?;
            if let std::collections::hash_map::Entry::Vacant(e) = out.rows.entry(id) {
                e.insert(before.as_deref().map(row_from_json).transpose()?);
            }
            if r.get::<_, i64>(3)? != 0 && !out.vectors.contains_key(&id) {
                out.vectors.insert(id, r.get(4)?);
            }
        }
        Ok(out)
    }

    /// Every change of memory `id` (not its links), oldest first, each with its `after`:
    /// where it was not stored ([`ELIDED_AFTER`]), the next change's `before`, or for the
    /// newest change the current row.
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn history_of(&self, id: i64) -> Result<Vec<Record>> {
        let sql = self.sql(|| {
            format!(
                "SELECT version, time, op, id, before, after FROM {} WHERE id = ?1 \
                 AND op NOT IN ('{LINK}', '{UNLINK}') ORDER BY version",
                self.q.history
            )
        });
        let mut st = self.conn.prepare_cached(&sql)?;
        let mut recs: Vec<Record> = st
            .query_map([id], read_record)?
            .collect::<rusqlite::Result<_>>()?;
        for i in 0..recs.len() {
            if !after_elided(&recs[i].op, recs[i].after.as_deref()) {
                continue;
            }
            recs[i].after = match recs.get(i + 1) {
                Some(next) => next.before.clone(),
                None => self.get(id)?.map(|r| row_json(&r)),
            };
        }
        Ok(recs)
    }

    /// Every memory change (not links) with a version in `lo < version`, oldest first,
    /// through `f`.
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn row_changes_after(
        &self,
        lo: i64,
        mut f: impl FnMut(Record) -> Result<()>,
    ) -> Result<()> {
        let sql = self.sql(|| {
            format!(
                "SELECT version, time, op, id, before, after FROM {} WHERE version > ?1 \
                 AND op NOT IN ('{LINK}', '{UNLINK}') ORDER BY version",
                self.q.history
            )
        });
        let mut st = self.conn.prepare_cached(&sql)?;
        let mut rows = st.query([lo])?;
        while let Some(r) = rows.next()? {
            f(read_record(r)?)?;
        }
        Ok(())
    }

    /// Names version `version` `name`, taken at `now`.
    ///
    /// # Errors
    /// [`Error::Invalid`] when a snapshot of that name exists; SQLite errors.
    pub(crate) fn snapshot_add(&self, name: &str, version: i64, now: i64) -> Result<()> {
        if let Some(s) = self.snapshot(name)? {
            return Err(Error::invalid(format!(
                "subcog_snapshot(name): {} has a snapshot named '{name}' already (version {}); \
                 drop it first with subcog_snapshot_drop",
                self.table, s.version
            )));
        }
        let sql = self.sql(|| {
            format!(
                "INSERT INTO {}(name, version, created_at) VALUES (?1, ?2, ?3)",
                self.q.snapshots
            )
        });
        self.conn
            .prepare_cached(&sql)?
            .execute(params![name, version, now])?;
        Ok(())
    }

    /// The snapshot named `name`.
    pub(crate) fn snapshot(&self, name: &str) -> Result<Option<Snapshot>> {
        let sql = self.sql(|| {
            format!(
                "SELECT name, version, created_at FROM {} WHERE name = ?1",
                self.q.snapshots
            )
        });
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row([name], read_snapshot)
            .optional()?)
    }

    /// Every snapshot, by version then name.
    pub(crate) fn snapshots(&self) -> Result<Vec<Snapshot>> {
        let sql = self.sql(|| {
            format!(
                "SELECT name, version, created_at FROM {} ORDER BY version, name",
                self.q.snapshots
            )
        });
        let mut st = self.conn.prepare_cached(&sql)?;
        let v = st
            .query_map([], read_snapshot)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    }

    /// Drops the snapshot `name`; whether it existed.
    pub(crate) fn snapshot_drop(&self, name: &str) -> Result<bool> {
        let sql = self.sql(|| format!("DELETE FROM {} WHERE name = ?1", self.q.snapshots));
        Ok(self.conn.prepare_cached(&sql)?.execute([name])? > 0)
    }

    /// Applies the retention option `history_keep` at `now`: drops the changes older than
    /// it keeps, but never the newest change (versions only grow) nor any change after the
    /// oldest snapshot (a snapshot stays reachable until dropped) or after the oldest live
    /// branch's fork version (the branch reads this table as of it). Returns how many
    /// changes were dropped; the floor ([`Store::history_floor`]) moves to the newest one
    /// dropped.
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn history_purge(&self, now: i64) -> Result<usize> {
        if !self.history_on() {
            return Ok(0);
        }
        let current = self.version()?;
        let mut cut = match self.opts.history_keep {
            Retention::All => return Ok(0),
            Retention::Versions(n) => current.saturating_sub(n as i64),
            Retention::Age(ms) => {
                let sql = self.sql(|| {
                    format!(
                        "SELECT max(version) FROM {} WHERE time < ?1",
                        self.q.history
                    )
                });
                let v: Option<i64> = self
                    .conn
                    .prepare_cached(&sql)?
                    .query_row([now.saturating_sub(ms)], |r| r.get(0))?;
                v.unwrap_or(0)
            }
        };
        cut = cut.min(current - 1);
        if let Some(oldest) = self.snapshots()?.iter().map(|s| s.version).min() {
            cut = cut.min(oldest);
        }
        // A live branch reads this table as of its fork version: keep what undoes to it.
        if let Some(fork) = self.branches()?.iter().map(|b| b.1).min() {
            cut = cut.min(fork);
        }
        if cut <= self.history_floor()? {
            return Ok(0);
        }
        let sql = self.sql(|| format!("DELETE FROM {} WHERE version <= ?1", self.q.history));
        let n = self.conn.prepare_cached(&sql)?.execute([cut])?;
        self.config_set(FLOOR, &cut.to_string())?;
        Ok(n)
    }

    /// Number of changes kept.
    pub(crate) fn history_len(&self) -> Result<i64> {
        let sql = self.sql(|| format!("SELECT count(*) FROM {}", self.q.history));
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row([], |r| r.get(0))?)
    }

    /// The memory changes for the integrity check: `(id, op, before, after)` by id then
    /// version, through `f` (`after` as stored: see [`after_elided`]).
    pub(crate) fn row_chain(
        &self,
        mut f: impl FnMut(i64, &str, Option<String>, Option<String>) -> Result<()>,
    ) -> Result<()> {
        let sql = format!(
            "SELECT id, op, before, after FROM {} WHERE op NOT IN ('{LINK}', '{UNLINK}') \
             ORDER BY id, version",
            self.q.history
        );
        let mut st = self.conn.prepare(&sql)?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let op: String = r.get(1)?;
            f(r.get(0)?, &op, r.get(2)?, r.get(3)?)?;
        }
        Ok(())
    }

    /// Every link.
    pub(crate) fn all_links(&self) -> Result<Vec<Link>> {
        let sql = self.sql(|| {
            format!(
                "SELECT src, dst, kind, weight, created_at FROM {} ORDER BY src, kind, dst",
                self.q.links
            )
        });
        let mut st = self.conn.prepare_cached(&sql)?;
        let v = st
            .query_map([], super::links::read_link)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    }
}

fn read_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<Record> {
    Ok(Record {
        version: r.get(0)?,
        time: r.get(1)?,
        op: r.get(2)?,
        id: r.get(3)?,
        before: r.get(4)?,
        after: r.get(5)?,
    })
}

fn read_snapshot(r: &rusqlite::Row<'_>) -> rusqlite::Result<Snapshot> {
    Ok(Snapshot {
        name: r.get(0)?,
        version: r.get(1)?,
        created_at: r.get(2)?,
    })
}
