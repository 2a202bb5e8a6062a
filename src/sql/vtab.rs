//! The `memories` virtual table: xCreate/xConnect, xBestIndex, the cursor, and xUpdate.
//!
//! The table owns no state of its own beyond caches: rows live in the shadow tables
//! ([`crate::store`]), the in-memory HNSW graph ([`crate::ann`]) is checked against them
//! on every search. Planning is in [`crate::sql::planner`], the searches in [`crate::search`].

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashSet;
use std::ffi::{CStr, CString, c_int};
use std::marker::PhantomData;
use std::sync::Arc;

use rusqlite::types::{Null, ValueRef};
use rusqlite::vtab::{
    Context, CreateVTab, Filters, IndexConstraintOp, IndexInfo, Inserts, Module, TransactionVTab,
    UpdateVTab, Updates, VTab, VTabConnection, VTabCursor, VTabKind, Values,
};
use rusqlite::{Connection, ffi};

use crate::ann::{Ann, Checkpoint};
use crate::error::{Error, Result, guard};
use crate::options::DedupPolicy;
use crate::options::TableOptions;
use crate::redact;
use crate::row::{self, Row, col};
use crate::search::rank::{Components, Ranking};
use crate::search::{self, Found};
use crate::sql::planner::{self, Op, Term, bit};
use crate::store::{SUPERSEDES, Store, Unembedded, VectorChange};
use crate::table::dedup::{self, Outcome};
use crate::{embedder, vector};

/// Name of the module in `CREATE VIRTUAL TABLE ... USING memories(...)`.
pub const MODULE_NAME: &CStr = c"memories";

/// Registers the `memories` module on `conn`.
///
/// # Errors
/// SQLite errors from `sqlite3_create_module_v2`.
pub fn register(conn: &Connection) -> rusqlite::Result<()> {
    const MODULE: Module<MemoriesTab> = module();
    conn.create_module(MODULE_NAME, &MODULE, None)
}

/// rusqlite's update module (with xBegin/xSync/xCommit/xRollback: xSync embeds what
/// awaits embedding) plus xRename and xShadowName (rusqlite leaves both NULL and
/// declares iVersion 1). `Module` is `#[repr(transparent)]` over `sqlite3_module`, so the
/// transmutes only change the view. iVersion 3 makes SQLite consult xShadowName; the
/// version-2 savepoint methods stay NULL, which SQLite allows: all state is in shadow
/// tables that the journal already covers.
const fn module() -> Module<'static, MemoriesTab> {
    let base: Module<MemoriesTab> = Module::update_module_with_tx();
    // SAFETY: same layout (repr(transparent)); we only fill in NULL callbacks.
    let mut raw: ffi::sqlite3_module = unsafe { std::mem::transmute(base) };
    raw.iVersion = 3;
    raw.xRename = Some(x_rename);
    raw.xShadowName = Some(x_shadow_name);
    unsafe { std::mem::transmute(raw) }
}

/// xShadowName: which `<table>_<suffix>` tables are ours. In defensive mode
/// (SQLITE_DBCONFIG_DEFENSIVE) SQLite then refuses ordinary SQL writes to them, while the
/// table's own methods keep writing.
unsafe extern "C" fn x_shadow_name(suffix: *const std::ffi::c_char) -> c_int {
    if suffix.is_null() {
        return 0;
    }
    // SAFETY: SQLite passes a NUL-terminated suffix.
    let suffix = unsafe { CStr::from_ptr(suffix) }.to_bytes();
    c_int::from(
        crate::store::SHADOW_SUFFIXES
            .iter()
            .any(|s| s.as_bytes().eq_ignore_ascii_case(suffix)),
    )
}

/// xRename: ALTER TABLE ... RENAME TO renames the shadow tables too.
unsafe extern "C" fn x_rename(vtab: *mut ffi::sqlite3_vtab, new: *const std::ffi::c_char) -> c_int {
    if vtab.is_null() || new.is_null() {
        return ffi::SQLITE_ERROR;
    }
    // SAFETY: SQLite passes the table it created through xCreate/xConnect (a MemoriesTab)
    // and a NUL-terminated new name.
    let (tab, new) = unsafe { (&mut *(vtab as *mut MemoriesTab), CStr::from_ptr(new)) };
    let new = new.to_string_lossy().into_owned();
    match guard(|| tab.store.rename(&new)) {
        Ok(()) => ffi::SQLITE_OK,
        Err(e) => {
            if let Ok(msg) = CString::new(e.to_string().replace('\0', " ")) {
                // SAFETY: zErrMsg is owned by SQLite and freed with sqlite3_free.
                unsafe {
                    ffi::sqlite3_free((*vtab).zErrMsg.cast());
                    let bytes = msg.as_bytes_with_nul();
                    let p = ffi::sqlite3_malloc64(bytes.len() as u64).cast::<u8>();
                    if !p.is_null() {
                        std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len());
                    }
                    (*vtab).zErrMsg = p.cast();
                }
            }
            ffi::SQLITE_ERROR
        }
    }
}

/// Memories embedded per ONNX batch by [`MemoriesTab::flush`] (the embedder runs them
/// 16 per model call).
const FLUSH_BATCH: usize = 256;

/// Neighbours examined per new memory by the near-duplicate check (expired ones are
/// skipped).
const NEAR_DUP_CANDIDATES: usize = 8;

/// Most extra candidates a search fetches to make up for hidden (expired, superseded)
/// rows among its best ones: after that it returns what is visible.
const MAX_EXTRA: usize = 4 * search::MAX_K as usize;

/// HNSW candidate list of the near-duplicate check's graph walk (see
/// [`Ann::search_ef`]); the binary16 graph raises it to k + 10 = 18 candidates.
const NEAR_DUP_EF: usize = 24;

/// The expiry of a written row: `now + ttl` when a `ttl` is given, else the
/// `expires_at` value (NULL: never).
fn expiry(ttl: &ValueRef<'_>, expires_at: &ValueRef<'_>, now: i64) -> Result<Option<i64>> {
    match row::ttl(ttl)? {
        Some(ms) => Ok(Some(now.saturating_add(ms))),
        None => row::timestamp(expires_at, "expires_at"),
    }
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

/// One `memories` table on one connection.
#[repr(C)]
pub struct MemoriesTab {
    /// Base class; must be first.
    base: ffi::sqlite3_vtab,
    store: Store,
    ann: RefCell<Ann>,
    /// INSERTs since the last flush that await their near-duplicate check: at
    /// [`FLUSH_BATCH`] the INSERT runs the flush itself, so the checks run in batches
    /// and the pending list stays short during a bulk load.
    awaiting: std::cell::Cell<usize>,
    /// Schema name (`main`, `temp`, an attached name): part of the dedup outcome key.
    schema: String,
}

impl Drop for MemoriesTab {
    fn drop(&mut self) {
        dedup::forget(self.db(), &self.schema, &self.store.table);
    }
}

/// Argument `i` of xUpdate / xFilter.
fn arg<'a>(values: &'a Values<'a>, i: usize) -> Result<ValueRef<'a>> {
    values
        .iter()
        .nth(i)
        .ok_or_else(|| Error::invalid(format!("missing argument {i}")))
}

fn utf8(b: &[u8], what: &str) -> Result<String> {
    String::from_utf8(b.to_vec()).map_err(|_| Error::invalid(format!("{what} is not UTF-8")))
}

impl MemoriesTab {
    fn open_store(
        db: &mut VTabConnection,
        schema: &[u8],
        table: &[u8],
        args: &[&[u8]],
        create: bool,
    ) -> Result<(Cow<'static, CStr>, Self)> {
        let schema = utf8(schema, "schema name")?;
        let table = utf8(table, "table name")?;
        let args: Vec<String> = args
            .iter()
            .map(|a| utf8(a, "option"))
            .collect::<Result<_>>()?;
        // SAFETY: the handle is the connection running this CREATE/connect; `from_handle`
        // does not take ownership, so dropping the Connection leaves it open.
        let conn = unsafe { Connection::from_handle(db.handle()) }?;
        let store = if create {
            let opts = TableOptions::parse(&args)?;
            Store::create(conn, &schema, &table, opts)?
        } else {
            Store::connect(conn, &schema, &table)?
        };
        let sql = CString::new(row::declare_sql(&table))
            .map_err(|_| Error::invalid("table name contains a NUL byte"))?;
        Ok((
            Cow::Owned(sql),
            MemoriesTab {
                base: ffi::sqlite3_vtab::default(),
                store,
                ann: RefCell::new(Ann::new()),
                awaiting: std::cell::Cell::new(0),
                schema,
            },
        ))
    }

    /// Inserts one memory from xUpdate arguments; returns its id.
    fn insert_row(&mut self, args: &Inserts<'_>) -> Result<i64> {
        let v = |c: i32| arg(args, (c + 2) as usize);
        let command = arg(args, (col::TABLE + 2) as usize);
        if !matches!(command, Ok(ValueRef::Null)) {
            return self.command(command?).map(|_| 0);
        }
        let explicit = match row::id(&v(col::ID)?)? {
            Some(id) => Some(id),
            None => row::id(&arg(args, 1)?)?,
        };
        let content = self.scrub_text(row::content(&v(col::CONTENT)?)?, "content")?;
        let now = row::now_ms();
        let created_at = row::timestamp(&v(col::CREATED_AT)?, "created_at")?.unwrap_or(now);
        let updated_at = row::timestamp(&v(col::UPDATED_AT)?, "updated_at")?.unwrap_or(created_at);
        let mut row = Row {
            id: 0,
            namespace: row::namespace(&v(col::NAMESPACE)?)?,
            tags: self.scrub_json(row::tags(&v(col::TAGS)?)?, "tags")?,
            metadata: self.scrub_json(row::metadata(&v(col::METADATA)?)?, "metadata")?,
            source: row::source(&v(col::SOURCE)?)?
                .map(|t| self.scrub_text(t, "source"))
                .transpose()?,
            importance: row::importance(&v(col::IMPORTANCE)?)?,
            created_at,
            updated_at,
            expires_at: expiry(&v(col::TTL)?, &v(col::EXPIRES_AT)?, now)?,
            content,
        };
        let vec = self.embedding_for(&v(col::EMBEDDING)?)?;
        let store = &self.store;
        let dedup = store.opts.dedup;
        let deduplicated = explicit.is_none() && dedup != DedupPolicy::Off;
        if deduplicated
            && let Some(existing) =
                store.find_by_hash(&row.namespace, &dedup::content_hash(&row.content), now, 0)?
        {
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
            Some(id) if store.exists(id)? => {
                // SAFETY: called inside xUpdate on this table's connection.
                let mode = unsafe { args.on_conflict(store.conn().handle()) };
                match mode {
                    rusqlite::vtab::ConflictMode::Replace => {
                        if let Some(old) = store.get(id)? {
                            store.delete(&old)?;
                        }
                        id
                    }
                    rusqlite::vtab::ConflictMode::Ignore => return Ok(id),
                    _ => {
                        return Err(Error::invalid(format!(
                            "UNIQUE constraint failed: {}.id (a memory with id {id} exists; use \
                             INSERT OR REPLACE or UPDATE)",
                            store.table
                        )));
                    }
                }
            }
            Some(id) => id,
            None => store.next_id()?,
        };
        store.insert(&row, vec.change(), near_check)?;
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

    /// The `sqlite3*` address of this table's connection (key of dedup outcomes).
    fn db(&self) -> usize {
        // SAFETY: only the address is used, never dereferenced here.
        unsafe { self.store.conn().handle() as usize }
    }

    fn record(&self, outcome: Outcome) {
        dedup::record(self.db(), &self.schema, &self.store.table, outcome);
    }

    /// Whether inserts are checked for near duplicates (dedup on, threshold below 1).
    fn near_dedup(&self) -> bool {
        let o = &self.store.opts;
        o.dedup != DedupPolicy::Off && o.dedup_threshold < 1.0 && o.metric == vector::Metric::Cosine
    }

    /// The near-duplicate checks of one flushed batch (`batch[i]` with vector `vecs[i]`,
    /// in id order; `checks`: the indexes to check). For each, the nearest live
    /// (unexpired, not superseded) memory of its namespace at cosine >= `dedup_threshold`
    /// gets a `supersedes` link from it. Candidates: the graph's (one short walk per row,
    /// on the index threads), the pending vectors outside the batch (read once), and the
    /// rows before it in the batch; so a row never finds itself or a later row.
    fn check_batch(
        &self,
        batch: &[Unembedded],
        vecs: &[Vec<f32>],
        checks: &[usize],
        now: i64,
    ) -> Result<()> {
        let store = &self.store;
        let metric = store.opts.metric;
        let threshold = store.opts.dedup_threshold;
        let max_distance = (1.0 - threshold) as f32;
        let queries: Vec<(&str, &[f32])> = checks
            .iter()
            .map(|&i| (batch[i].namespace.as_str(), vecs[i].as_slice()))
            .collect();
        let graph = self.ann.borrow_mut().graph_candidates(
            store,
            &queries,
            NEAR_DUP_CANDIDATES,
            NEAR_DUP_EF,
            max_distance,
        )?;
        let in_batch: HashSet<i64> = batch.iter().map(|u| u.id).collect();
        let mut others: Vec<(i64, String, Vec<f32>)> = Vec::new();
        let dim = store.opts.dim;
        store.pending_vectors_ns(|id, ns, blob| {
            if !in_batch.contains(&id)
                && let Some(v) = vector::decode_stored(blob, dim)
            {
                others.push((id, ns.to_string(), v));
            }
        })?;
        // Namespaces of at most exact_max vectors are compared exactly, as searches do:
        // their vectors are read once for the batch.
        let mut small: std::collections::HashMap<&str, Vec<(i64, Vec<f32>)>> =
            std::collections::HashMap::new();
        let cap = store.opts.exact_max.saturating_add(1);
        for &i in checks {
            let ns = batch[i].namespace.as_str();
            if small.contains_key(ns) || store.count_capped(ns, cap)? > store.opts.exact_max {
                continue;
            }
            let mut all = Vec::new();
            store.scan_vectors(Some(ns), |id, blob| {
                if !in_batch.contains(&id)
                    && let Some(v) = vector::decode_stored(blob, dim)
                {
                    all.push((id, v));
                }
            })?;
            small.insert(ns, all);
        }
        for (&i, candidates) in checks.iter().zip(graph) {
            let (u, v) = (&batch[i], &vecs[i]);
            let mut hits: Vec<(i64, f32)> = Vec::new();
            let exact = small.get(u.namespace.as_str());
            for (id, w) in exact.into_iter().flatten() {
                hits.push((*id, metric.distance(v, w)));
            }
            let candidates = if exact.is_some() {
                Vec::new()
            } else {
                candidates
            };
            let others_here = if exact.is_some() {
                &[][..]
            } else {
                &others[..]
            };
            for id in candidates {
                if in_batch.contains(&id) {
                    continue;
                }
                if let Some(w) = store.embedding(id)? {
                    hits.push((id, metric.distance(v, &w)));
                }
            }
            for (id, ns, w) in others_here {
                if *ns == u.namespace {
                    hits.push((*id, metric.distance(v, w)));
                }
            }
            for j in 0..i {
                if batch[j].namespace == u.namespace {
                    hits.push((batch[j].id, metric.distance(v, &vecs[j])));
                }
            }
            hits.retain(|h| h.1 <= max_distance);
            hits.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
            for (id, d) in hits {
                let similarity = 1.0 - f64::from(d);
                if similarity < threshold {
                    break;
                }
                let live = store.get(id)?.is_some_and(|r| !r.expired(now));
                if live && store.superseded_by(id)?.is_none() {
                    store.add_link(u.id, id, SUPERSEDES, similarity, now)?;
                    break;
                }
            }
        }
        Ok(())
    }

    /// The in-statement checkpoint of a write that needs no near-duplicate check. Rows
    /// that await their check must not be folded into the graph before it ran (the check
    /// would find them), so they are flushed first when a checkpoint could be due.
    fn checkpoint_write(&self) -> Result<()> {
        if self.awaiting.get() > 0 {
            self.flush()?;
        }
        self.ann
            .borrow_mut()
            .maybe_checkpoint(&self.store, Checkpoint::Write)
            .map(|_| ())
    }

    /// Folds the duplicate `new` into the existing memory `old` per the dedup policy.
    fn absorb(&self, old: &Row, new: &Row, now: i64) -> Result<()> {
        if self.store.opts.dedup == DedupPolicy::Merge {
            let merged = dedup::merge(old, new, now);
            self.store.update(old, &merged, VectorChange::Keep)?;
        }
        Ok(())
    }

    /// Applies the table's secrets policy ([`redact::enforce_text`]) to one text column.
    ///
    /// # Errors
    /// [`Error::Invalid`] under `secrets=reject` when a secret is found, naming the
    /// column and the kinds of secret (never the secret).
    fn scrub_text(&self, text: String, column: &str) -> Result<String> {
        Ok(
            match redact::enforce_text(self.store.opts.secrets, column, &text)? {
                std::borrow::Cow::Borrowed(_) => text,
                std::borrow::Cow::Owned(t) => t,
            },
        )
    }

    /// [`MemoriesTab::scrub_text`] for a JSON column (`tags`, `metadata`): every string
    /// value, and values under secret-looking keys, are scanned ([`redact::enforce_json`]).
    fn scrub_json(&self, json: String, column: &str) -> Result<String> {
        Ok(
            match redact::enforce_json(self.store.opts.secrets, column, &json)? {
                std::borrow::Cow::Borrowed(_) => json,
                std::borrow::Cow::Owned(t) => t,
            },
        )
    }

    /// What to store as a row's vector: the supplied one, or (no vector supplied,
    /// auto_embed on) the model's embedding of `content`, computed in a batch before the
    /// next search or the commit ([`MemoriesTab::flush`]). The model's presence is checked
    /// here, so a missing model fails the INSERT itself.
    fn embedding_for(&self, supplied: &ValueRef<'_>) -> Result<Embedding> {
        let opts = &self.store.opts;
        match row::embedding(supplied, opts.dim)? {
            Some(v) => {
                if opts.metric == vector::Metric::Cosine && vector::norm(&v) == 0.0 {
                    return Err(Error::invalid(
                        "column embedding: expected a non-zero vector for metric=cosine, got all zeros",
                    ));
                }
                Ok(Embedding::Supplied(v))
            }
            None if opts.auto_embed => {
                self.require_model()?;
                Ok(Embedding::Deferred)
            }
            None => Ok(Embedding::Absent),
        }
    }

    fn require_model(&self) -> Result<Arc<embedder::Embedder>> {
        embedder::get().map_err(|e| {
            Error::Model(format!(
                "{}: no embedding was supplied and auto_embed is on, so the content must be \
                 embedded, but {e}",
                self.store.table
            ))
        })
    }

    /// Embeds, in batches, every memory of the open transaction that awaits its
    /// embedding, and runs the near-duplicate checks that await (a batch at a time, in id
    /// order, [`MemoriesTab::check_batch`]). Called before every query on this table, at
    /// commit (xSync), and by an INSERT every [`FLUSH_BATCH`] checks.
    ///
    /// # Errors
    /// Model or inference errors; SQLite errors.
    fn flush(&self) -> Result<()> {
        self.keeping_last_rowid(|| self.flush_now())
    }

    /// Runs `f`, then restores the connection's `last_insert_rowid()`: the writes to the
    /// shadow tables done by a flush or a checkpoint (in a SELECT, or at COMMIT) must not
    /// change what the user's last INSERT reports.
    fn keeping_last_rowid<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let conn = self.store.conn();
        let saved = conn.last_insert_rowid();
        let r = f();
        if conn.last_insert_rowid() != saved {
            // SAFETY: the handle is this table's open connection, used on its own thread.
            unsafe { ffi::sqlite3_set_last_insert_rowid(conn.handle(), saved) };
        }
        r
    }

    fn flush_now(&self) -> Result<()> {
        let store = &self.store;
        self.awaiting.set(0);
        if !store.has_unembedded()? {
            return Ok(());
        }
        let near = self.near_dedup();
        let now = row::now_ms();
        loop {
            let batch = store.unembedded(FLUSH_BATCH)?;
            if batch.is_empty() {
                break;
            }
            let texts: Vec<&str> = batch
                .iter()
                .filter(|u| u.vector.is_none())
                .map(|u| u.content.as_str())
                .collect();
            let mut embedded = if texts.is_empty() {
                Vec::new()
            } else {
                self.require_model()?.embed_batch(&texts)?
            }
            .into_iter();
            let mut vecs: Vec<Vec<f32>> = Vec::with_capacity(batch.len());
            for u in &batch {
                match &u.vector {
                    Some(v) => vecs.push(v.clone()),
                    None => vecs.push(embedded.next().map(|e| e.to_vec()).ok_or_else(|| {
                        Error::Model("the model returned fewer vectors than texts".into())
                    })?),
                }
            }
            let checks: Vec<usize> = (0..batch.len())
                .filter(|&i| near && batch[i].near_check)
                .collect();
            if !checks.is_empty() {
                self.check_batch(&batch, &vecs, &checks, now)?;
            }
            for (u, v) in batch.iter().zip(&vecs) {
                if u.vector.is_some() {
                    store.clear_unembedded(u.id)?;
                } else {
                    store.set_embedded(u.id, v)?;
                }
            }
            if !checks.is_empty() {
                self.ann
                    .borrow_mut()
                    .maybe_checkpoint(store, Checkpoint::WriteSearched)?;
            }
        }
        self.ann
            .borrow_mut()
            .maybe_checkpoint(store, Checkpoint::Write)?;
        Ok(())
    }

    /// FTS5-style commands: `INSERT INTO mem(mem) VALUES ('rebuild' | 'optimize')`.
    fn command(&mut self, cmd: ValueRef<'_>) -> Result<()> {
        let name = match cmd {
            ValueRef::Text(t) => String::from_utf8_lossy(t).to_ascii_lowercase(),
            _ => String::new(),
        };
        match name.as_str() {
            // Rebuild both derived indexes from the content and vector tables.
            "rebuild" => {
                self.flush()?;
                self.store.delete_orphan_vectors()?;
                self.store.delete_orphan_links()?;
                self.store.rebuild_fts()?;
                self.store.rehash(&self.store.stale_hashes()?)?;
                self.ann.borrow_mut().rebuild(&self.store)
            }
            // Delete every expired memory.
            "purge" => {
                self.flush()?;
                let now = row::now_ms();
                for id in self.store.expired_ids(now, None)? {
                    if let Some(old) = self.store.get(id)? {
                        self.store.delete(&old)?;
                    }
                }
                self.ann
                    .borrow_mut()
                    .maybe_checkpoint(&self.store, Checkpoint::Write)
                    .map(|_| ())
            }
            // Fold pending vectors into the HNSW snapshot now.
            "optimize" => {
                self.flush()?;
                self.ann
                    .borrow_mut()
                    .maybe_checkpoint(&self.store, Checkpoint::Force)
                    .map(|_| ())
            }
            _ => Err(Error::invalid(format!(
                "column {}: expected a command ('rebuild', 'optimize' or 'purge'), got {}",
                self.store.table,
                match cmd {
                    ValueRef::Text(t) => format!("'{}'", String::from_utf8_lossy(t)),
                    other => format!("{other:?}"),
                }
            ))),
        }
    }

    fn update_row(&mut self, args: &Updates<'_>) -> Result<()> {
        let v = |c: i32| arg(args, (c + 2) as usize);
        let old_id = row::id(&arg(args, 0)?)?.unwrap_or(0);
        let new_id = row::id(&arg(args, 1)?)?.unwrap_or(old_id);
        let col_id = row::id(&v(col::ID)?)?.unwrap_or(new_id);
        let new_id = if col_id != old_id { col_id } else { new_id };
        let store = &self.store;
        let Some(old) = store.get(old_id)? else {
            return Ok(());
        };
        let superseded_by = store.superseded_by(old_id)?.map(|(id, _)| id);
        if row::id(&v(col::SUPERSEDED_BY)?)? != superseded_by {
            return Err(Error::invalid(format!(
                "column superseded_by: read-only (set by the near-duplicate check on INSERT; \
                 delete the newer memory to undo it), expected {}, got another value",
                superseded_by.map_or("NULL".to_string(), |i| i.to_string())
            )));
        }
        let content = self.scrub_text(row::content(&v(col::CONTENT)?)?, "content")?;
        let now = row::now_ms();
        let new = Row {
            id: new_id,
            namespace: row::namespace(&v(col::NAMESPACE)?)?,
            tags: self.scrub_json(row::tags(&v(col::TAGS)?)?, "tags")?,
            metadata: self.scrub_json(row::metadata(&v(col::METADATA)?)?, "metadata")?,
            source: row::source(&v(col::SOURCE)?)?
                .map(|t| self.scrub_text(t, "source"))
                .transpose()?,
            importance: row::importance(&v(col::IMPORTANCE)?)?,
            created_at: row::timestamp(&v(col::CREATED_AT)?, "created_at")?
                .unwrap_or(old.created_at),
            updated_at: now,
            expires_at: expiry(&v(col::TTL)?, &v(col::EXPIRES_AT)?, now)?,
            content,
        };
        let content_changed = new.content != old.content;
        let planned = if args.no_change((col::EMBEDDING + 2) as usize) {
            if content_changed && store.opts.auto_embed {
                self.require_model()?;
                Embedding::Deferred
            } else {
                Embedding::Kept
            }
        } else {
            self.embedding_for(&v(col::EMBEDDING)?)?
        };
        let change = planned.change();
        if new_id == old_id {
            store.update(&old, &new, change)?;
        } else {
            // A new id: the memory moves (delete + insert keep every index exact).
            if store.exists(new_id)? {
                return Err(Error::invalid(format!(
                    "UNIQUE constraint failed: {}.id (cannot change id {old_id} to {new_id}: a \
                     memory with id {new_id} exists)",
                    store.table
                )));
            }
            let kept = match change {
                VectorChange::Keep => store.embedding(old_id)?,
                _ => None,
            };
            let change = match (&kept, change) {
                (Some(v), _) => VectorChange::Set(v),
                (None, VectorChange::Keep) if store.opts.auto_embed => VectorChange::Defer,
                (None, c) => c,
            };
            store.move_links(old_id, new_id)?;
            store.delete(&old)?;
            store.insert(&new, change, false)?;
        }
        self.checkpoint_write()
    }
}

unsafe impl<'vtab> VTab<'vtab> for MemoriesTab {
    type Aux = ();
    type Cursor = MemCursor<'vtab>;

    fn connect(
        db: &mut VTabConnection,
        _aux: Option<&()>,
        _module: &[u8],
        schema: &[u8],
        table: &[u8],
        args: &[&[u8]],
    ) -> rusqlite::Result<(Cow<'static, CStr>, Self)> {
        guard(|| Self::open_store(db, schema, table, args, false))
    }

    fn best_index(&self, info: &mut IndexInfo) -> rusqlite::Result<bool> {
        guard(|| {
            let terms: Vec<Term> = info
                .constraints()
                .map(|c| Term {
                    column: c.column(),
                    op: match c.operator() {
                        IndexConstraintOp::SQLITE_INDEX_CONSTRAINT_EQ => Op::Eq,
                        IndexConstraintOp::SQLITE_INDEX_CONSTRAINT_MATCH => Op::Match,
                        IndexConstraintOp::SQLITE_INDEX_CONSTRAINT_LIMIT => Op::Limit,
                        IndexConstraintOp::SQLITE_INDEX_CONSTRAINT_OFFSET => Op::Offset,
                        _ => Op::Other,
                    },
                    usable: c.is_usable(),
                })
                .collect();
            let order_by: Vec<(i32, bool)> = info
                .order_bys()
                .map(|o| (o.column(), o.is_order_by_desc()))
                .collect();
            let reranks = Ranking::from_options(&self.store.opts).active();
            let Some(d) = planner::plan(&terms, &order_by, reranks) else {
                return Ok(false);
            };
            for (i, u) in d.usage.iter().enumerate() {
                if let Some((argv, omit)) = u {
                    let mut usage = info.constraint_usage(i);
                    usage.set_argv_index(*argv);
                    usage.set_omit(*omit);
                }
            }
            info.set_idx_num(d.idx_num);
            info.set_idx_str(&d.idx_str);
            info.set_order_by_consumed(d.order_by_consumed);
            info.set_estimated_cost(d.cost);
            info.set_estimated_rows(d.rows);
            Ok(true)
        })
    }

    fn open(&'vtab mut self) -> rusqlite::Result<MemCursor<'vtab>> {
        Ok(MemCursor {
            base: ffi::sqlite3_vtab_cursor::default(),
            results: Vec::new(),
            components: Vec::new(),
            ranking: None,
            pos: 0,
            row: None,
            k: None,
            phantom: PhantomData,
        })
    }
}

impl CreateVTab<'_> for MemoriesTab {
    const KIND: VTabKind = VTabKind::Default;

    fn create(
        db: &mut VTabConnection,
        _aux: Option<&()>,
        _module: &[u8],
        schema: &[u8],
        table: &[u8],
        args: &[&[u8]],
    ) -> rusqlite::Result<(Cow<'static, CStr>, Self)> {
        guard(|| Self::open_store(db, schema, table, args, true))
    }

    fn destroy(&self) -> rusqlite::Result<()> {
        guard(|| self.store.destroy())
    }
}

impl UpdateVTab<'_> for MemoriesTab {
    fn delete(&mut self, arg: ValueRef<'_>) -> rusqlite::Result<()> {
        guard(|| {
            let Some(id) = row::id(&arg)? else {
                return Ok(());
            };
            if let Some(old) = self.store.get(id)? {
                self.store.delete(&old)?;
                self.checkpoint_write()?;
            }
            Ok(())
        })
    }

    fn insert(&mut self, args: &Inserts<'_>) -> rusqlite::Result<i64> {
        guard(|| self.insert_row(args))
    }

    fn update(&mut self, args: &Updates<'_>) -> rusqlite::Result<()> {
        guard(|| self.update_row(args))
    }
}

impl TransactionVTab<'_> for MemoriesTab {
    /// xSync, at COMMIT: no memory is committed without its embedding, and the HNSW
    /// snapshot is brought up to date when enough is pending. An error here makes SQLite
    /// roll the whole transaction back.
    fn sync(&mut self) -> rusqlite::Result<()> {
        guard(|| {
            self.keeping_last_rowid(|| {
                self.flush()?;
                self.ann
                    .borrow_mut()
                    .maybe_checkpoint(&self.store, Checkpoint::Commit)
                    .map(|_| ())
            })
        })
    }

    /// xRollback: the outcome of an INSERT that was rolled back is forgotten (the rows,
    /// hashes and pending checks are undone by the journal).
    fn rollback(&mut self) -> rusqlite::Result<()> {
        dedup::forget(self.db(), &self.schema, &self.store.table);
        Ok(())
    }
}

/// A cursor over the result of one plan: the ids found, each row read when reached.
#[repr(C)]
pub struct MemCursor<'vtab> {
    /// Base class; must be first.
    base: ffi::sqlite3_vtab_cursor,
    results: Vec<Found>,
    /// Ranking components per result when recency/importance ranked them.
    components: Vec<Components>,
    /// The ranking used, when a search ran.
    ranking: Option<Ranking>,
    pos: usize,
    row: Option<Row>,
    k: Option<i64>,
    phantom: PhantomData<&'vtab MemoriesTab>,
}

impl MemCursor<'_> {
    fn tab<'t>(&self) -> &'t MemoriesTab {
        // SAFETY: SQLite sets pVtab to the table that opened this cursor, which outlives it
        // (the cursor is closed before its table is disconnected).
        unsafe { &*(self.base.pVtab as *const MemoriesTab) }
    }

    /// The `explain` column of the current result: the ranking components (JSON), NULL
    /// outside a search.
    fn explain(&self) -> Option<String> {
        let rank = self.ranking?;
        let found = self.results.get(self.pos)?;
        match self.components.get(self.pos) {
            Some(c) => Some(c.to_json(&rank, found.distance)),
            None => {
                let mut m = serde_json::Map::new();
                if let Some(s) = found.score {
                    m.insert("search_score".into(), s.into());
                }
                if let Some(d) = found.distance {
                    m.insert("distance".into(), d.into());
                }
                if let Some(s) = found.score {
                    m.insert("score".into(), s.into());
                }
                Some(serde_json::Value::Object(m).to_string())
            }
        }
    }

    /// Moves to the first result at or after `pos` whose row still exists.
    fn settle(&mut self) -> Result<()> {
        self.row = None;
        while self.pos < self.results.len() {
            if let Some(r) = self.tab().store.get(self.results[self.pos].id)? {
                self.row = Some(r);
                return Ok(());
            }
            self.pos += 1;
        }
        Ok(())
    }

    fn run(&mut self, idx_num: c_int, args: &Filters<'_>) -> Result<(Vec<Found>, Vec<Components>)> {
        if idx_num & bit::CONFLICT != 0 {
            return Err(Error::invalid(
                "memories: a query may have only one MATCH (embedding, content or the table \
                 column); combine searches with a subquery",
            ));
        }
        let mut vals: [Option<ValueRef<'_>>; bit::ARGS.len()] = [None; bit::ARGS.len()];
        let mut next = 0;
        for (slot, b) in bit::ARGS.iter().enumerate() {
            if idx_num & b != 0 {
                vals[slot] = Some(arg(args, next)?);
                next += 1;
            }
        }
        let [
            knn,
            keyword,
            hybrid,
            k,
            ns,
            rowid,
            limit,
            offset,
            ranking,
            include_superseded,
        ] = vals;
        // `x MATCH NULL` matches nothing, as any comparison with NULL.
        if [knn, keyword, hybrid]
            .iter()
            .any(|m| matches!(m, Some(ValueRef::Null)))
        {
            return Ok((Vec::new(), Vec::new()));
        }
        // `k`, the rowid and LIMIT/OFFSET with SQLite's integer affinity: `k = '3'` is 3.
        let int = |v: Option<ValueRef<'_>>, what: &str| -> Result<Option<i64>> {
            v.map_or(Ok(None), |v| row::integer(&v, what, "an INTEGER"))
        };
        let ns: Option<String> = match ns {
            None => None,
            Some(ValueRef::Text(t)) => Some(String::from_utf8_lossy(t).into_owned()),
            Some(ValueRef::Null) => return Ok((Vec::new(), Vec::new())),
            // TEXT affinity, as an ordinary TEXT column compares: a number as SQLite
            // renders it (REAL 1.0 is '1.0'), a BLOB never equals a TEXT value.
            Some(ValueRef::Integer(i)) => Some(i.to_string()),
            Some(ValueRef::Real(r)) => Some(self.tab().store.conn().query_row(
                "SELECT CAST(?1 AS TEXT)",
                [r],
                |row| row.get(0),
            )?),
            Some(ValueRef::Blob(_)) => return Ok((Vec::new(), Vec::new())),
        };
        let k_val = int(k, "column k")?;
        let limit = int(limit, "LIMIT")?;
        let offset = int(offset, "OFFSET")?.unwrap_or(0).max(0);
        let table = &self.tab().store.table;
        // First SQLite release that passes LIMIT to xBestIndex in a query with a MATCH term
        // (measured with EXPLAIN QUERY PLAN: 3.40.1 does not, 3.41.0 and 3.54.1 do).
        const LIMIT_WITH_MATCH: i64 = 3_041_000;
        let k_for = |needed: bool| -> Result<Option<usize>> {
            match (k_val, limit) {
                (Some(k), _) => search::check_k(k, "k").map(Some),
                (None, Some(l)) if l >= 0 => {
                    search::check_k(l.saturating_add(offset).clamp(1, search::MAX_K), "LIMIT")
                        .map(Some)
                }
                _ if needed => {
                    // From the version string: as an extension, the number that
                    // `sqlite3_libversion_number()` reports is at least the 3.45.3 that
                    // rusqlite's bindings expect (see `entry`).
                    let host_version = crate::host_sqlite_version()
                        .split('.')
                        .map(|p| p.parse::<i64>().unwrap_or(0))
                        .chain([0, 0])
                        .take(3)
                        .fold(0, |n, p| n * 1000 + p);
                    let why = match limit {
                        Some(l) => format!("LIMIT {l} sets no limit"),
                        None if host_version < LIMIT_WITH_MATCH => format!(
                            "this query passed no LIMIT to the table, and SQLite {} never \
                             passes LIMIT to a virtual table in a query with MATCH (3.41.0 \
                             and later do)",
                            crate::host_sqlite_version()
                        ),
                        None => "this query passed no LIMIT to the table (SQLite passes it \
                                 only when the query reads this table alone, without \
                                 DISTINCT, GROUP BY or an aggregate, every WHERE term is the \
                                 MATCH, k, namespace =, id = or ranking =, and any ORDER BY is \
                                 on its columns)"
                            .to_string(),
                    };
                    Err(Error::invalid(format!(
                        "{table}: a KNN or hybrid search needs k, as in `AND k = 10`, or a \
                         LIMIT; {why}"
                    )))
                }
                _ => Ok(None),
            }
        };
        let tab = self.tab();
        let store = &tab.store;
        let mut rank = Ranking::from_options(&store.opts);
        match ranking {
            None | Some(ValueRef::Null) => {}
            Some(ValueRef::Text(t)) => rank = rank.with_json(&String::from_utf8_lossy(t))?,
            Some(other) => {
                return Err(Error::invalid(format!(
                    "column ranking: expected a JSON object as TEXT, got {}",
                    row::type_name(&other)
                )));
            }
        }
        let searching = knn.is_some() || keyword.is_some() || hybrid.is_some();
        if ranking.is_some() && !searching {
            return Err(Error::invalid(format!(
                "ranking: only meaningful with a search (embedding MATCH, content MATCH or \
                 {table} MATCH)"
            )));
        }
        let include_superseded = match include_superseded {
            None | Some(ValueRef::Null) => false,
            Some(ValueRef::Integer(i)) => i != 0,
            Some(ValueRef::Real(r)) => r != 0.0,
            Some(other) => {
                return Err(Error::invalid(format!(
                    "column include_superseded: expected 0 or 1, got {}",
                    row::type_name(&other)
                )));
            }
        };
        // Expired (and, unless asked for, superseded) memories never come back from a
        // search: fetch that many more, drop them.
        let now = row::now_ms();
        // Expired memories, and superseded ones unless asked for, never come back from a
        // search. Each candidate is checked (two indexed lookups); when too few remain the
        // search runs again with twice the extra depth, so a table with many hidden rows
        // pays only where they crowd the top.
        let hidden = |id: i64| -> Result<bool> {
            Ok(store.get(id)?.is_none_or(|r| r.expired(now))
                || (!include_superseded && store.superseded_by(id)?.is_some()))
        };
        let pool = |k: usize| rank.pool(k, search::MAX_K as usize);
        let run_visible = |k: usize,
                           search: &mut dyn FnMut(usize) -> Result<(Vec<Found>, bool)>|
         -> Result<Vec<Found>> {
            let need = pool(k);
            let mut extra = 0usize;
            loop {
                let (found, exhausted) = search(extra)?;
                let mut visible = Vec::with_capacity(found.len());
                for f in found {
                    if !hidden(f.id)? {
                        visible.push(f);
                    }
                }
                if visible.len() >= need || exhausted || extra >= MAX_EXTRA {
                    return Ok(visible);
                }
                extra = (extra * 2).max(k.min(MAX_EXTRA)).max(16).min(MAX_EXTRA);
            }
        };
        self.ranking = Some(rank);
        let finish = |found: Vec<Found>, k: usize| -> Result<(Vec<Found>, Vec<Components>)> {
            let mut found = found;
            if !rank.active() {
                found.truncate(k);
                return Ok((found, Vec::new()));
            }
            let (mut found, mut comps) = rank.apply(found, now, |id| store.get(id))?;
            found.truncate(k);
            comps.truncate(k);
            Ok((found, comps))
        };
        if let Some(q) = knn {
            let k = k_for(true)?.unwrap_or(10);
            self.k = Some(k as i64);
            let query = match q {
                ValueRef::Blob(b) => vector::decode(b, store.opts.dim, "embedding MATCH")?,
                ValueRef::Text(t) if t.first() == Some(&b'[') => {
                    let v = vector::from_json(&String::from_utf8_lossy(t))?;
                    if v.len() != store.opts.dim {
                        return Err(Error::invalid(format!(
                            "embedding MATCH: expected {} numbers, got {}",
                            store.opts.dim,
                            v.len()
                        )));
                    }
                    v
                }
                other => {
                    return Err(Error::invalid(format!(
                        "embedding MATCH: expected a BLOB of {} float32 or a JSON array, got {}; \
                         to search by text use embedding MATCH embed('...') or {table} MATCH '...'",
                        store.opts.dim,
                        match other {
                            ValueRef::Text(_) => "TEXT",
                            ValueRef::Null => "NULL",
                            ValueRef::Integer(_) => "INTEGER",
                            _ => "REAL",
                        }
                    )));
                }
            };
            let found = run_visible(k, &mut |extra| {
                let want = pool(k).saturating_add(extra);
                let found = search::knn(
                    store,
                    &mut tab.ann.borrow_mut(),
                    &query,
                    want,
                    ns.as_deref(),
                )?;
                let exhausted = found.len() < want;
                Ok((found, exhausted))
            })?;
            return finish(found, k);
        }
        if let Some(q) = keyword {
            let k = k_for(false)?.unwrap_or(usize::MAX);
            self.k = k_val;
            let q = match q {
                ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                _ => {
                    return Err(Error::invalid(
                        "content MATCH: expected an FTS5 query as TEXT",
                    ));
                }
            };
            let found = run_visible(k, &mut |extra| {
                let want = pool(k).saturating_add(extra);
                let found = search::keyword(store, &q, want, ns.as_deref())?;
                let exhausted = found.len() < want;
                Ok((found, exhausted))
            })?;
            return finish(found, k);
        }
        if let Some(q) = hybrid {
            let k = k_for(true)?.unwrap_or(10);
            self.k = Some(k as i64);
            let text = match q {
                ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                _ => {
                    return Err(Error::invalid(format!(
                        "{table} MATCH: expected the search text as TEXT"
                    )));
                }
            };
            // Without re-ranking, the first run uses the candidate depth a plain k-search
            // uses; re-ranking wants a deeper pool. Hidden rows deepen it.
            let found = run_visible(k, &mut |extra| {
                let want = pool(k).saturating_add(extra);
                let depth = if rank.active() {
                    want
                } else {
                    k.max(store.opts.hybrid_depth) + extra
                };
                let found = search::hybrid(
                    store,
                    &mut tab.ann.borrow_mut(),
                    &text,
                    want,
                    depth,
                    ns.as_deref(),
                )?;
                let exhausted = found.len() < want;
                Ok((found, exhausted))
            })?;
            return finish(found, k);
        }
        if k_val.is_some() {
            return Err(Error::invalid(format!(
                "k: only meaningful with a search (embedding MATCH, content MATCH or {table} MATCH)"
            )));
        }
        let ids = match int(rowid, "column id")? {
            Some(id) => vec![id],
            None if rowid.is_some() => Vec::new(),
            None => store.ids(ns.as_deref())?,
        };
        self.ranking = None;
        Ok((
            ids.into_iter()
                .map(|id| Found {
                    id,
                    distance: None,
                    score: None,
                })
                .collect(),
            Vec::new(),
        ))
    }
}

unsafe impl VTabCursor for MemCursor<'_> {
    fn filter(
        &mut self,
        idx_num: c_int,
        _idx_str: Option<&str>,
        args: &Filters<'_>,
    ) -> rusqlite::Result<()> {
        guard(|| {
            self.k = None;
            // Searches see this transaction's writes, embeddings included.
            self.tab().flush()?;
            self.ranking = None;
            (self.results, self.components) = self.run(idx_num, args)?;
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
        self.row.is_none()
    }

    fn column(&self, ctx: &mut Context, i: c_int) -> rusqlite::Result<()> {
        let Some(r) = &self.row else {
            return ctx.set_result(Null);
        };
        let found = self.results.get(self.pos);
        match i {
            col::ID => ctx.set_result(r.id),
            col::CONTENT => ctx.set_result(&r.content),
            col::NAMESPACE => ctx.set_result(&r.namespace),
            col::TAGS => ctx.set_result(&r.tags),
            col::METADATA => ctx.set_result(&r.metadata),
            col::SOURCE => ctx.set_result(&r.source),
            col::IMPORTANCE => ctx.set_result(r.importance),
            col::CREATED_AT => ctx.set_result(r.created_at),
            col::UPDATED_AT => ctx.set_result(r.updated_at),
            col::EMBEDDING => {
                if ctx.no_change() {
                    return Ok(());
                }
                let blob = guard(|| self.tab().store.embedding_blob(r.id))?;
                ctx.set_result(&blob)
            }
            col::EXPIRES_AT => ctx.set_result(r.expires_at),
            col::SUPERSEDED_BY => {
                let by = guard(|| self.tab().store.superseded_by(r.id))?;
                ctx.set_result(by.map(|(id, _)| id))
            }
            col::EXPLAIN => ctx.set_result(self.explain()),
            col::DISTANCE => ctx.set_result(found.and_then(|f| f.distance)),
            col::SCORE => ctx.set_result(found.and_then(|f| f.score)),
            col::K => ctx.set_result(self.k),
            _ => ctx.set_result(Null),
        }
    }

    fn rowid(&self) -> rusqlite::Result<i64> {
        Ok(self.row.as_ref().map_or(0, |r| r.id))
    }
}
