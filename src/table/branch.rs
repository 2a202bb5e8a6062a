//! Branches: a writable `memories` table that starts as another table (its base) as of a
//! version, and `subcog_merge`'s three-way merge of a branch back into its base.
//!
//! **Storage (copy-on-write per row).** Creating a branch writes its empty shadow tables,
//! `branch_of`/`branch_fork` in its `_config` and a `branch:<name>` key in the base's
//! `_config` ([`crate::store::branch`]); no row, vector or link of the base is copied.
//! The branch's `_content`/`_fts`/`_vectors`/`_links` then hold only what the branch
//! wrote, and `_masked` every memory and link it wrote (so a deleted base memory is masked
//! and absent). The branch's `_history` is the history of what the branch shows (each
//! change's `before` is the row the branch showed, a base row included), numbered on
//! from the fork version.
//!
//! **Reads and writes run on a working copy.** The branch as it is = the base as of the
//! fork ([`super::history::copy_at`], the as-of copy: private in-memory table, sharing the
//! base's HNSW snapshot) with the branch's masks and rows applied. It is built once per
//! connection and kept while the branch's version is the one it reflects (a write of
//! another connection, a ROLLBACK or a failed statement changes the version, and xRollback
//! drops it). A query runs the ordinary [`MemoryTable::query`] on it, so ids, order and
//! scores are those of a plain copy. A write runs the ordinary write path on it
//! (redaction, dedup against the base's rows, ids after the base's, embeddings,
//! near-duplicate links), then every memory and link the write changed (read from the
//! copy's own history) is written through to the branch's shadow tables and masked, and
//! the copy's changes are appended to the branch's `_history`.
//!
//! **Merge** ([`MemoryTable::merge_branch`], run as the base's command
//! `'merge:<policy>:<branch>'`): for every memory the branch masked, three rows are
//! compared: *base* (the target as of the fork version: [`Store::undo_to`]), *theirs*
//! (the branch's) and *ours* (the target's now). Unchanged in the branch: skipped.
//! Changed in the branch only: applied. Changed on both sides to different results: a
//! conflict, resolved by the policy (`fail`: error, nothing changes; `ours`: kept;
//! `theirs`: the branch's row written). A memory new in the branch whose id the target
//! took meanwhile gets the next free id (`renumbered`), and its links follow. Links
//! masked by the branch are merged the same way (a link changed on both sides keeps the
//! target's unless the policy is `theirs`); a link whose ends are missing is skipped.
//! Everything is written through the target's store in the statement's transaction,
//! recorded as op `merge_branch`, so `subcog_restore` undoes it.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::rc::Rc;

use rusqlite::Connection;

use super::MemoryTable;
use super::dedup::{self, content_hash};
use super::history::{Target, copy_at, resolve};
use super::query::{Answer, AsOf, Query};
use crate::error::{Error, Result};
use crate::options::TableOptions;
use crate::row::Row;
use crate::store::bulk::raw_id;
use crate::store::history::row_json;
use crate::store::{Link, Store, VectorChange};
use crate::vector;

/// History op of the memory changes a merge writes into its target.
pub(crate) const MERGE_OP: &str = "merge_branch";

/// A branch's identity and its working copy on this connection.
pub(crate) struct Branch {
    /// The base table's name (same schema).
    pub(crate) base: String,
    /// The base's version the branch was forked at.
    pub(crate) fork: i64,
    copy: RefCell<Option<Working>>,
}

/// The working copy: the branch as it is, and what it reflects.
struct Working {
    table: Rc<MemoryTable>,
    /// The branch's version the copy shows.
    synced: i64,
    /// The copy's own history version written through to the branch so far.
    seen: i64,
    /// Set while a write runs on the copy: a write that failed half way leaves the copy
    /// ahead of the branch, so it is rebuilt.
    dirty: bool,
}

impl Branch {
    /// A branch of `base` forked at `fork`, without a working copy yet.
    pub(crate) fn new(base: String, fork: i64) -> Self {
        Branch {
            base,
            fork,
            copy: RefCell::new(None),
        }
    }
}

/// The `branch_of` and `at` arguments of a CREATE, taken out of the option list.
pub(crate) struct BranchArgs {
    pub(crate) base: Option<String>,
    pub(crate) at: Option<String>,
    /// The other options.
    pub(crate) rest: Vec<String>,
}

/// `value` without its SQL quotes (`'it''s'` -> `it's`).
fn unquote(value: &str) -> String {
    let v = value.trim();
    let b = v.as_bytes();
    if b.len() >= 2 && (b[0] == b'\'' || b[0] == b'"') && b[b.len() - 1] == b[0] {
        let q = b[0] as char;
        v[1..v.len() - 1].replace(&format!("{q}{q}"), &q.to_string())
    } else {
        v.to_string()
    }
}

/// Splits `branch_of=` and `at=` off the CREATE arguments.
pub(crate) fn split_args(args: &[String]) -> BranchArgs {
    let mut out = BranchArgs {
        base: None,
        at: None,
        rest: Vec::new(),
    };
    for a in args {
        match a.split_once('=') {
            Some((k, v)) if k.trim().eq_ignore_ascii_case("branch_of") => {
                out.base = Some(unquote(v));
            }
            Some((k, v)) if k.trim().eq_ignore_ascii_case("at") => out.at = Some(unquote(v)),
            _ => out.rest.push(a.clone()),
        }
    }
    out
}

/// A second connection object on `conn`'s handle (not owned: dropping it leaves the
/// connection open), for the store of another table.
fn same_connection(conn: &Connection) -> Result<Connection> {
    // SAFETY: the handle is the open connection `conn`, used on this thread; `from_handle`
    // does not take ownership.
    Ok(unsafe { Connection::from_handle(conn.handle()) }?)
}

/// The store of the memories table `table` in `schema` on `conn`, or an error for `what`.
fn table_store(conn: &Connection, schema: &str, table: &str, what: &str) -> Result<Store> {
    let (s, t) = crate::names::resolve(
        conn,
        what,
        &format!(
            "{}.{}",
            crate::names::quote(schema),
            crate::names::quote(table)
        ),
    )?;
    Store::connect(same_connection(conn)?, &s, &t)
}

/// The merge policy of `subcog_merge`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    /// Any conflict is an error; nothing changes.
    Fail,
    /// Conflicts keep the target's side.
    Ours,
    /// Conflicts take the branch's side.
    Theirs,
}

impl Policy {
    /// `fail`, `ours` or `theirs` (case-insensitive).
    ///
    /// # Errors
    /// [`Error::Invalid`] naming `what` and the value.
    pub(crate) fn parse(what: &str, v: &str) -> Result<Self> {
        match v.trim().to_ascii_lowercase().as_str() {
            "fail" => Ok(Policy::Fail),
            "ours" => Ok(Policy::Ours),
            "theirs" => Ok(Policy::Theirs),
            _ => Err(Error::invalid(format!(
                "{what}: expected 'fail', 'ours' or 'theirs', got '{}'",
                v.chars().take(80).collect::<String>()
            ))),
        }
    }

    /// The policy's name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Policy::Fail => "fail",
            Policy::Ours => "ours",
            Policy::Theirs => "theirs",
        }
    }
}

/// A memory changed on both sides: its row (JSON) at the fork, in the target, in the
/// branch (`None`: absent).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Conflict {
    /// The memory's id in the target.
    pub(crate) id: i64,
    /// Its id in the branch (differs when an earlier merge renumbered it).
    pub(crate) branch_id: i64,
    pub(crate) base: Option<String>,
    pub(crate) ours: Option<String>,
    pub(crate) theirs: Option<String>,
}

/// One memory to write into the target.
struct RowStep {
    /// The id in the target (the branch's, or its new id when renumbered).
    id: i64,
    /// The branch's row (its id set to `id`), `None`: delete.
    theirs: Option<Row>,
    /// The branch's stored vector.
    vector: Option<Vec<u8>>,
    /// Whether the branch's row awaits its embedding.
    unembedded: bool,
}

/// One link to write into the target (ends already renumbered).
struct LinkStep {
    /// The branch's link (to add), or the key of the one to remove.
    link: Link,
    add: bool,
    /// Changed in the target too: applied only under the `theirs` policy.
    contested: bool,
}

/// What a merge does, computed from the three sides without writing anything.
pub(crate) struct Plan {
    steps: Vec<RowStep>,
    links: Vec<LinkStep>,
    /// Branch id -> target id, for memories new in the branch whose id the target took.
    pub(crate) renumbered: BTreeMap<i64, i64>,
    pub(crate) conflicts: Vec<Conflict>,
}

/// Reads `(row, vector)` of `id` in `store`.
fn state(store: &Store, id: i64) -> Result<(Option<Row>, Option<Vec<u8>>)> {
    let row = store.get(id)?;
    let vector = match row {
        Some(_) => store.embedding_blob(id)?,
        None => None,
    };
    Ok((row, vector))
}

/// Checks that `branch` is a branch of `into` and returns its fork version.
///
/// # Errors
/// [`Error::Invalid`] for the same table twice, a table that is not a branch, or a
/// branch of another table.
pub(crate) fn fork_of(func: &str, branch: &Store, into: &Store) -> Result<i64> {
    if branch.table.eq_ignore_ascii_case(&into.table) {
        return Err(Error::invalid(format!(
            "{func}: branch and into are the same table '{}'; merge a branch into its base",
            branch.table
        )));
    }
    match branch.branch_info()? {
        None => Err(Error::invalid(format!(
            "{func}(branch): '{}' is not a branch (create one with subcog_branch or \
             CREATE VIRTUAL TABLE ... USING memories(branch_of=...)); tables unrelated to '{}'",
            branch.table, into.table
        ))),
        Some((base, fork)) if base.eq_ignore_ascii_case(&into.table) => Ok(fork),
        Some((base, _)) => Err(Error::invalid(format!(
            "{func}(into): '{}' is a branch of '{base}', not of '{}': unrelated tables",
            branch.table, into.table
        ))),
    }
}

/// The merge of `branch` (forked from `into` at `fork`) into `into`, computed without
/// writing.
///
/// # Errors
/// SQLite errors; [`Error::Corrupt`] for a history row that does not parse.
pub(crate) fn plan(into: &Store, branch: &Store, fork: i64) -> Result<Plan> {
    let undo = into.undo_to(fork)?;
    let at_fork = |id: i64| -> Result<(Option<Row>, Option<Vec<u8>>)> {
        let row = match undo.rows.get(&id) {
            Some(r) => r.clone(),
            None => into.get(id)?,
        };
        let vector = match (&row, undo.vectors.get(&id)) {
            (None, _) => None,
            (Some(_), Some(v)) => v.clone(),
            (Some(_), None) => into.embedding_blob(id)?,
        };
        Ok((row, vector))
    };
    let unembedded = branch.unembedded_flags()?;
    let mapped = branch.merged_ids()?;
    let masked = branch.masked_ids()?;
    let masked_links = branch.masked_links()?;
    let mut out = Plan {
        steps: Vec::new(),
        links: Vec::new(),
        renumbered: BTreeMap::new(),
        conflicts: Vec::new(),
    };
    let mut new_ids = Vec::new();
    for &id in &masked {
        let target = mapped.get(&id).copied().unwrap_or(id);
        let base = at_fork(target)?;
        let (trow, tvec) = state(branch, id)?;
        let theirs = (
            trow.map(|mut r| {
                r.id = target;
                r
            }),
            tvec,
        );
        if theirs == base {
            continue;
        }
        let ours = state(into, target)?;
        if ours == theirs {
            continue;
        }
        let step = |theirs: (Option<Row>, Option<Vec<u8>>)| RowStep {
            id: target,
            theirs: theirs.0,
            vector: theirs.1,
            unembedded: unembedded.contains_key(&id),
        };
        if base.0.is_none() && !mapped.contains_key(&id) {
            // New in the branch: its id if free in the target, else a new one.
            match (&theirs.0, &ours.0) {
                (None, _) => {}
                (Some(_), Some(_)) => new_ids.push(id),
                (Some(_), None) => out.steps.push(step(theirs)),
            }
            continue;
        }
        if ours != base {
            out.conflicts.push(Conflict {
                id: target,
                branch_id: id,
                base: base.0.as_ref().map(row_json),
                ours: ours.0.as_ref().map(row_json),
                theirs: theirs.0.as_ref().map(row_json),
            });
            continue;
        }
        out.steps.push(step(theirs));
    }
    // New ids the target took meanwhile: the next ids free in both.
    if !new_ids.is_empty() {
        let kept = out.steps.iter().map(|s| s.id).max().unwrap_or(0);
        let mut next = into.next_id()?.max(kept.saturating_add(1));
        for id in new_ids {
            while into.exists(next)? {
                next = next.saturating_add(1);
            }
            out.renumbered.insert(id, next);
            let (row, vector) = state(branch, id)?;
            out.steps.push(RowStep {
                id: next,
                theirs: row.map(|mut r| {
                    r.id = next;
                    r
                }),
                vector,
                unembedded: unembedded.contains_key(&id),
            });
            next = next.saturating_add(1);
        }
    }
    for (src, kind, dst) in masked_links {
        let map = |x: i64| {
            out.renumbered
                .get(&x)
                .or_else(|| mapped.get(&x))
                .copied()
                .unwrap_or(x)
        };
        let (s, d) = (map(src), map(dst));
        let base = match undo.links.get(&(s, kind.clone(), d)) {
            Some(l) => l.clone(),
            None => into.link_of(s, d, &kind)?,
        };
        let theirs = branch.link_of(src, dst, &kind)?.map(|mut l| {
            l.src = s;
            l.dst = d;
            l
        });
        if theirs == base {
            continue;
        }
        let ours = into.link_of(s, d, &kind)?;
        if ours == theirs {
            continue;
        }
        out.links.push(LinkStep {
            add: theirs.is_some(),
            contested: ours != base,
            link: theirs.unwrap_or(Link {
                src: s,
                dst: d,
                kind,
                weight: 0.0,
                created_at: 0,
            }),
        });
    }
    Ok(out)
}

/// A conflict as JSON: `{"id", "base", "ours", "theirs"}`, rows as JSON objects or null.
pub(crate) fn conflict_json(c: &Conflict) -> serde_json::Value {
    let row = |r: &Option<String>| -> serde_json::Value {
        r.as_deref()
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or(serde_json::Value::Null)
    };
    serde_json::json!({
        "id": c.id,
        "base": row(&c.base),
        "ours": row(&c.ours),
        "theirs": row(&c.theirs),
    })
}

thread_local! {
    /// The JSON result of the last merge run on this thread, for `subcog_merge` to return
    /// (the merge runs as the target's command, which returns no value).
    static LAST_MERGE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Takes the JSON result of the last merge run on this thread.
pub(crate) fn take_merge_result() -> Option<String> {
    LAST_MERGE.with(|m| m.borrow_mut().take())
}

/// The command text that merges `branch` into a table with `policy`.
pub(crate) fn merge_command(policy: Policy, branch: &str) -> String {
    format!("merge:{}:{branch}", policy.name())
}

/// The `(policy, branch)` of a `merge:<policy>:<branch>` command (`None`: another
/// command).
///
/// # Errors
/// [`Error::Invalid`] for an unknown policy.
pub(crate) fn merge_target(name: &str) -> Result<Option<(Policy, String)>> {
    let Some((head, rest)) = name.split_once(':') else {
        return Ok(None);
    };
    if !head.trim().eq_ignore_ascii_case("merge") {
        return Ok(None);
    }
    let (policy, branch) = rest.split_once(':').ok_or_else(|| {
        Error::invalid(format!(
            "command '{name}': expected 'merge:<fail|ours|theirs>:<branch>'"
        ))
    })?;
    Ok(Some((
        Policy::parse("command merge (policy)", policy)?,
        branch.to_string(),
    )))
}

impl MemoryTable {
    /// Creates the branch `table` of `base` at `at` (a snapshot name, a version or a time;
    /// `None`: the base's current version). `rest`: other options, which must agree with
    /// the base's.
    ///
    /// # Errors
    /// [`Error::Invalid`]: `base` missing or not a memories table, the table itself, a
    /// branch, without history; an unknown snapshot, a version in the future; an option
    /// that contradicts the base's. SQLite errors.
    pub(crate) fn create_branch(
        conn: Connection,
        schema: &str,
        table: &str,
        base: &str,
        at: Option<&str>,
        rest: &[String],
    ) -> Result<Self> {
        const W: &str = "memories option branch_of";
        if base.eq_ignore_ascii_case(table) {
            return Err(Error::invalid(format!(
                "{W}: a table cannot be a branch of itself ('{table}')"
            )));
        }
        let (bschema, bname) = crate::names::resolve(&conn, W, base)
            .and_then(|(s, t)| {
                if s.eq_ignore_ascii_case(schema) {
                    Ok((s, t))
                } else {
                    crate::names::resolve(
                        &conn,
                        W,
                        &format!(
                            "{}.{}",
                            crate::names::quote(schema),
                            crate::names::quote(base)
                        ),
                    )
                }
            })
            .map_err(|_| {
                Error::invalid(format!(
                    "{W}: expected a memories table of database '{schema}', got '{base}' (no \
                     memories table named so)"
                ))
            })?;
        let base_store = Store::connect(same_connection(&conn)?, &bschema, &bname)?;
        if let Some((of, _)) = base_store.branch_info()? {
            return Err(Error::invalid(format!(
                "{W}: '{bname}' is itself a branch (of '{of}'); branch '{of}' instead"
            )));
        }
        if !base_store.history_on() {
            return Err(Error::invalid(format!(
                "{W}: '{bname}' keeps no history (created with history=off); a branch reads its \
                 base as of the fork version"
            )));
        }
        let fork = match at {
            None => base_store.version()?,
            Some(a) => {
                let target = match a.trim().parse::<i64>() {
                    Ok(i) => Target::from_int(i),
                    Err(_) => Target::Snapshot(a.to_string()),
                };
                resolve(&base_store, "memories option at", &target)?.version
            }
        };
        let opts = base_store.opts.clone();
        let base_pairs = opts.to_pairs();
        for arg in rest.iter().filter(|a| !a.trim().is_empty()) {
            let mut with: Vec<String> =
                base_pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            with.push(arg.clone());
            // The option alone must be valid (an unknown key or a bad value says so).
            TableOptions::parse(std::slice::from_ref(arg))?;
            let differs = match TableOptions::parse(&with) {
                Ok(given) => given.to_pairs() != base_pairs,
                Err(_) => true,
            };
            if differs {
                let key = arg.split_once('=').map_or(arg.as_str(), |(k, _)| k).trim();
                let theirs = base_pairs
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(key))
                    .map_or(String::new(), |(k, v)| format!(" ({k}={v})"));
                return Err(Error::invalid(format!(
                    "memories option '{}': contradicts the base '{bname}'{theirs}; a branch \
                     takes its base's options",
                    arg.trim()
                )));
            }
        }
        let store = Store::create(conn, schema, table, opts)?;
        store.create_masked()?;
        store.set_branch_info(&bname, fork)?;
        base_store.add_branch(table, fork)?;
        let mut t = MemoryTable::new(store, schema);
        t.branch = Some(Branch::new(bname, fork));
        Ok(t)
    }

    /// The base's store (opened for this call; its name is read again, as a RENAME of the
    /// base rewrites it).
    fn base_store(&self, b: &Branch) -> Result<Store> {
        let conn = self.store.conn();
        let base = self
            .store
            .branch_info()?
            .map_or_else(|| b.base.clone(), |(name, _)| name);
        table_store(conn, &self.schema, &base, "branch").map_err(|_| {
            Error::invalid(format!(
                "{}: its base '{base}' is missing (dropped?); drop the branch",
                self.store.table
            ))
        })
    }

    /// The branch's working copy, built when missing or stale.
    fn working(&self, b: &Branch) -> Result<Rc<MemoryTable>> {
        let version = self.store.version()?;
        if let Some(w) = b.copy.borrow().as_ref()
            && !w.dirty
            && w.synced == version
        {
            return Ok(Rc::clone(&w.table));
        }
        b.copy.replace(None);
        let base = self.base_store(b)?;
        let own = &self.store;
        let hide: HashSet<i64> = own.masked_ids()?.into_iter().collect();
        let mut table = copy_at(&base, b.fork, &hide, |copy| {
            let flags = own.unembedded_flags()?;
            let mut rewritten: HashSet<i64> = HashSet::new();
            own.scan_raw(|row, hash, blob| {
                let id = raw_id(row)?;
                rewritten.insert(id);
                let flag = flags.get(&id).copied();
                copy.add(row, hash, blob, flag)
            })?;
            // A memory the branch deleted goes with its links (as its DELETE removed
            // them); one it rewrote keeps the base's links the branch did not change.
            copy.links.retain(|(src, _, dst), _| {
                let deleted = |id: &i64| hide.contains(id) && !rewritten.contains(id);
                !deleted(src) && !deleted(dst)
            });
            for key in own.masked_links()? {
                copy.links.remove(&key);
            }
            for l in own.all_links()? {
                copy.links.insert((l.src, l.kind.clone(), l.dst), l);
            }
            Ok(())
        })?;
        // From now on the copy is the branch: its write path runs with the branch's own
        // options, and records (what the branch writes through).
        let mut opts = own.opts.clone();
        opts.history_keep = crate::options::Retention::All;
        table.store.opts = opts;
        let table = Rc::new(table);
        let seen = table.store.version()?;
        b.copy.replace(Some(Working {
            table: Rc::clone(&table),
            synced: version,
            seen,
            dirty: false,
        }));
        Ok(table)
    }

    /// Runs the write `f` on the working copy, then writes what it changed through to
    /// the branch (`vectors`: also the embeddings the copy computed meanwhile).
    fn branch_write<T>(
        &self,
        b: &Branch,
        vectors: bool,
        f: impl FnOnce(&MemoryTable) -> Result<T>,
    ) -> Result<T> {
        let copy = self.working(b)?;
        let seen = {
            let mut w = b.copy.borrow_mut();
            let Some(w) = w.as_mut() else {
                return Err(Error::Corrupt("branch working copy vanished".into()));
            };
            w.dirty = true;
            w.seen
        };
        let out = f(copy.as_ref())?;
        let seen = self.write_through(&copy, seen, vectors)?;
        if let Some(o) = dedup::last(copy.db(), &copy.schema, &copy.store.table) {
            self.record(o);
        }
        let version = self.store.version()?;
        if let Some(w) = b.copy.borrow_mut().as_mut() {
            w.dirty = false;
            w.seen = seen;
            w.synced = version;
        }
        Ok(out)
    }

    /// Writes every memory and link the copy changed after its version `seen` through
    /// to the branch's shadow tables (masked), appends the copy's changes to the branch's
    /// history; returns the copy's version now.
    fn write_through(&self, copy: &MemoryTable, seen: i64, vectors: bool) -> Result<i64> {
        let own = &self.store;
        let cs = &copy.store;
        let changes = cs.changes_after(seen)?;
        let mut ids = BTreeSet::new();
        let mut links = BTreeSet::new();
        for c in &changes {
            match c.link_key()? {
                Some(k) => {
                    links.insert(k);
                }
                None => {
                    ids.insert(c.id);
                }
            }
        }
        let dim = own.opts.dim;
        own.quietly(|| {
            for &id in &ids {
                own.mask_memory(id)?;
                let cur = cs.get(id)?;
                let old = own.get(id)?;
                match (old, cur) {
                    (None, None) => {}
                    (Some(o), None) => own.delete(&o)?,
                    (old, Some(c)) => {
                        let blob = cs.embedding_blob(id)?;
                        let v = blob.as_deref().and_then(|b| vector::decode_stored(b, dim));
                        let flag = cs.unembedded_flag(id)?;
                        let change = match (&v, flag) {
                            (Some(v), _) => VectorChange::Set(v),
                            (None, Some(_)) => VectorChange::Defer,
                            (None, None) => VectorChange::Remove,
                        };
                        match old {
                            None => own.insert(
                                &c,
                                &content_hash(&c.content),
                                change,
                                flag.unwrap_or(false),
                            )?,
                            Some(o) => {
                                let same_vector = own.embedding_blob(id)? == blob;
                                let change = if same_vector && flag.is_none() {
                                    VectorChange::Keep
                                } else {
                                    change
                                };
                                own.update(&o, &c, change)?;
                            }
                        }
                    }
                }
            }
            for (src, kind, dst) in &links {
                own.mask_link(*src, kind, *dst)?;
                match cs.link_of(*src, *dst, kind)? {
                    Some(l) => own.add_link(l.src, l.dst, &l.kind, l.weight, l.created_at)?,
                    None => {
                        own.remove_link(*src, *dst, Some(kind.as_str()))?;
                    }
                }
            }
            if vectors {
                // Embeddings the copy's flush computed (not changes of their own).
                for (id, _) in own.unembedded_flags()? {
                    if cs.unembedded_flag(id)?.is_some() {
                        continue;
                    }
                    match cs.embedding(id)? {
                        Some(v) => own.set_embedded(id, &v)?,
                        None => own.clear_unembedded(id)?,
                    }
                }
            }
            Ok(())
        })?;
        own.append_changes(&changes)?;
        Ok(changes.last().map_or(seen, |c| c.version))
    }

    /// INSERT into a branch (on its working copy, written through).
    pub(super) fn branch_insert(
        &self,
        b: &Branch,
        new: super::write::NewRow,
        on_conflict: super::write::OnConflict,
    ) -> Result<i64> {
        self.branch_write(b, false, |c| c.insert(new, on_conflict))
    }

    /// UPDATE of a branch's memory.
    pub(super) fn branch_update(&self, b: &Branch, change: super::write::Change) -> Result<()> {
        self.branch_write(b, false, |c| c.update(change))
    }

    /// DELETE of a branch's memory.
    pub(super) fn branch_delete(&self, b: &Branch, id: i64) -> Result<()> {
        self.branch_write(b, false, |c| c.delete(id))
    }

    /// The branch's flush: its working copy embeds what awaits (and runs the
    /// near-duplicate checks), written through. Nothing when nothing awaits.
    pub(super) fn branch_flush(&self, b: &Branch) -> Result<()> {
        if !self.store.has_unembedded()? {
            return Ok(());
        }
        self.branch_write(b, true, |c| c.flush())
    }

    /// A query on a branch: the ordinary query of its working copy (the cursor reads the
    /// rows' embeddings and `superseded_by` from the copy).
    pub(super) fn branch_query(&self, b: &Branch, query: Query) -> Result<Answer> {
        let copy = self.working(b)?;
        let scan = matches!(query, Query::Scan { .. });
        let mut answer = copy.query(query)?;
        if scan {
            let ids: Vec<i64> = answer.results.iter().map(|f| f.id).collect();
            answer.rows = copy.store.rows_of(&ids)?;
        }
        answer.as_of = Some(AsOf {
            version: None,
            table: copy,
        });
        Ok(answer)
    }

    /// A command on a branch: `purge` runs on the working copy; `rebuild` repairs the
    /// branch's own FTS5 index and hashes; `optimize` has nothing to fold (the branch's
    /// searches run on the working copy); `restore:` and `merge:` are refused.
    pub(super) fn branch_command(&self, b: &Branch, name: &str) -> Result<()> {
        let lower = name.trim().to_ascii_lowercase();
        match lower.as_str() {
            "purge" => {
                self.branch_write(b, true, |c| {
                    c.flush()?;
                    super::commands::purge(&c.store, crate::row::now_ms()).map(|_| ())
                })?;
                self.store.history_purge(crate::row::now_ms()).map(|_| ())
            }
            "rebuild" => {
                self.branch_flush(b)?;
                let store = &self.store;
                store.delete_orphan_vectors()?;
                store.rebuild_fts()?;
                store.rehash(&store.stale_hashes()?)?;
                b.copy.replace(None);
                Ok(())
            }
            "optimize" => self.branch_flush(b),
            _ if lower.starts_with("restore:") || lower.starts_with("restore :") => {
                Err(Error::invalid(format!(
                    "subcog_restore: {} is a branch; restoring a branch is not supported (drop \
                     it and branch again at the version wanted)",
                    self.store.table
                )))
            }
            _ => Err(super::commands::unknown(
                &self.store.table,
                &format!("'{name}'"),
            )),
        }
    }

    /// The as-of copy is refused on a branch.
    pub(super) fn branch_as_of(&self) -> Error {
        Error::invalid(format!(
            "as_of: {} is a branch; as-of queries of a branch are not supported (query its \
             base with as_of, or diff the branch with subcog_diff)",
            self.store.table
        ))
    }

    /// Drops the working copy (ROLLBACK).
    pub(super) fn branch_rollback(&self, b: &Branch) {
        b.copy.replace(None);
    }

    /// Merges the branch `branch` (of this table) into this table with `policy`, in the
    /// statement's transaction; returns the result JSON (`{"applied", "conflicts",
    /// "policy", "renumbered", "links"}`) and keeps it for [`take_merge_result`].
    ///
    /// # Errors
    /// [`Error::Invalid`] for a table that is not a branch of this one, and under `fail`
    /// for conflicts (naming their ids; nothing is written); SQLite errors.
    pub(crate) fn merge_branch(&self, branch: &str, policy: Policy) -> Result<String> {
        const F: &str = "subcog_merge";
        if self.branch.is_some() {
            return Err(Error::invalid(format!(
                "{F}(into): '{}' is a branch; merge a branch into its base",
                self.store.table
            )));
        }
        self.flush()?;
        let store = &self.store;
        let bstore = table_store(store.conn(), &self.schema, branch, &format!("{F}(branch)"))?;
        let fork = fork_of(F, &bstore, store)?;
        if store.history_floor()? > fork {
            return Err(Error::invalid(format!(
                "{F}: {} no longer keeps its history back to version {fork}, where {} was forked",
                store.table, bstore.table
            )));
        }
        let plan = plan(store, &bstore, fork)?;
        if policy == Policy::Fail && !plan.conflicts.is_empty() {
            let ids: Vec<String> = plan.conflicts.iter().map(|c| c.id.to_string()).collect();
            return Err(Error::invalid(format!(
                "{F}: {} conflicts between {} and {} (memories {}) changed on both sides since \
                 version {fork}; nothing was merged. Preview them with \
                 subcog_merge_conflicts('{}', '{}'), or merge with policy 'ours' or 'theirs'",
                plan.conflicts.len(),
                bstore.table,
                store.table,
                ids.join(", "),
                bstore.table,
                store.table
            )));
        }
        let dim = store.opts.dim;
        let mut steps: Vec<&RowStep> = plan.steps.iter().collect();
        // Under `theirs`, conflicts take the branch's side.
        let conflict_steps: Vec<RowStep> = if policy == Policy::Theirs {
            plan.conflicts
                .iter()
                .map(|c| -> Result<RowStep> {
                    let (row, vector) = state(&bstore, c.branch_id)?;
                    Ok(RowStep {
                        id: c.id,
                        theirs: row.map(|mut r| {
                            r.id = c.id;
                            r
                        }),
                        vector,
                        unembedded: bstore.unembedded_flag(c.branch_id)?.is_some(),
                    })
                })
                .collect::<Result<_>>()?
        } else {
            Vec::new()
        };
        steps.extend(conflict_steps.iter());
        let mut applied = 0usize;
        store.with_op(MERGE_OP, || {
            for s in &steps {
                let ours = store.get(s.id)?;
                let decoded = s
                    .vector
                    .as_deref()
                    .and_then(|b| vector::decode_stored(b, dim));
                let change = match &decoded {
                    Some(v) => VectorChange::Set(v),
                    None if s.unembedded && store.opts.auto_embed => VectorChange::Defer,
                    None => VectorChange::Remove,
                };
                match (ours, &s.theirs) {
                    (None, None) => continue,
                    (Some(o), None) => store.delete(&o)?,
                    (None, Some(t)) => store.insert(t, &content_hash(&t.content), change, false)?,
                    (Some(o), Some(t)) => {
                        let same = store.embedding_blob(s.id)? == s.vector && !s.unembedded;
                        let change = if same { VectorChange::Keep } else { change };
                        store.update(&o, t, change)?;
                    }
                }
                applied += 1;
            }
            Ok(())
        })?;
        let mut links = 0usize;
        for l in &plan.links {
            if l.contested && policy != Policy::Theirs {
                continue;
            }
            let k = &l.link;
            if l.add {
                if store.exists(k.src)? && store.exists(k.dst)? {
                    store.add_link(k.src, k.dst, &k.kind, k.weight, k.created_at)?;
                    links += 1;
                }
            } else if store.remove_link(k.src, k.dst, Some(k.kind.as_str()))? > 0 {
                links += 1;
            }
        }
        self.checkpoint_write()?;
        // A later merge of the same branch maps these ids the same way (so a memory is
        // not inserted twice).
        bstore.set_merged_ids(&plan.renumbered)?;
        let renumbered: serde_json::Map<String, serde_json::Value> = plan
            .renumbered
            .iter()
            .map(|(k, v)| (k.to_string(), (*v).into()))
            .collect();
        let json = serde_json::json!({
            "applied": applied,
            "conflicts": plan.conflicts.iter().map(conflict_json).collect::<Vec<_>>(),
            "policy": policy.name(),
            "renumbered": renumbered,
            "links": links,
        })
        .to_string();
        LAST_MERGE.with(|m| *m.borrow_mut() = Some(json.clone()));
        Ok(json)
    }

    /// After a rename of this table from `old`: a branch's base key follows; a base's
    /// branches name the new name.
    pub(super) fn renamed(&self, old: &str) -> Result<()> {
        match &self.branch {
            Some(b) => {
                let base = self
                    .store
                    .branch_info()?
                    .map_or_else(|| b.base.clone(), |(name, _)| name);
                self.store.branch_renamed(&base, old, b.fork)
            }
            None => self.store.base_renamed(),
        }
    }

    /// DROP TABLE: a base with live branches cannot be dropped; a branch is forgotten by
    /// its base.
    pub(super) fn before_destroy(&self) -> Result<()> {
        match &self.branch {
            Some(b) => {
                let base = self
                    .store
                    .branch_info()?
                    .map_or_else(|| b.base.clone(), |(name, _)| name);
                self.store.forget_branch(&base, &self.store.table)
            }
            None => {
                let names: Vec<String> =
                    self.store.branches()?.into_iter().map(|(n, _)| n).collect();
                if names.is_empty() {
                    Ok(())
                } else {
                    Err(Error::invalid(format!(
                        "DROP TABLE {}: it has branches ({}); merge or drop them first",
                        self.store.table,
                        names.join(", ")
                    )))
                }
            }
        }
    }
}

/// The conflicts `subcog_merge(branch, into)` would report, by id.
///
/// # Errors
/// As [`fork_of`]; SQLite errors.
pub(crate) fn conflicts(func: &str, branch: &Store, into: &Store) -> Result<Vec<Conflict>> {
    let fork = fork_of(func, branch, into)?;
    Ok(plan(into, branch, fork)?.conflicts)
}
