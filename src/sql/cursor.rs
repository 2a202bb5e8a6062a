//! The cursor of a `memories` query: xFilter runs the decoded query
//! ([`crate::table::MemoryTable::query`]); the rows of a search's results come with it
//! (one statement), a scan reads each row when reached.

use std::ffi::c_int;
use std::marker::PhantomData;

use rusqlite::ffi;
use rusqlite::types::Null;
use rusqlite::vtab::{Context, Filters, VTabCursor};

use super::args;
use super::vtab::MemoriesTab;
use crate::error::{Result, guard};
use crate::row::col;
use crate::search::rank;
use crate::table::MemoryTable;
use crate::table::query::{Answer, Stored};

/// A cursor over the answer of one plan.
#[repr(C)]
pub(crate) struct MemCursor<'vtab> {
    /// Base class; must be first.
    base: ffi::sqlite3_vtab_cursor,
    answer: Answer,
    pos: usize,
    /// The current row and its `superseded_by` (for a scan, read when the column is).
    row: Option<Stored>,
    /// Whether `row`'s `superseded_by` was read (searches read it with the row).
    superseded_known: bool,
    /// The current result's id when the answer is lean (its row not read:
    /// [`Answer::lean`]).
    lean_id: Option<i64>,
    phantom: PhantomData<&'vtab MemoriesTab>,
}

/// Sets column `i` from `r` when it is one of the row's plain stored fields (`content`
/// to `updated_at`, `expires_at`) and says whether it was; the other columns (the id, the
/// embedding, `superseded_by`, the result's own) are the caller's.
///
/// # Errors
/// SQLite's, setting the result.
fn stored_field(ctx: &mut Context, r: &crate::row::Row, i: c_int) -> rusqlite::Result<bool> {
    match i {
        col::CONTENT => ctx.set_result(&r.content),
        col::NAMESPACE => ctx.set_result(&r.namespace),
        col::TAGS => ctx.set_result(&r.tags),
        col::METADATA => ctx.set_result(&r.metadata),
        col::SOURCE => ctx.set_result(&r.source),
        col::IMPORTANCE => ctx.set_result(r.importance),
        col::CREATED_AT => ctx.set_result(r.created_at),
        col::UPDATED_AT => ctx.set_result(r.updated_at),
        col::EXPIRES_AT => ctx.set_result(r.expires_at),
        _ => return Ok(false),
    }?;
    Ok(true)
}

impl<'vtab> MemCursor<'vtab> {
    pub(super) fn new() -> Self {
        MemCursor {
            base: ffi::sqlite3_vtab_cursor::default(),
            answer: Answer::default(),
            pos: 0,
            row: None,
            superseded_known: false,
            lean_id: None,
            phantom: PhantomData,
        }
    }

    /// The table this cursor reads, for as long as the cursor lives.
    fn table(&self) -> &'vtab MemoryTable {
        // SAFETY: SQLite sets pVtab to the MemoriesTab that opened this cursor (xOpen), and
        // closes the cursor before it disconnects that table; `'vtab` is the borrow of the
        // table the cursor was opened from (`VTab::open(&'vtab mut self)`).
        unsafe { &(*(self.base.pVtab as *const MemoriesTab)).table }
    }

    /// The table the current answer was read from: the as-of copy or the table itself.
    fn source(&self) -> &MemoryTable {
        match &self.answer.as_of {
            Some(a) => &a.table,
            None => self.table(),
        }
    }

    /// Moves to the first result at or after `pos` whose row exists.
    fn settle(&mut self) -> Result<()> {
        self.row = None;
        self.lean_id = None;
        if self.answer.lean {
            // Every result of a lean answer is visible; its row is not needed.
            self.lean_id = self.answer.results.get(self.pos).map(|f| f.id);
            return Ok(());
        }
        while let Some(found) = self.answer.results.get(self.pos) {
            if let Some(stored) = self.answer.rows.remove(&found.id) {
                self.row = Some(stored);
                self.superseded_known = true;
                return Ok(());
            }
            if self.answer.ranking.is_none()
                && self.answer.as_of.is_none()
                && let Some(r) = self.table().store.get(found.id)?
            {
                self.row = Some((r, None));
                self.superseded_known = false;
                return Ok(());
            }
            self.pos += 1;
        }
        Ok(())
    }

    /// The value of column `i` of the current row (NULL past the end).
    fn column_value(&self, ctx: &mut Context, i: c_int) -> Result<()> {
        if let Some(id) = self.lean_id {
            return self.lean_column(ctx, i, id);
        }
        let Some((r, superseded_by)) = &self.row else {
            return Ok(ctx.set_result(Null)?);
        };
        if stored_field(ctx, r, i)? {
            return Ok(());
        }
        Ok(match i {
            col::ID => ctx.set_result(r.id),
            col::EMBEDDING => return self.embedding(ctx, r.id),
            col::SUPERSEDED_BY => {
                if self.superseded_known {
                    return Ok(ctx.set_result(*superseded_by)?);
                }
                let by = self.source().store.superseded_by(r.id)?;
                ctx.set_result(by.map(|(id, _)| id))
            }
            _ => return self.result_column(ctx, i),
        }?)
    }

    /// The columns that come from the result, not the row: `distance`, `score`, `k`,
    /// `explain`, `as_of` (NULL for the other hidden columns).
    fn result_column(&self, ctx: &mut Context, i: c_int) -> Result<()> {
        let found = self.answer.results.get(self.pos);
        Ok(match i {
            col::EXPLAIN => ctx.set_result(self.explain()),
            col::DISTANCE => ctx.set_result(found.and_then(|f| f.distance)),
            col::SCORE => ctx.set_result(found.and_then(|f| f.score)),
            col::K => ctx.set_result(self.answer.k),
            col::AS_OF => ctx.set_result(self.answer.as_of.as_ref().and_then(|a| a.version)),
            _ => ctx.set_result(Null),
        }?)
    }

    /// The stored embedding of memory `id` (left alone when SQLite says the column is
    /// unchanged, in an UPDATE).
    fn embedding(&self, ctx: &mut Context, id: i64) -> Result<()> {
        if ctx.no_change() {
            return Ok(());
        }
        let blob = self.source().store.embedding_blob(id)?;
        Ok(ctx.set_result(&blob)?)
    }

    /// Column `i` of result `id` of a lean answer: the id and the result's own columns
    /// directly; a stored column (which `colUsed` said the statement does not read) from
    /// its row, read now.
    fn lean_column(&self, ctx: &mut Context, i: c_int, id: i64) -> Result<()> {
        match i {
            col::ID => Ok(ctx.set_result(id)?),
            col::EMBEDDING => self.embedding(ctx, id),
            col::CONTENT..=col::UPDATED_AT | col::EXPIRES_AT | col::SUPERSEDED_BY => {
                let store = &self.source().store;
                let Some(r) = store.get(id)? else {
                    return Ok(ctx.set_result(Null)?);
                };
                if stored_field(ctx, &r, i)? {
                    return Ok(());
                }
                Ok(ctx.set_result(store.superseded_by(id)?.map(|(by, _)| by))?)
            }
            _ => self.result_column(ctx, i),
        }
    }

    /// The `explain` column of the current result: NULL outside a search.
    fn explain(&self) -> Option<String> {
        let rank = self.answer.ranking.as_ref()?;
        let found = self.answer.results.get(self.pos)?;
        Some(rank::explain(
            rank,
            found,
            self.answer.components.get(self.pos),
        ))
    }
}

// SAFETY: `MemCursor` is `#[repr(C)]` with `sqlite3_vtab_cursor` first, as rusqlite's
// `VTabCursor` requires.
unsafe impl VTabCursor for MemCursor<'_> {
    fn filter(
        &mut self,
        idx_num: c_int,
        _idx_str: Option<&str>,
        args: &Filters<'_>,
    ) -> rusqlite::Result<()> {
        guard(|| {
            let table = self.table();
            self.answer = Answer::default();
            // One change key for the whole query: the kept reads ([`Store::pinned`]).
            self.answer = table.store.pinned(|| {
                // Searches see this transaction's writes, embeddings included.
                table.flush()?;
                let query = args::query(table, idx_num, args)?;
                match args::as_of(table, idx_num, args)? {
                    None => table.query(query),
                    Some(target) => table.query_as_of(query, &target),
                }
            })?;
            self.pos = 0;
            self.settle()
        })
    }

    fn next(&mut self) -> rusqlite::Result<()> {
        guard(|| {
            self.pos += 1;
            self.settle()
        })
    }

    fn eof(&self) -> bool {
        self.row.is_none() && self.lean_id.is_none()
    }

    fn column(&self, ctx: &mut Context, i: c_int) -> rusqlite::Result<()> {
        guard(|| self.column_value(ctx, i))
    }

    fn rowid(&self) -> rusqlite::Result<i64> {
        guard(|| {
            Ok(self
                .lean_id
                .or_else(|| self.row.as_ref().map(|(r, _)| r.id))
                .unwrap_or(0))
        })
    }
}
