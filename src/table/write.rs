//! The write path: INSERT, UPDATE and DELETE of one memory, after the SQL adapter decoded
//! the values ([`NewRow`]).
//!
//! One INSERT: redact the text columns ([`crate::redact`]), look for an exact duplicate
//! by content hash (merge into it or skip, per `dedup`), resolve an explicit id's
//! conflict, write the row through the store (content, FTS5, vector or a note that it
//! awaits its embedding and near-duplicate check, pending), record the outcome, then
//! the in-statement checkpoint or, every [`FLUSH_BATCH`] checks, a flush.

use std::sync::Arc;

use super::MemoryTable;
use super::dedup::{self, Outcome};
use super::flush::FLUSH_BATCH;
use crate::embedder;
use crate::error::{Error, Result};
use crate::options::DedupPolicy;
use crate::redact;
use crate::row::{self, Row};
use crate::store::VectorChange;
use crate::vector;

/// A memory as written by an INSERT or UPDATE, decoded and type-checked by the adapter.
#[derive(Debug, Clone, Default)]
pub(crate) struct NewRow {
    /// The explicit id (`id` column or rowid), if one was given.
    pub(crate) id: Option<i64>,
    pub(crate) content: String,
    pub(crate) namespace: String,
    /// JSON array text.
    pub(crate) tags: String,
    /// JSON object text.
    pub(crate) metadata: String,
    pub(crate) source: Option<String>,
    /// 0..=1.
    pub(crate) importance: f64,
    /// Milliseconds since the Unix epoch; `None`: now (INSERT) or unchanged (UPDATE).
    pub(crate) created_at: Option<i64>,
    /// Milliseconds since the Unix epoch; `None`: `created_at` (INSERT). UPDATE sets now.
    pub(crate) updated_at: Option<i64>,
    /// The `ttl` column, milliseconds: the expiry is `now + ttl` when given.
    pub(crate) ttl_ms: Option<i64>,
    /// The `expires_at` column (milliseconds since the Unix epoch), used without `ttl`.
    pub(crate) expires_at: Option<i64>,
    /// The supplied embedding (`[f32; dim]`, checked against `dim` by the adapter), if any.
    pub(crate) embedding: Option<Vec<f32>>,
}

/// What an INSERT with the id of an existing memory does (SQLite's ON CONFLICT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnConflict {
    /// Fail with a UNIQUE constraint error (ABORT, FAIL, ROLLBACK).
    Abort,
    /// INSERT OR REPLACE: the existing memory is deleted first.
    Replace,
    /// INSERT OR IGNORE: nothing is written.
    Ignore,
}

/// An UPDATE of one memory.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    /// The memory updated.
    pub(crate) old_id: i64,
    /// Its id afterwards (the `id` column or a new rowid).
    pub(crate) new_id: i64,
    /// The columns as written (`id` unused).
    pub(crate) row: NewRow,
    /// The `superseded_by` value written (read-only: must be the current one).
    pub(crate) superseded_by: Option<i64>,
    /// Whether the statement left `embedding` unchanged (`sqlite3_value_nochange`); else
    /// `row.embedding` is the value written.
    pub(crate) embedding_unchanged: bool,
}

/// The vector decided for a written row.
enum Embedding {
    /// Supplied by the user, validated.
    Supplied(Vec<f32>),
    /// To be computed by the model from `content` (batched, before the next search).
    Deferred,
    /// None (auto_embed off, or `SET embedding = NULL` with auto_embed off).
    Absent,
    /// Unchanged (UPDATE that touches neither content nor embedding).
    Kept,
}

impl Embedding {
    fn change(&self) -> VectorChange<'_> {
        match self {
            Embedding::Supplied(v) => VectorChange::Set(v),
            Embedding::Deferred => VectorChange::Defer,
            Embedding::Absent => VectorChange::Remove,
            Embedding::Kept => VectorChange::Keep,
        }
    }
}

impl MemoryTable {
    /// Inserts one memory; returns the id it landed on (a new id, or the existing memory
    /// an exact duplicate merged into).
    ///
    /// # Errors
    /// [`Error::Invalid`] for a rejected secret, a zero vector on a cosine table or an id
    /// conflict under ABORT; [`Error::Model`] when the row must be embedded and the model
    /// is missing; SQLite errors.
    pub(crate) fn insert(&self, new: NewRow, on_conflict: OnConflict) -> Result<i64> {
        if let Some(b) = &self.branch {
            return self.branch_insert(b, new, on_conflict);
        }
        let now = row::now_ms();
        let explicit = new.id;
        let supplied = new.embedding.clone();
        let mut row = self.scrubbed(new, now, None)?;
        let vec = self.embedding_for(supplied)?;
        let store = &self.store;
        let dedup = store.opts.dedup;
        let deduplicated = explicit.is_none() && dedup != DedupPolicy::Off;
        let hash = dedup::content_hash(&row.content);
        if deduplicated && let Some(existing) = store.find_by_hash(&row.namespace, &hash, now, 0)? {
            if let Some(old) = store.get(existing)? {
                self.absorb(&old, &row, now)?;
            }
            self.record(Outcome {
                id: existing,
                kind: "duplicate",
                action: Some(dedup.name()),
                supersedes: None,
                similarity: None,
            });
            return Ok(existing);
        }
        // The near-duplicate check runs in batches (flush): before the next query on the
        // table, at COMMIT, or every FLUSH_BATCH such INSERTs.
        let near_check = deduplicated
            && self.near_dedup()
            && matches!(vec, Embedding::Supplied(_) | Embedding::Deferred);
        row.id = match explicit {
            Some(id) if store.exists(id)? => match on_conflict {
                OnConflict::Replace => {
                    if let Some(old) = store.get(id)? {
                        store.delete(&old)?;
                    }
                    id
                }
                OnConflict::Ignore => return Ok(id),
                OnConflict::Abort => {
                    return Err(Error::invalid(format!(
                        "UNIQUE constraint failed: {}.id (a memory with id {id} exists; use \
                         INSERT OR REPLACE or UPDATE)",
                        store.table
                    )));
                }
            },
            Some(id) => id,
            None => store.next_id()?,
        };
        store.insert(&row, &hash, vec.change(), near_check)?;
        // "inserted" until the check says otherwise: subcog_last_insert reads the link.
        self.record(Outcome {
            id: row.id,
            kind: "inserted",
            action: None,
            supersedes: None,
            similarity: None,
        });
        if near_check {
            self.awaiting.set(self.awaiting.get() + 1);
            if self.awaiting.get() >= FLUSH_BATCH {
                self.flush()?;
            }
        } else {
            self.checkpoint_write()?;
        }
        Ok(row.id)
    }

    /// Updates one memory (a new id moves it). Nothing happens when `old_id` does not
    /// exist.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a changed `superseded_by`, a rejected secret or a taken new
    /// id; [`Error::Model`]; SQLite errors.
    pub(crate) fn update(&self, change: Change) -> Result<()> {
        if let Some(b) = &self.branch {
            return self.branch_update(b, change);
        }
        let store = &self.store;
        let (old_id, new_id) = (change.old_id, change.new_id);
        let Some(old) = store.get(old_id)? else {
            return Ok(());
        };
        let superseded_by = store.superseded_by(old_id)?.map(|(id, _)| id);
        if change.superseded_by != superseded_by {
            return Err(Error::invalid(format!(
                "column superseded_by: read-only (set by the near-duplicate check on INSERT; \
                 delete the newer memory to undo it), expected {}, got another value",
                superseded_by.map_or("NULL".to_string(), |i| i.to_string())
            )));
        }
        let now = row::now_ms();
        let supplied = change.row.embedding.clone();
        let mut new = self.scrubbed(change.row, now, Some(&old))?;
        new.id = new_id;
        let content_changed = new.content != old.content;
        let planned = if change.embedding_unchanged {
            if content_changed && store.opts.auto_embed {
                self.require_model()?;
                Embedding::Deferred
            } else {
                Embedding::Kept
            }
        } else {
            self.embedding_for(supplied)?
        };
        let vec = planned.change();
        if new_id == old_id {
            store.update(&old, &new, vec)?;
        } else {
            self.move_memory(&old, &new, vec)?;
        }
        self.checkpoint_write()
    }

    /// An UPDATE that changes the id: delete + insert keep every index exact.
    fn move_memory(&self, old: &Row, new: &Row, vec: VectorChange<'_>) -> Result<()> {
        let store = &self.store;
        if store.exists(new.id)? {
            return Err(Error::invalid(format!(
                "UNIQUE constraint failed: {}.id (cannot change id {} to {}: a memory with id \
                 {} exists)",
                store.table, old.id, new.id, new.id
            )));
        }
        let kept = match vec {
            VectorChange::Keep => store.embedding(old.id)?,
            _ => None,
        };
        let vec = match (&kept, vec) {
            (Some(v), _) => VectorChange::Set(v),
            (None, VectorChange::Keep) if store.opts.auto_embed => VectorChange::Defer,
            (None, c) => c,
        };
        store.move_links(old.id, new.id)?;
        store.delete(old)?;
        store.insert(new, &dedup::content_hash(&new.content), vec, false)
    }

    /// Deletes memory `id` (nothing when it does not exist).
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn delete(&self, id: i64) -> Result<()> {
        if let Some(b) = &self.branch {
            return self.branch_delete(b, id);
        }
        if let Some(old) = self.store.get(id)? {
            self.store.delete(&old)?;
            self.checkpoint_write()?;
        }
        Ok(())
    }

    /// The stored row of `new` after the secrets and pii policies ([`redact`]) on its text columns,
    /// with its timestamps resolved at `now` (`old`: the row an UPDATE replaces).
    fn scrubbed(&self, new: NewRow, now: i64, old: Option<&Row>) -> Result<Row> {
        let policy = redact::Policies {
            secrets: self.store.opts.secrets,
            pii: self.store.opts.pii,
        };
        let text = |t: String, column: &str| -> Result<String> {
            Ok(match redact::enforce_text(policy, column, &t)? {
                std::borrow::Cow::Borrowed(_) => t,
                std::borrow::Cow::Owned(r) => r,
            })
        };
        let json = |t: String, column: &str| -> Result<String> {
            Ok(match redact::enforce_json(policy, column, &t)? {
                std::borrow::Cow::Borrowed(_) => t,
                std::borrow::Cow::Owned(r) => r,
            })
        };
        let content = text(new.content, "content")?;
        let (created_at, updated_at) = match old {
            None => {
                let created = new.created_at.unwrap_or(now);
                (created, new.updated_at.unwrap_or(created))
            }
            Some(old) => (new.created_at.unwrap_or(old.created_at), now),
        };
        Ok(Row {
            id: 0,
            namespace: new.namespace,
            tags: json(new.tags, "tags")?,
            metadata: json(new.metadata, "metadata")?,
            source: new.source.map(|t| text(t, "source")).transpose()?,
            importance: new.importance,
            created_at,
            updated_at,
            expires_at: match new.ttl_ms {
                Some(ms) => Some(now.saturating_add(ms)),
                None => new.expires_at,
            },
            content,
        })
    }

    /// Folds the duplicate `new` into the existing memory `old` per the dedup policy.
    fn absorb(&self, old: &Row, new: &Row, now: i64) -> Result<()> {
        if self.store.opts.dedup == DedupPolicy::Merge {
            let merged = dedup::merge(old, new, now);
            self.store.with_op("merge", || {
                self.store.update(old, &merged, VectorChange::Keep)
            })?;
        }
        Ok(())
    }

    /// What to store as a row's vector: the supplied one, or (none supplied, auto_embed
    /// on) the model's embedding of `content`, computed in a batch before the next search
    /// or the commit ([`MemoryTable::flush`]). The model's presence is checked here, so a
    /// missing model fails the write itself.
    fn embedding_for(&self, supplied: Option<Vec<f32>>) -> Result<Embedding> {
        let opts = &self.store.opts;
        match supplied {
            Some(v) => {
                vector::check(&v, Some(opts.metric), "column embedding")?;
                Ok(Embedding::Supplied(v))
            }
            None if opts.auto_embed => {
                self.require_model()?;
                Ok(Embedding::Deferred)
            }
            None => Ok(Embedding::Absent),
        }
    }

    /// The model, or an error naming the table and why it must embed.
    pub(super) fn require_model(&self) -> Result<Arc<embedder::Embedder>> {
        embedder::get().map_err(|e| {
            Error::Model(format!(
                "{}: no embedding was supplied and auto_embed is on, so the content must be \
                 embedded, but {e}",
                self.store.table
            ))
        })
    }
}
