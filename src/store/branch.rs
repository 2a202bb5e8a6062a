//! The store side of branches ([`crate::table::branch`]): a branch's own shadow table
//! `<branch>_masked` (what the branch has touched of the base), the `_config` keys that tie
//! a branch and its base together, and the copy of history rows from the branch's private
//! working copy into the branch's own `_history`.
//!
//! * `<branch>_masked(src, kind, dst)`: `(id, '', 0)` for every memory the branch wrote
//!   (its state in the branch is then its `_content` row, or absent), `(src, kind, dst)`
//!   for every link it wrote (present in its `_links`, or absent). Everything not masked
//!   is the base as of the fork version. Link kinds are never empty, so the two never meet.
//! * the branch's `_config`: `branch_of` (the base's name, same schema) and `branch_fork`
//!   (the base's version the branch starts from); its `history_floor` is the fork version,
//!   so its versions go on from the base's.
//! * the base's `_config`: one `branch:<name>` key per live branch, value its fork
//!   version: `'purge'` keeps the base's history after the oldest fork
//!   ([`Store::history_purge`]), and a base with branches cannot be dropped.

use std::collections::{HashMap, HashSet};

use rusqlite::{OptionalExtension, params};

use super::history::{LINK, UNLINK, link_from_json};
use super::{Link, Store};
use crate::error::{Error, Result};
use crate::names::quote;

/// `_config` key of a branch: its base's name.
pub(crate) const BRANCH_OF: &str = "branch_of";
/// `_config` key of a branch: the base's version it was forked at.
pub(crate) const BRANCH_FORK: &str = "branch_fork";
/// Prefix of a merged branch's `_config` keys `merged:<branch id>` = the target id a merge
/// renumbered it to.
const MERGED_ID: &str = "merged:";
/// Prefix of the base's `_config` keys naming its live branches (`branch:<name>`).
const BRANCH_KEY: &str = "branch:";

/// One stored change of a history, as [`Store::changes_after`] reads it.
#[derive(Debug, Clone)]
pub(crate) struct StoredChange {
    pub(crate) version: i64,
    /// ms since the Unix epoch.
    pub(crate) time: i64,
    pub(crate) op: String,
    pub(crate) id: i64,
    pub(crate) before: Option<String>,
    pub(crate) after: Option<String>,
    pub(crate) vector_changed: i64,
    pub(crate) embedding: Option<Vec<u8>>,
}

impl StoredChange {
    /// The link `(src, kind, dst)` a `link`/`unlink` change is about (`None`: a memory's
    /// change).
    ///
    /// # Errors
    /// [`Error::Corrupt`] for a link change whose JSON does not parse.
    pub(crate) fn link_key(&self) -> Result<Option<(i64, String, i64)>> {
        if self.op != LINK && self.op != UNLINK {
            return Ok(None);
        }
        let Some(j) = self.before.as_deref().or(self.after.as_deref()) else {
            return Ok(None);
        };
        let l = link_from_json(j)?;
        Ok(Some((l.src, l.kind, l.dst)))
    }
}

/// `schema.<table>_config`, quoted (for another table's config than a store's own).
fn config_of(schema: &str, table: &str) -> String {
    format!("{}.{}", quote(schema), quote(&format!("{table}_config")))
}

impl Store {
    /// Creates `<table>_masked` (a new branch).
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn create_masked(&self) -> Result<()> {
        self.conn.execute_batch(&format!(
            "CREATE TABLE {}(src INTEGER NOT NULL, kind TEXT NOT NULL, dst INTEGER NOT NULL,
                PRIMARY KEY (src, kind, dst)) WITHOUT ROWID",
            self.q.masked
        ))?;
        Ok(())
    }

    /// `(base, fork version)` when this table is a branch.
    ///
    /// # Errors
    /// SQLite errors; [`Error::Corrupt`] for a fork version that is not a number.
    pub(crate) fn branch_info(&self) -> Result<Option<(String, i64)>> {
        let Some(base) = self.config_get(BRANCH_OF)? else {
            return Ok(None);
        };
        let fork = self
            .config_get(BRANCH_FORK)?
            .and_then(|v| v.parse::<i64>().ok())
            .ok_or_else(|| {
                Error::Corrupt(format!(
                    "memories table {}: branch of {base} without a fork version in {}_config",
                    self.table, self.table
                ))
            })?;
        Ok(Some((base, fork)))
    }

    /// Records the branch's base and fork version, and starts its history at the fork
    /// version (its versions go on from the base's).
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn set_branch_info(&self, base: &str, fork: i64) -> Result<()> {
        self.config_set(BRANCH_OF, base)?;
        self.config_set(BRANCH_FORK, &fork.to_string())?;
        self.config_set("history_floor", &fork.to_string())
    }

    /// The live branches of this (base) table: `(name, fork version)`, by name.
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn branches(&self) -> Result<Vec<(String, i64)>> {
        let sql = self.sql(|| {
            format!(
                "SELECT substr(key, {}), CAST(value AS INTEGER) FROM {} \
                 WHERE key >= '{BRANCH_KEY}' AND key < 'branch;' ORDER BY key",
                BRANCH_KEY.len() + 1,
                self.q.config
            )
        });
        let mut st = self.conn.prepare_cached(&sql)?;
        let v = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    }

    /// Notes the branch `name` forked at `fork` in this (base) table's `_config`.
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn add_branch(&self, name: &str, fork: i64) -> Result<()> {
        self.config_set(&format!("{BRANCH_KEY}{name}"), &fork.to_string())
    }

    /// Forgets the branch `name` of the base `base` (schema `schema`), when that base still
    /// exists.
    ///
    /// # Errors
    /// SQLite errors other than a missing base.
    pub(crate) fn forget_branch(&self, base: &str, name: &str) -> Result<()> {
        let sql = format!(
            "DELETE FROM {} WHERE key = ?1",
            config_of(&self.q.raw_schema, base)
        );
        match self.conn.execute(&sql, [format!("{BRANCH_KEY}{name}")]) {
            Ok(_) => Ok(()),
            Err(e) if e.to_string().contains("no such table") => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// After this branch was renamed from `old` to its current name: the base's key
    /// follows.
    ///
    /// # Errors
    /// SQLite errors other than a missing base.
    pub(crate) fn branch_renamed(&self, base: &str, old: &str, fork: i64) -> Result<()> {
        self.forget_branch(base, old)?;
        let sql = format!(
            "INSERT OR REPLACE INTO {}(key, value) VALUES (?1, ?2)",
            config_of(&self.q.raw_schema, base)
        );
        match self
            .conn
            .execute(&sql, params![format!("{BRANCH_KEY}{}", self.table), fork])
        {
            Ok(_) => Ok(()),
            Err(e) if e.to_string().contains("no such table") => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// After this base was renamed: each branch's `branch_of` names the new name.
    ///
    /// # Errors
    /// SQLite errors other than a missing branch.
    pub(crate) fn base_renamed(&self) -> Result<()> {
        for (name, _) in self.branches()? {
            let sql = format!(
                "UPDATE {} SET value = ?1 WHERE key = '{BRANCH_OF}'",
                config_of(&self.q.raw_schema, &name)
            );
            match self.conn.execute(&sql, [&self.table]) {
                Ok(_) => {}
                Err(e) if e.to_string().contains("no such table") => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Errors when this table is a branch: `func` reads or writes the shadow tables
    /// directly, which hold only what the branch wrote.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming `func` and the table; SQLite errors.
    pub(crate) fn refuse_branch(&self, func: &str) -> Result<()> {
        match self.branch_info()? {
            None => Ok(()),
            Some((base, _)) => Err(Error::invalid(format!(
                "{func}: {} is a branch (of {base}); {func} does not support branches yet \
                 (use it on {base}, or merge the branch first)",
                self.table
            ))),
        }
    }

    /// Records the ids a merge renumbered (branch id -> target id).
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn set_merged_ids(
        &self,
        renumbered: &std::collections::BTreeMap<i64, i64>,
    ) -> Result<()> {
        for (old, new) in renumbered {
            self.config_set(&format!("{MERGED_ID}{old}"), &new.to_string())?;
        }
        Ok(())
    }

    /// The ids earlier merges renumbered: branch id -> target id.
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn merged_ids(&self) -> Result<HashMap<i64, i64>> {
        let sql = self.sql(|| {
            format!(
                "SELECT CAST(substr(key, {}) AS INTEGER), CAST(value AS INTEGER) FROM {} \
                 WHERE key >= '{MERGED_ID}' AND key < 'merged;'",
                MERGED_ID.len() + 1,
                self.q.config
            )
        });
        let mut st = self.conn.prepare_cached(&sql)?;
        let v = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    }

    /// Marks memory `id` as written by this branch.
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn mask_memory(&self, id: i64) -> Result<()> {
        self.mask_link(id, "", 0)
    }

    /// Marks the link `src -kind-> dst` as written by this branch (`kind` `''`: memory
    /// `src`).
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn mask_link(&self, src: i64, kind: &str, dst: i64) -> Result<()> {
        let sql = self.sql(|| {
            format!(
                "INSERT OR IGNORE INTO {}(src, kind, dst) VALUES (?1, ?2, ?3)",
                self.q.masked
            )
        });
        self.conn
            .prepare_cached(&sql)?
            .execute(params![src, kind, dst])?;
        Ok(())
    }

    /// The memories this branch wrote, by id.
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn masked_ids(&self) -> Result<Vec<i64>> {
        let sql = self.sql(|| {
            format!(
                "SELECT src FROM {} WHERE kind = '' ORDER BY src",
                self.q.masked
            )
        });
        let mut st = self.conn.prepare_cached(&sql)?;
        let v = st
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    }

    /// The links this branch wrote, `(src, kind, dst)`, in that order.
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn masked_links(&self) -> Result<Vec<(i64, String, i64)>> {
        let sql = self.sql(|| {
            format!(
                "SELECT src, kind, dst FROM {} WHERE kind <> '' ORDER BY src, kind, dst",
                self.q.masked
            )
        });
        let mut st = self.conn.prepare_cached(&sql)?;
        let v = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    }

    /// The link `src -kind-> dst`, if it exists.
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn link_of(&self, src: i64, dst: i64, kind: &str) -> Result<Option<Link>> {
        self.link(src, dst, kind)
    }

    /// Whether memory `id` awaits its embedding: `Some(near_check)`, else `None`.
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn unembedded_flag(&self, id: i64) -> Result<Option<bool>> {
        let sql = self.sql(|| format!("SELECT dedup FROM {} WHERE id = ?1", self.q.unembedded));
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row([id], |r| r.get::<_, i64>(0))
            .optional()?
            .map(|d| d != 0))
    }

    /// Every memory awaiting its embedding, with its near-check flag.
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn unembedded_flags(&self) -> Result<HashMap<i64, bool>> {
        let sql = self.sql(|| format!("SELECT id, dedup FROM {}", self.q.unembedded));
        let mut st = self.conn.prepare_cached(&sql)?;
        let v = st
            .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? != 0)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    }

    /// Every change after version `v`, oldest first, as stored.
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn changes_after(&self, v: i64) -> Result<Vec<StoredChange>> {
        let sql = self.sql(|| {
            format!(
                "SELECT version, time, op, id, before, after, vector_changed, embedding FROM {} \
                 WHERE version > ?1 ORDER BY version",
                self.q.history
            )
        });
        let mut st = self.conn.prepare_cached(&sql)?;
        let v = st
            .query_map([v], |r| {
                Ok(StoredChange {
                    version: r.get(0)?,
                    time: r.get(1)?,
                    op: r.get(2)?,
                    id: r.get(3)?,
                    before: r.get(4)?,
                    after: r.get(5)?,
                    vector_changed: r.get(6)?,
                    embedding: r.get(7)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    }

    /// Appends `changes` (read from another history) to this table's history, each under
    /// the next version of this table. Returns the last version written.
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn append_changes(&self, changes: &[StoredChange]) -> Result<i64> {
        let mut version = self.version()?;
        let sql = self.sql(|| {
            format!(
                "INSERT INTO {}(version, time, op, id, before, after, vector_changed, embedding) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                self.q.history
            )
        });
        let saved = self.conn.last_insert_rowid();
        let mut st = self.conn.prepare_cached(&sql)?;
        for c in changes {
            version += 1;
            st.execute(params![
                version,
                c.time,
                c.op,
                c.id,
                c.before,
                c.after,
                c.vector_changed,
                c.embedding
            ])?;
        }
        // SAFETY: the handle is this store's open connection, used on its own thread.
        unsafe { rusqlite::ffi::sqlite3_set_last_insert_rowid(self.conn.handle(), saved) };
        if !changes.is_empty() {
            super::history::count_changes(changes.len() as u64);
        }
        Ok(version)
    }

    /// Runs `f` without recording any change in the history (the branch writes the
    /// changes of its working copy itself, [`Store::append_changes`]).
    pub(crate) fn quietly<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let saved = self.quiet.replace(true);
        let r = f();
        self.quiet.set(saved);
        r
    }

    /// The memories a branch shows at its fork that it did not write, from its base
    /// `base`: every id of the base as of `fork` not masked here (for the integrity
    /// check's orphan links), plus the branch's own rows.
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn branch_visible_ids(&self, base: &Store, fork: i64) -> Result<HashSet<i64>> {
        let undo = base.undo_to(fork)?;
        let mut ids: HashSet<i64> = base.ids(None)?.into_iter().collect();
        for (id, then) in &undo.rows {
            if then.is_some() {
                ids.insert(*id);
            } else {
                ids.remove(id);
            }
        }
        for id in self.masked_ids()? {
            ids.remove(&id);
        }
        ids.extend(self.ids(None)?);
        Ok(ids)
    }
}
