//! FTS5-style commands, `INSERT INTO mem(mem) VALUES ('rebuild' | 'optimize' | 'purge')`,
//! and the purge of expired memories that `subcog_purge(table)` shares.

use super::MemoryTable;
use super::history::Target;
use crate::ann::Checkpoint;
use crate::error::{Error, Result};
use crate::row;
use crate::store::Store;

impl MemoryTable {
    /// Runs the command `name` (case-insensitive): `rebuild` rebuilds the FTS5 index (merged
    /// into one segment), the dedup hashes and the HNSW graph from the content and vector
    /// tables (and drops orphan vectors and links); `optimize` merges the FTS5 index's
    /// segments into one ([`Store::optimize_fts`]) and folds the pending vectors into the
    /// HNSW snapshot now; `purge` deletes every expired memory and applies `history_keep`;
    /// `restore:<version or snapshot>` restores the table to that version
    /// ([`MemoryTable::restore`]); `merge:<fail|ours|theirs>:<branch>` merges a branch of
    /// this table into it ([`MemoryTable::merge_branch`]). On a branch, see
    /// [`MemoryTable::branch_command`].
    ///
    /// # Errors
    /// [`Error::Invalid`] for another name ([`unknown`]); SQLite, model or usearch errors.
    pub(crate) fn command(&self, name: &str) -> Result<()> {
        if let Some((policy, branch)) = super::branch::merge_target(name)? {
            return self.merge_branch(&branch, policy).map(|_| ());
        }
        if let Some(b) = &self.branch {
            return self.branch_command(b, name);
        }
        if let Some(target) = restore_target(name) {
            return self.restore(&target).map(|_| ());
        }
        match name.to_ascii_lowercase().as_str() {
            "rebuild" => {
                self.flush()?;
                let store = &self.store;
                store.delete_orphan_vectors()?;
                store.delete_orphan_links()?;
                store.rebuild_fts()?;
                store.optimize_fts()?;
                store.rehash(&store.stale_hashes()?)?;
                self.ann.borrow_mut().rebuild(store)
            }
            "purge" => {
                self.flush()?;
                purge(&self.store, row::now_ms())?;
                self.ann
                    .borrow_mut()
                    .maybe_checkpoint(&self.store, Checkpoint::Write)
                    .map(|_| ())
            }
            "optimize" => {
                self.flush()?;
                self.store.optimize_fts()?;
                self.ann
                    .borrow_mut()
                    .maybe_checkpoint(&self.store, Checkpoint::Force)
                    .map(|_| ())
            }
            _ => Err(unknown(&self.store.table, &format!("'{name}'"))),
        }
    }
}

/// The target of a `restore:<version | snapshot name>` command (`None`: another command).
fn restore_target(name: &str) -> Option<Target> {
    let (head, rest) = name.split_once(':')?;
    if !head.trim().eq_ignore_ascii_case("restore") {
        return None;
    }
    let rest = rest.trim();
    Some(match rest.parse::<i64>() {
        Ok(i) => Target::from_int(i),
        Err(_) => Target::Snapshot(rest.to_string()),
    })
}

/// The error for a value of the table column that is not a command (`got`: the value as
/// shown to the user).
pub(crate) fn unknown(table: &str, got: &str) -> Error {
    Error::invalid(format!(
        "column {table}: expected a command ('rebuild', 'optimize', 'purge', \
         'restore:<version or snapshot>' or 'merge:<fail|ours|theirs>:<branch>'), got {got}"
    ))
}

/// Deletes every memory of `store` expired at `now` (ms since the Unix epoch), with its
/// FTS5 entry, vector and links, then drops the history the `history_keep` option does
/// not keep ([`Store::history_purge`]); returns how many memories. The caller checkpoints.
///
/// # Errors
/// SQLite errors.
pub(crate) fn purge(store: &Store, now: i64) -> Result<usize> {
    let ids = store.expired_ids(now, None)?;
    let mut n = 0;
    for id in ids {
        if let Some(old) = store.get(id)? {
            store.delete(&old)?;
            n += 1;
        }
    }
    store.history_purge(now)?;
    Ok(n)
}
