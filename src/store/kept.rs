//! Reads of the shadow tables kept between queries while nothing changed
//! ([`Store::change_key`]): whether rows await their embedding, the HNSW snapshot's state,
//! the pending ids, the superseded ids and the expiry times. A KNN on a quiet table then
//! runs one statement (`PRAGMA data_version`) besides its search instead of one per read.
//!
//! The key is taken once per query ([`Store::pinned`]: the query's own statement holds a
//! read transaction on the schema, so no other connection's commit lands while it runs);
//! every other call takes it afresh. Nothing is kept inside a transaction or while this
//! connection holds uncommitted writes (the key is `None` then).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;

use rusqlite::params;

use super::{SUPERSEDES, Store};
use crate::error::Result;

/// Most superseded ids kept (about 40 MB at most); past it a search reads each
/// candidate's links instead.
const MAX_SUPERSEDED: usize = 1_000_000;

/// Most expiry times kept (`(id, expires_at)` pairs); past it a search reads each
/// candidate's row instead.
const MAX_EXPIRING: usize = 1_000_000;

/// The kept reads of one table on one connection, valid for `key`.
#[derive(Default)]
pub(crate) struct Kept {
    /// The key the reads below were taken under (`None`: nothing is kept).
    key: Option<(u64, i64)>,
    /// Set while one query runs ([`Store::pinned`]): `key` holds for it without another
    /// `PRAGMA data_version`, as long as this connection writes nothing.
    pinned: bool,
    unembedded: Option<bool>,
    snapshot: Option<(u64, u64)>,
    pending: Option<Rc<HashSet<i64>>>,
    superseded: Option<Option<Arc<HashSet<u64>>>>,
    expiring: Option<Option<Rc<HashMap<i64, i64>>>>,
}

/// The memories a search must not return, as kept ([`Store::hidden_kept`]).
pub(crate) struct Hidden {
    /// Ids a `supersedes` link hides.
    pub(crate) superseded: Arc<HashSet<u64>>,
    /// `id -> expires_at` (ms since the Unix epoch) of every memory with an expiry.
    pub(crate) expiring: Rc<HashMap<i64, i64>>,
}

impl Hidden {
    /// Whether memory `id` is hidden at `now` (ms): expired, or superseded unless
    /// `include_superseded`.
    pub(crate) fn hides(&self, id: i64, now: i64, include_superseded: bool) -> bool {
        (!include_superseded && self.superseded.contains(&(id as u64)))
            || self.expiring.get(&id).is_some_and(|&e| e <= now)
    }
}

impl Store {
    /// Runs `f` (one query) with the change key taken once at its start: inside `f`,
    /// [`Store::change_key`] repeats it while this connection stays in autocommit mode
    /// and writes nothing (its statement's read transaction keeps other connections'
    /// commits out), instead of running `PRAGMA data_version` again.
    ///
    /// # Errors
    /// SQLite errors, and `f`'s.
    pub(crate) fn pinned<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        /// Unpins when the query ends, however it ends (an error, a panic caught above).
        struct Unpin<'a>(&'a KeptCell);
        impl Drop for Unpin<'_> {
            fn drop(&mut self) {
                if let Ok(mut k) = self.0.try_borrow_mut() {
                    k.pinned = false;
                }
            }
        }
        self.kept.borrow_mut().pinned = false;
        let _unpin = Unpin(&self.kept);
        self.change_key()?;
        self.kept.borrow_mut().pinned = true;
        f()
    }

    /// The key the kept reads are valid for (see [`Store::change_key`]), the reads
    /// dropped when it changed.
    pub(super) fn kept_key(&self) -> Result<Option<(u64, i64)>> {
        let writing = self
            .conn
            .transaction_state(Some(self.q.raw_schema.as_str()))?
            == rusqlite::TransactionState::Write;
        let quiet = self.conn.is_autocommit() && !writing;
        {
            let kept = self.kept.borrow();
            if kept.pinned
                && quiet
                && let Some(key) = kept.key
                && key.0 == self.conn.total_changes()
            {
                return Ok(Some(key));
            }
        }
        let key = if quiet {
            let sql = self.sql(|| format!("PRAGMA {}.data_version", self.q.schema));
            let version: i64 = self
                .conn
                .prepare_cached(&sql)?
                .query_row([], |r| r.get(0))?;
            Some((self.conn.total_changes(), version))
        } else {
            None
        };
        let mut kept = self.kept.borrow_mut();
        if kept.key != key || key.is_none() {
            let pinned = kept.pinned;
            *kept = Kept {
                key,
                pinned,
                ..Kept::default()
            };
        }
        Ok(key)
    }

    /// [`Store::has_unembedded`], kept.
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn has_unembedded_kept(&self) -> Result<bool> {
        if self.kept_key()?.is_none() {
            return self.has_unembedded();
        }
        if let Some(u) = self.kept.borrow().unembedded {
            return Ok(u);
        }
        let u = self.has_unembedded()?;
        self.kept.borrow_mut().unembedded = Some(u);
        Ok(u)
    }

    /// [`Store::snapshot_state`], kept.
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn snapshot_state_kept(&self) -> Result<(u64, u64)> {
        if self.kept_key()?.is_none() {
            return self.snapshot_state();
        }
        if let Some(s) = self.kept.borrow().snapshot {
            return Ok(s);
        }
        let s = self.snapshot_state()?;
        self.kept.borrow_mut().snapshot = Some(s);
        Ok(s)
    }

    /// [`Store::pending_ids`] as a set, kept.
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn pending_kept(&self) -> Result<Rc<HashSet<i64>>> {
        let read = || -> Result<Rc<HashSet<i64>>> {
            Ok(Rc::new(self.pending_ids()?.into_iter().collect()))
        };
        if self.kept_key()?.is_none() {
            return read();
        }
        if let Some(p) = &self.kept.borrow().pending {
            return Ok(Rc::clone(p));
        }
        let p = read()?;
        self.kept.borrow_mut().pending = Some(Rc::clone(&p));
        Ok(p)
    }

    /// The superseded ids (the `dst` of `supersedes` links), when kept: `None` inside a
    /// transaction or past [`MAX_SUPERSEDED`].
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn superseded_kept(&self) -> Result<Option<Arc<HashSet<u64>>>> {
        if self.kept_key()?.is_none() {
            return Ok(None);
        }
        if let Some(s) = &self.kept.borrow().superseded {
            return Ok(s.clone());
        }
        let s = self
            .superseded_ids(MAX_SUPERSEDED)?
            .map(|ids| Arc::new(ids.into_iter().map(|id| id as u64).collect()));
        self.kept.borrow_mut().superseded = Some(s.clone());
        Ok(s)
    }

    /// The expiry times of the memories that have one, when kept: `None` inside a
    /// transaction or past [`MAX_EXPIRING`].
    ///
    /// # Errors
    /// SQLite errors.
    fn expiring_kept(&self) -> Result<Option<Rc<HashMap<i64, i64>>>> {
        if self.kept_key()?.is_none() {
            return Ok(None);
        }
        if let Some(e) = &self.kept.borrow().expiring {
            return Ok(e.clone());
        }
        let sql = self.sql(|| {
            format!(
                "SELECT id, expires_at FROM {} WHERE expires_at IS NOT NULL LIMIT ?1",
                self.q.content
            )
        });
        let limit = i64::try_from(MAX_EXPIRING.saturating_add(1)).unwrap_or(i64::MAX);
        let pairs: Vec<(i64, i64)> = self
            .conn
            .prepare_cached(&sql)?
            .query_map([limit], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let e = (pairs.len() <= MAX_EXPIRING).then(|| Rc::new(pairs.into_iter().collect()));
        self.kept.borrow_mut().expiring = Some(e.clone());
        Ok(e)
    }

    /// What a search must hide, when kept (outside transactions; `None` otherwise, then
    /// [`Store::visible_of`] reads it per candidate).
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn hidden_kept(&self) -> Result<Option<Hidden>> {
        let Some(superseded) = self.superseded_kept()? else {
            return Ok(None);
        };
        let Some(expiring) = self.expiring_kept()? else {
            return Ok(None);
        };
        Ok(Some(Hidden {
            superseded,
            expiring,
        }))
    }

    /// The ids among `ids` whose memory exists and is visible at `now` (ms): not expired,
    /// and not superseded unless `include_superseded`; one statement, no row read beyond
    /// its expiry and links.
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn visible_of(
        &self,
        ids: &[i64],
        now: i64,
        include_superseded: bool,
    ) -> Result<HashSet<i64>> {
        let mut out = HashSet::with_capacity(ids.len());
        if ids.is_empty() {
            return Ok(out);
        }
        let sql = self.sql(|| {
            format!(
                "SELECT c.id FROM json_each(?1) j JOIN {c} c ON c.id = j.value \
                 WHERE (c.expires_at IS NULL OR c.expires_at > ?2) \
                 AND (?3 OR NOT EXISTS (SELECT 1 FROM {l} WHERE dst = c.id AND kind = ?4))",
                c = self.q.content,
                l = self.q.links
            )
        });
        let mut st = self.conn.prepare_cached(&sql)?;
        let mut rows = st.query(params![
            super::id_list(ids),
            now,
            include_superseded,
            SUPERSEDES
        ])?;
        while let Some(r) = rows.next()? {
            out.insert(r.get(0)?);
        }
        Ok(out)
    }
}

/// The kept reads' cell in [`Store`].
pub(crate) type KeptCell = RefCell<Kept>;
