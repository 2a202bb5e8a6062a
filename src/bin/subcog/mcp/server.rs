//! The MCP server's tools: each one is a thin wrapper over [`crate::ops`], i.e. SQL
//! against the `memories` table, run on Tokio's blocking pool.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::model::{ErrorData, Implementation, ProtocolVersion, ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, ServerHandler, tool, tool_handler, tool_router};
use rusqlite::Connection;

use super::MAX_PROTOCOL;
use super::schema::{
    Args, ContextArgs, ContextResult, DeleteResult, IdArgs, LinkArgs, LinkResult, ListArgs,
    ListResult, SearchArgs, SearchResult, StatsArgs, StoreArgs, StoreResult, UpdateArgs,
};
use crate::ops::{self, Memory, Stats};

const INSTRUCTIONS: &str = "Long-term memory that persists across conversations, stored in a \
local SQLite database. Search it (memory_search) before answering questions about the user, \
their projects or earlier decisions; store (memory_store) durable facts, preferences and \
decisions as short self-contained sentences; update or delete memories that turn out wrong.";

/// The MCP server: one SQLite connection to the memory database, used by one tool call
/// at a time (calls run on Tokio's blocking pool).
#[derive(Clone)]
pub(crate) struct MemoryServer {
    conn: Arc<Mutex<Connection>>,
    path: Arc<str>,
}

impl MemoryServer {
    /// Wraps an open connection to the memory database at `path`.
    pub(crate) fn new(conn: Connection, path: String) -> Self {
        MemoryServer {
            conn: Arc::new(Mutex::new(conn)),
            path: path.into(),
        }
    }

    /// Runs `f` with the connection on Tokio's blocking pool.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, &str) -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        let conn = Arc::clone(&self.conn);
        let path = Arc::clone(&self.path);
        tokio::task::spawn_blocking(move || {
            // A panic in an earlier call poisons the lock; the connection itself is fine.
            let guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&guard, &path)
        })
        .await
        .map_err(|e| format!("internal error: the tool call did not complete: {e}"))?
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
        Parameters(Args(a)): Parameters<Args<StoreArgs>>,
    ) -> Result<Json<StoreResult>, String> {
        let m = ops::NewMemory {
            content: a.content,
            namespace: a.namespace,
            tags: a.tags,
            metadata: a.metadata,
            importance: a.importance,
            source: a.source,
            ttl: a.ttl,
        };
        Ok(Json(self.run(move |c, _| ops::store(c, &m)).await?))
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
        Parameters(Args(a)): Parameters<Args<SearchArgs>>,
    ) -> Result<Json<SearchResult>, String> {
        let results = self
            .run(move |c, _| {
                let ranking = ops::Ranking {
                    recency_weight: a.recency,
                    half_life: a.recency_half_life,
                    importance_weight: a.importance,
                };
                ops::search(c, &a.query, a.k, a.namespace.as_deref(), a.mode, &ranking)
            })
            .await?;
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
        Parameters(Args(a)): Parameters<Args<ContextArgs>>,
    ) -> Result<Json<ContextResult>, String> {
        Ok(Json(
            self.run(move |c, _| {
                ops::context(
                    c,
                    &a.query,
                    a.budget,
                    a.namespace.as_deref(),
                    Some(a.format.as_str()),
                )
            })
            .await?,
        ))
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
        Parameters(Args(a)): Parameters<Args<LinkArgs>>,
    ) -> Result<Json<LinkResult>, String> {
        Ok(Json(
            self.run(move |c, _| ops::link(c, a.src, a.dst, &a.kind, a.weight))
                .await?,
        ))
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
        Parameters(Args(a)): Parameters<Args<IdArgs>>,
    ) -> Result<Json<Memory>, String> {
        Ok(Json(self.run(move |c, _| ops::get(c, a.id)).await?))
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
        Parameters(Args(a)): Parameters<Args<UpdateArgs>>,
    ) -> Result<Json<Memory>, String> {
        let changes = ops::Changes {
            content: a.content,
            tags: a.tags,
            metadata: a.metadata,
            importance: a.importance,
        };
        Ok(Json(
            self.run(move |c, _| ops::update(c, a.id, &changes)).await?,
        ))
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
        Parameters(Args(a)): Parameters<Args<IdArgs>>,
    ) -> Result<Json<DeleteResult>, String> {
        let id = a.id;
        self.run(move |c, _| ops::delete(c, id)).await?;
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
        Parameters(Args(a)): Parameters<Args<ListArgs>>,
    ) -> Result<Json<ListResult>, String> {
        let memories = self
            .run(move |c, _| ops::list(c, a.namespace.as_deref(), a.limit, a.offset))
            .await?;
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
        Parameters(Args(StatsArgs {})): Parameters<Args<StatsArgs>>,
    ) -> Result<Json<Stats>, String> {
        Ok(Json(self.run(ops::stats).await?))
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
