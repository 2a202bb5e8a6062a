//! The MCP server's tools: each one is a thin wrapper over [`crate::ops`], i.e. SQL
//! against the `memories` table, run on Tokio's blocking pool.

use std::borrow::Cow;
use std::sync::Arc;

use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::model::{
    ErrorData, Extensions, Implementation, ProtocolVersion, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, ServerHandler, tool, tool_handler, tool_router};
use rusqlite::Connection;

use super::MAX_PROTOCOL;
use super::pool::Pool;
use super::schema::{
    Args, BranchArgs, BranchResult, ContextArgs, ContextResult, DeleteResult, DiffArgs, DiffResult,
    HistoryArgs, HistoryResult, IdArgs, LinkArgs, LinkResult, ListArgs, ListResult, MergeArgs,
    MergeResult, RestoreArgs, RestoreResult, SearchArgs, SearchResult, SnapshotAction,
    SnapshotArgs, SnapshotResult, StatsArgs, StoreArgs, StoreResult, UpdateArgs,
};
use crate::access::{Principal, Scope};
use crate::db::TABLE;
use crate::ops::{self, Memory, Stats, history};

const INSTRUCTIONS: &str = "Long-term memory that persists across conversations, stored in a \
local SQLite database. Search it (memory_search) before answering questions about the user, \
their projects or earlier decisions; store (memory_store) durable facts, preferences and \
decisions as short self-contained sentences; update or delete memories that turn out wrong. \
Every change is versioned: memory_history shows how a memory changed, memory_snapshot names \
the current state, memory_diff compares two states, and memory_restore brings one back.";

/// The MCP server: the connections to the memory database ([`Pool`]) and, for
/// `subcog serve`, the rule that every call carries a [`Principal`] (put into the HTTP
/// request's extensions by the bearer-token layer) whose scopes every tool checks.
#[derive(Clone)]
pub(crate) struct MemoryServer {
    pool: Arc<Pool>,
    path: Arc<str>,
    /// Whether each call must carry a principal (HTTP); over stdio the caller is
    /// [`Principal::local`].
    authenticated: bool,
}

impl MemoryServer {
    /// Wraps an open connection to the memory database at `path` (stdio: one connection,
    /// the local user).
    pub(crate) fn new(conn: Connection, path: String) -> Self {
        MemoryServer {
            pool: Arc::new(Pool::single(conn)),
            path: path.into(),
            authenticated: false,
        }
    }

    /// A server over a pool whose every call must carry a [`Principal`] (`subcog serve`).
    pub(crate) fn authenticated(pool: Arc<Pool>, path: String) -> Self {
        MemoryServer {
            pool,
            path: path.into(),
            authenticated: true,
        }
    }

    /// The caller of a tool: the principal the HTTP layer attached, or the local user
    /// over stdio. Fails closed: an HTTP call without one is refused.
    fn principal(&self, ext: &Extensions) -> Result<Principal, String> {
        if !self.authenticated {
            return Ok(Principal::local());
        }
        ext.get::<http::request::Parts>()
            .and_then(|p| p.extensions.get::<Principal>())
            .cloned()
            .ok_or_else(|| "unauthenticated: this call carries no token".to_string())
    }

    /// Runs a read on a reader connection of the pool (on Tokio's blocking pool).
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, &str) -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        let path = Arc::clone(&self.path);
        self.pool.read(move |c| f(c, &path)).await
    }

    /// Runs a write on the writer connection (writes are serialised).
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        self.pool.write(f).await
    }

    /// Logs a tool call of an authenticated caller: the token's name, never the token,
    /// and for a failed call its kind only (messages can quote arguments, e.g. a query).
    fn logged<T>(&self, p: &Principal, tool: &str, r: Result<T, String>) -> Result<T, String> {
        if self.authenticated {
            let outcome = match &r {
                Ok(_) => "ok",
                Err(e) if e.starts_with("forbidden:") => "forbidden",
                Err(e) if e.starts_with("no memory with id") => "not found",
                Err(_) => "error",
            };
            tracing::info!(target: "subcog::access", token = %p.name, tool, outcome, "tool call");
        }
        r
    }
}

/// Checks that `p` may change memory `id`: a memory outside both of the caller's scopes
/// gets exactly the message of a missing id (so ids of other namespaces cannot be
/// probed); one it sees but may not write gets "forbidden". Run on the writer connection,
/// in the same call as the change (writes are serialised, and a memory's namespace never
/// changes).
fn check_writable(conn: &Connection, p: &Principal, id: i64) -> Result<(), String> {
    let ns = ops::namespace_of(conn, id)?
        .filter(|ns| p.sees(ns))
        .ok_or_else(|| ops::no_such(id))?;
    p.check_write(&ns)
}

/// The message for a memory id the history does not hold (also given, word for word, for
/// the history of a memory outside the caller's namespaces).
fn no_history(id: i64) -> String {
    format!(
        "no memory with id {id} in the history; memory_list shows the existing ids, \
         memory_diff the ones added or removed since a version"
    )
}

/// The snapshot name of an action that needs one.
fn snapshot_name(name: Option<String>, action: &str) -> Result<String, String> {
    name.filter(|n| !n.trim().is_empty())
        .ok_or_else(|| format!("give name: action {action} needs the snapshot's name"))
}

/// The namespace a context may use for `p`: the one asked for (if readable), none (every
/// namespace) for a caller that reads all, or the caller's only readable namespace.
fn context_namespace(p: &Principal, asked: Option<String>) -> Result<Option<String>, String> {
    match (asked, &p.read) {
        (Some(ns), _) => p.check_read(&ns).map(|()| Some(ns)),
        (None, Scope::All) => Ok(None),
        (None, Scope::Only(set)) => match set.iter().next() {
            Some(ns) if set.len() == 1 => Ok(Some(ns.clone())),
            _ => Err(format!(
                "give namespace: token {:?} reads {} namespaces ({}), and a context is \
                 assembled within one",
                p.name,
                set.len(),
                p.read
            )),
        },
    }
}

#[tool_router]
impl MemoryServer {
    /// `memory_store`.
    #[tool(
        name = "memory_store",
        description = "Save a memory that should persist across conversations: a fact about \
        the user, a preference, a decision, or a piece of project knowledge. Write `content` as \
        one self-contained sentence. Secrets (API keys, tokens, passwords) and personal data \
        (e-mail addresses, phone numbers, card numbers, SSNs) are redacted. The \
        result gives the memory's id and an outcome: inserted (a new memory); duplicate (the \
        same text already exists as memory id: no new memory; action says whether its tags \
        and metadata were merged into it or it was left unchanged); superseded (a new memory \
        that replaces a nearly identical older one, e.g. a corrected fact: the older memory, \
        given as supersedes with the similarity, no longer comes back from searches).",
        annotations(
            title = "Store a memory",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn memory_store(
        &self,
        ext: Extensions,
        Parameters(Args(a)): Parameters<Args<StoreArgs>>,
    ) -> Result<Json<StoreResult>, String> {
        let p = self.principal(&ext)?;
        let m = ops::NewMemory {
            content: a.content,
            namespace: a.namespace,
            tags: a.tags,
            metadata: a.metadata,
            importance: a.importance,
            source: a.source,
            ttl: a.ttl,
        };
        let r = match p.check_write(m.namespace.as_deref().unwrap_or("default")) {
            Ok(()) => self.write(move |c| ops::store(c, &m)).await,
            Err(e) => Err(e),
        };
        Ok(Json(self.logged(&p, "memory_store", r)?))
    }

    /// `memory_search`.
    #[tool(
        name = "memory_search",
        description = "Find stored memories relevant to a question or topic. Use it before \
        answering anything that may depend on earlier conversations, the user's preferences or \
        project history. Returns up to k memories, most relevant first, each with its id and a \
        score (higher is better). mode: hybrid (default, keywords + meaning), vector (meaning \
        only, finds paraphrases), keyword (exact words only). recency (0..1) prefers newer \
        memories and importance (0..1) more important ones; the result then explains each score.",
        annotations(
            title = "Search memories",
            read_only_hint = true,
            open_world_hint = false
        )
    )]
    async fn memory_search(
        &self,
        ext: Extensions,
        Parameters(Args(a)): Parameters<Args<SearchArgs>>,
    ) -> Result<Json<SearchResult>, String> {
        let p = self.principal(&ext)?;
        // A caller that does not read every namespace searches each of its namespaces
        // (or the one it names, if readable); the hits are merged by score.
        let namespaces: Option<Vec<String>> = match (&a.namespace, &p.read) {
            (Some(ns), _) => match p.check_read(ns) {
                Ok(()) => Some(vec![ns.clone()]),
                Err(e) => return Ok(Json(self.logged(&p, "memory_search", Err(e))?)),
            },
            (None, Scope::All) => None,
            (None, Scope::Only(set)) => Some(set.iter().cloned().collect()),
        };
        let r = self
            .read(move |c, _| {
                let ranking = ops::Ranking {
                    recency_weight: a.recency,
                    half_life: a.recency_half_life,
                    importance_weight: a.importance,
                };
                let Some(namespaces) = namespaces else {
                    return ops::search(c, &a.query, a.k, None, a.mode, &ranking);
                };
                let mut all = Vec::new();
                for ns in &namespaces {
                    all.extend(ops::search(c, &a.query, a.k, Some(ns), a.mode, &ranking)?);
                }
                if namespaces.len() > 1 {
                    all.sort_by(|x, y| {
                        y.score
                            .total_cmp(&x.score)
                            .then(x.memory.id.cmp(&y.memory.id))
                    });
                    all.truncate(usize::try_from(a.k).unwrap_or(usize::MAX));
                }
                Ok(all)
            })
            .await;
        let results = self.logged(&p, "memory_search", r)?;
        Ok(Json(SearchResult { results }))
    }

    /// `memory_context`.
    #[tool(
        name = "memory_context",
        description = "Assemble what memory knows about a question into a context of at most \
        budget tokens: the most relevant memories (hybrid search, plus memories linked to \
        them), verbatim, grouped by namespace and in the order they were stored, each group \
        with its date. Memories that contradict each other are marked. Use it at the start of \
        a task instead of several searches. Returns the context and, for each memory in it, \
        its id, tokens, score and why it was chosen.",
        annotations(
            title = "Assemble a context",
            read_only_hint = true,
            open_world_hint = false
        )
    )]
    async fn memory_context(
        &self,
        ext: Extensions,
        Parameters(Args(a)): Parameters<Args<ContextArgs>>,
    ) -> Result<Json<ContextResult>, String> {
        let p = self.principal(&ext)?;
        let r = match context_namespace(&p, a.namespace) {
            Ok(ns) => {
                self.read(move |c, _| {
                    ops::context(
                        c,
                        &a.query,
                        a.budget,
                        ops::ContextOptions {
                            namespace: ns.as_deref(),
                            format: Some(a.format.as_str()),
                            as_of: a.as_of.as_ref(),
                        },
                    )
                })
                .await
            }
            Err(e) => Err(e),
        };
        Ok(Json(self.logged(&p, "memory_context", r)?))
    }

    /// `memory_link`.
    #[tool(
        name = "memory_link",
        description = "Link two memories by id: kind relates (default), supersedes (src \
        replaces dst: dst no longer comes back from searches or contexts), contradicts \
        (contexts mark the pair), derived_from, part_of, or a name of your own. \
        memory_context follows links one hop. Linking the same pair with the same kind \
        again replaces the weight.",
        annotations(
            title = "Link two memories",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn memory_link(
        &self,
        ext: Extensions,
        Parameters(Args(a)): Parameters<Args<LinkArgs>>,
    ) -> Result<Json<LinkResult>, String> {
        let p = self.principal(&ext)?;
        let who = p.clone();
        let r = self
            .write(move |c| {
                check_writable(c, &who, a.src)?;
                check_writable(c, &who, a.dst)?;
                ops::link(c, a.src, a.dst, &a.kind, a.weight)
            })
            .await;
        Ok(Json(self.logged(&p, "memory_link", r)?))
    }

    /// `memory_get`.
    #[tool(
        name = "memory_get",
        description = "Read one memory by id, with all its fields (content, namespace, tags, \
        metadata, source, importance, timestamps).",
        annotations(title = "Get a memory", read_only_hint = true, open_world_hint = false)
    )]
    async fn memory_get(
        &self,
        ext: Extensions,
        Parameters(Args(a)): Parameters<Args<IdArgs>>,
    ) -> Result<Json<Memory>, String> {
        let p = self.principal(&ext)?;
        let who = p.clone();
        let r = self
            .read(move |c, _| {
                let m = ops::get(c, a.id)?;
                if !who.sees(&m.namespace) {
                    return Err(ops::no_such(a.id));
                }
                who.check_read(&m.namespace)?;
                Ok(m)
            })
            .await;
        Ok(Json(self.logged(&p, "memory_get", r)?))
    }

    /// `memory_update`.
    #[tool(
        name = "memory_update",
        description = "Correct or refine a memory by id. Give only the fields to change; \
        each one given replaces the old value (tags and metadata are replaced, not merged). \
        Returns the memory as it is now.",
        annotations(
            title = "Update a memory",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn memory_update(
        &self,
        ext: Extensions,
        Parameters(Args(a)): Parameters<Args<UpdateArgs>>,
    ) -> Result<Json<Memory>, String> {
        let p = self.principal(&ext)?;
        let who = p.clone();
        let changes = ops::Changes {
            content: a.content,
            tags: a.tags,
            metadata: a.metadata,
            importance: a.importance,
        };
        let r = self
            .write(move |c| {
                check_writable(c, &who, a.id)?;
                ops::update(c, a.id, &changes)
            })
            .await;
        Ok(Json(self.logged(&p, "memory_update", r)?))
    }

    /// `memory_delete`.
    #[tool(
        name = "memory_delete",
        description = "Delete a memory by id, permanently. Use it for memories that are wrong, \
        obsolete or that the user asked to forget.",
        annotations(
            title = "Delete a memory",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn memory_delete(
        &self,
        ext: Extensions,
        Parameters(Args(a)): Parameters<Args<IdArgs>>,
    ) -> Result<Json<DeleteResult>, String> {
        let p = self.principal(&ext)?;
        let who = p.clone();
        let id = a.id;
        let r = self
            .write(move |c| {
                check_writable(c, &who, id)?;
                ops::delete(c, id)
            })
            .await;
        self.logged(&p, "memory_delete", r)?;
        Ok(Json(DeleteResult { id, deleted: true }))
    }

    /// `memory_list`.
    #[tool(
        name = "memory_list",
        description = "List stored memories, newest first, optionally in one namespace. Page \
        with limit (default 20) and offset.",
        annotations(
            title = "List memories",
            read_only_hint = true,
            open_world_hint = false
        )
    )]
    async fn memory_list(
        &self,
        ext: Extensions,
        Parameters(Args(a)): Parameters<Args<ListArgs>>,
    ) -> Result<Json<ListResult>, String> {
        let p = self.principal(&ext)?;
        let namespaces: Option<Vec<String>> = match (a.namespace, &p.read) {
            (Some(ns), _) => match p.check_read(&ns) {
                Ok(()) => Some(vec![ns]),
                Err(e) => return Ok(Json(self.logged(&p, "memory_list", Err(e))?)),
            },
            (None, Scope::All) => None,
            (None, Scope::Only(set)) => Some(set.iter().cloned().collect()),
        };
        let r = self
            .read(move |c, _| {
                let names: Option<Vec<&str>> = namespaces
                    .as_ref()
                    .map(|v| v.iter().map(String::as_str).collect());
                ops::list(c, names.as_deref(), a.limit, a.offset)
            })
            .await;
        let memories = self.logged(&p, "memory_list", r)?;
        Ok(Json(ListResult { memories }))
    }

    /// `memory_stats`.
    #[tool(
        name = "memory_stats",
        description = "Overview of the memory store: number of memories per namespace, the \
        embedding model (and whether it is loaded yet), and the database file's path and size.",
        annotations(
            title = "Memory statistics",
            read_only_hint = true,
            open_world_hint = false
        )
    )]
    async fn memory_stats(
        &self,
        ext: Extensions,
        Parameters(Args(StatsArgs {})): Parameters<Args<StatsArgs>>,
    ) -> Result<Json<Stats>, String> {
        let p = self.principal(&ext)?;
        let r = self.read(ops::stats).await.map(|mut s| {
            // Only the namespaces the caller reads (an admin token sees them all).
            if !p.admin && !p.reads_all() {
                s.namespaces.retain(|n| p.read.allows(&n.namespace));
                s.total = s.namespaces.iter().map(|n| n.count).sum();
            }
            s
        });
        Ok(Json(self.logged(&p, "memory_stats", r)?))
    }

    /// `memory_history`.
    #[tool(
        name = "memory_history",
        description = "Every recorded version of one memory, oldest first: when it was \
        inserted, updated, merged with a duplicate, deleted or restored, with the memory as \
        it was before and after each change, and the version number of each change (which \
        memory_diff and memory_restore take). Works for deleted memories too.",
        annotations(
            title = "History of a memory",
            read_only_hint = true,
            open_world_hint = false
        )
    )]
    async fn memory_history(
        &self,
        ext: Extensions,
        Parameters(Args(a)): Parameters<Args<HistoryArgs>>,
    ) -> Result<Json<HistoryResult>, String> {
        let p = self.principal(&ext)?;
        let who = p.clone();
        let r = self
            .read(move |c, _| {
                let all = history::history(c, TABLE, a.id)?;
                // Only the versions in a namespace the caller sees; none: not found.
                let versions: Vec<_> = all
                    .into_iter()
                    .filter(|e| e.namespace().is_some_and(|ns| who.sees(ns)))
                    .collect();
                if versions.is_empty() {
                    return Err(no_history(a.id));
                }
                for e in &versions {
                    if let Some(ns) = e.namespace() {
                        who.check_read(ns)?;
                    }
                }
                Ok(HistoryResult {
                    id: a.id,
                    versions,
                    current_version: history::version(c, TABLE)?,
                })
            })
            .await;
        Ok(Json(self.logged(&p, "memory_history", r)?))
    }

    /// `memory_snapshot`.
    #[tool(
        name = "memory_snapshot",
        description = "Name the current state of the memories (action create, with a name \
        such as \"before-cleanup\"), list the named states (action list), or drop a name \
        (action drop). A snapshot costs nothing to take: it names the current version, \
        which memory_diff, memory_restore and memory_branch then accept by name. Take one \
        before a risky cleanup.",
        annotations(
            title = "Snapshots of the memories",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn memory_snapshot(
        &self,
        ext: Extensions,
        Parameters(Args(a)): Parameters<Args<SnapshotArgs>>,
    ) -> Result<Json<SnapshotResult>, String> {
        let p = self.principal(&ext)?;
        let r = match a.action {
            SnapshotAction::List => {
                self.read(|c, _| {
                    Ok(SnapshotResult {
                        action: "list".into(),
                        name: None,
                        version: None,
                        snapshots: Some(history::snapshots(c, TABLE)?),
                        current_version: history::version(c, TABLE)?,
                    })
                })
                .await
            }
            action => {
                // Create and drop: a name, a permission (drop needs admin), one write.
                let create = matches!(action, SnapshotAction::Create);
                let verb = if create { "create" } else { "drop" };
                let allowed = snapshot_name(a.name, verb).and_then(|n| {
                    let checked = if create {
                        p.check_writes_any("create a snapshot")
                    } else {
                        p.check_admin("drop a snapshot")
                    };
                    checked.map(|()| n)
                });
                match allowed {
                    Ok(name) => {
                        self.write(move |c| {
                            let version = if create {
                                history::snapshot_create(c, TABLE, &name)?
                            } else {
                                history::snapshot_drop(c, TABLE, &name)?
                            };
                            Ok(SnapshotResult {
                                action: verb.into(),
                                name: Some(name),
                                version: Some(version),
                                snapshots: None,
                                current_version: history::version(c, TABLE)?,
                            })
                        })
                        .await
                    }
                    Err(e) => Err(e),
                }
            }
        };
        Ok(Json(self.logged(&p, "memory_snapshot", r)?))
    }

    /// `memory_diff`.
    #[tool(
        name = "memory_diff",
        description = "What changed in the memories between two versions (snapshot names \
        or version numbers; to defaults to now): one row per memory that differs, with \
        change added, removed or changed and the memory before and after. At most limit \
        rows (default 100), by id; truncated says when there were more.",
        annotations(
            title = "Compare two versions",
            read_only_hint = true,
            open_world_hint = false
        )
    )]
    async fn memory_diff(
        &self,
        ext: Extensions,
        Parameters(Args(a)): Parameters<Args<DiffArgs>>,
    ) -> Result<Json<DiffResult>, String> {
        let p = self.principal(&ext)?;
        let who = p.clone();
        let r = self
            .read(move |c, _| {
                if !(1..=1000).contains(&a.limit) {
                    return Err(format!("limit must be from 1 to 1000 (got {})", a.limit));
                }
                let mut rows = history::diff(c, TABLE, &a.from, a.to.as_ref())?;
                // Only memories whose every side is in a namespace the caller reads.
                if !who.reads_all() {
                    rows.retain(|r| r.namespaces().all(|ns| who.read.allows(ns)));
                }
                let total = i64::try_from(rows.len()).unwrap_or(i64::MAX);
                let limit = usize::try_from(a.limit).unwrap_or(usize::MAX);
                let truncated = rows.len() > limit;
                rows.truncate(limit);
                Ok(DiffResult {
                    from: a.from,
                    to: a.to,
                    rows,
                    total,
                    truncated,
                    current_version: history::version(c, TABLE)?,
                })
            })
            .await;
        Ok(Json(self.logged(&p, "memory_diff", r)?))
    }

    /// `memory_restore`.
    #[tool(
        name = "memory_restore",
        description = "Bring every memory back to how it was at a snapshot or version, in \
        one transaction: memories added since are deleted, deleted ones come back, changed \
        ones are reverted. The restore is itself recorded, so it can be undone by restoring \
        previous_version. Needs an admin token over HTTP. Check with memory_diff first.",
        annotations(
            title = "Restore a version",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn memory_restore(
        &self,
        ext: Extensions,
        Parameters(Args(a)): Parameters<Args<RestoreArgs>>,
    ) -> Result<Json<RestoreResult>, String> {
        let p = self.principal(&ext)?;
        let r = match p.check_admin("restore the memories") {
            Ok(()) => self.write(move |c| history::restore(c, TABLE, &a.to)).await,
            Err(e) => Err(e),
        };
        Ok(Json(self.logged(&p, "memory_restore", r)?))
    }

    /// `memory_branch`.
    #[tool(
        name = "memory_branch",
        description = "Fork the memories into a branch (a separate table named name) at a \
        snapshot or version (default: now), to try changes apart from the main memories; \
        memory_merge brings the branch's changes back. Needs an admin token over HTTP.",
        annotations(
            title = "Branch the memories",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn memory_branch(
        &self,
        ext: Extensions,
        Parameters(Args(a)): Parameters<Args<BranchArgs>>,
    ) -> Result<Json<BranchResult>, String> {
        let p = self.principal(&ext)?;
        let r = if a.name.trim().is_empty() {
            Err("name must be a non-empty text (the branch's table name)".to_string())
        } else {
            match p.check_admin("create a branch") {
                Ok(()) => {
                    self.write(move |c| {
                        let fork_version = history::branch(c, TABLE, &a.name, a.at.as_ref())?;
                        Ok(BranchResult {
                            name: a.name,
                            base: TABLE.to_string(),
                            fork_version,
                        })
                    })
                    .await
                }
                Err(e) => Err(e),
            }
        };
        Ok(Json(self.logged(&p, "memory_branch", r)?))
    }

    /// `memory_merge`.
    #[tool(
        name = "memory_merge",
        description = "Merge a branch (from memory_branch) back into the memories: its \
        changes since the fork are applied. A memory changed on both sides is a conflict: \
        policy fail (default) merges nothing and lists the conflicting ids, ours keeps the \
        memories' version, theirs takes the branch's. Needs an admin token over HTTP.",
        annotations(
            title = "Merge a branch",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn memory_merge(
        &self,
        ext: Extensions,
        Parameters(Args(a)): Parameters<Args<MergeArgs>>,
    ) -> Result<Json<MergeResult>, String> {
        let p = self.principal(&ext)?;
        let r = if a.branch.trim().is_empty() {
            Err("branch must be a non-empty text (the branch's name)".to_string())
        } else {
            match p.check_admin("merge a branch") {
                Ok(()) => {
                    self.write(move |c| {
                        history::merge(c, &a.branch, TABLE, a.policy.map(|p| p.as_str()))
                    })
                    .await
                }
                Err(e) => Err(e),
            }
        };
        Ok(Json(self.logged(&p, "memory_merge", r)?))
    }
}

#[tool_handler]
impl ServerHandler for MemoryServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("subcog", env!("CARGO_PKG_VERSION")))
            .with_protocol_version(MAX_PROTOCOL)
            .with_instructions(INSTRUCTIONS)
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(ProtocolVersion::known_up_to(&MAX_PROTOCOL))
    }

    async fn discover(
        &self,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::DiscoverResult, ErrorData> {
        Err(ErrorData::method_not_found::<
            rmcp::model::DiscoverRequestMethod,
        >())
    }
}
