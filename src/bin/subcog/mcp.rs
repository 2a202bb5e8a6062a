//! `subcog mcp`: the MCP server over stdio (rmcp), with the memory tools.
//!
//! Each tool is a thin wrapper over [`crate::ops`], i.e. SQL against the `memories` table.
//! Bad arguments come back as tool results with `isError: true` (rmcp turns argument
//! deserialisation errors into such results; the checks in `ops` do the rest), so a
//! model can correct the call and the server keeps serving.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::model::{
    ClientRequest, ErrorCode, ErrorData, Implementation, JsonRpcMessage, ProtocolVersion,
    ServerCapabilities, ServerConfig, ServerJsonRpcMessage,
};
use rmcp::service::{RequestContext, RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::{IntoTransport, Transport};
use rmcp::{RoleServer, ServerHandler, ServiceExt, tool, tool_handler, tool_router};
use rusqlite::Connection;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::db::{self, Prepare};
use crate::ops::{self, Memory, Mode, Scored, Stats};

/// The newest protocol revision served. Revisions up to and including this one start with
/// `initialize`; `server/discover` (the newer, handshake-free revision) is answered with
/// -32601 so that clients fall back to `initialize`.
pub const MAX_PROTOCOL: ProtocolVersion = ProtocolVersion::V_2025_11_25;

const INSTRUCTIONS: &str = "Long-term memory that persists across conversations, stored in a \
local SQLite database. Search it (memory_search) before answering questions about the user, \
their projects or earlier decisions; store (memory_store) durable facts, preferences and \
decisions as short self-contained sentences; update or delete memories that turn out wrong.";

/// The MCP server: one SQLite connection to the memory database, used by one tool call
/// at a time (calls run on Tokio's blocking pool).
#[derive(Clone)]
pub struct MemoryServer {
    conn: Arc<Mutex<Connection>>,
    path: Arc<str>,
}

/// Tool arguments of type `T` whose deserialisation errors name the offending field
/// (`tags: invalid type: string "x", expected a sequence`), so that a model can fix the
/// call. The JSON schema is `T`'s.
#[derive(Debug)]
pub struct Args<T>(pub T);

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for Args<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        serde_path_to_error::deserialize(value)
            .map(Args)
            .map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                if path == "." {
                    serde::de::Error::custom(inner)
                } else {
                    serde::de::Error::custom(format!("{path}: {inner}"))
                }
            })
    }
}

impl<T: JsonSchema> JsonSchema for Args<T> {
    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }
}

/// Arguments of `memory_store`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreArgs {
    /// The text to remember: one self-contained fact, preference, decision or event, written
    /// so that it makes sense without the conversation (e.g. "The user prefers tabs, width 4,
    /// in Go projects").
    pub content: String,
    /// Namespace to file it under, e.g. "user" or "project:shop". Default "default".
    #[serde(default)]
    #[schemars(with = "String")]
    pub namespace: Option<String>,
    /// Short tags, e.g. ["preference", "style"].
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub tags: Option<Vec<String>>,
    /// Any JSON object with extra structured data.
    #[serde(default)]
    #[schemars(with = "Map<String, Value>")]
    pub metadata: Option<Map<String, Value>>,
    /// How important it is, from 0 (trivia) to 1 (critical). Default 0.5.
    #[serde(default)]
    #[schemars(with = "f64", range(min = 0.0, max = 1.0))]
    pub importance: Option<f64>,
    /// Where it came from, e.g. a file, URL or "conversation".
    #[serde(default)]
    #[schemars(with = "String")]
    pub source: Option<String>,
    /// Forget it after this long: seconds, or a duration such as "12h", "7d", "2w".
    /// Default: never. Expired memories no longer come back from searches.
    #[serde(default)]
    #[schemars(with = "String")]
    pub ttl: Option<Value>,
}

/// Result of `memory_store`: the table's dedup outcome.
pub type StoreResult = ops::Stored;

fn default_k() -> u32 {
    5
}

/// Arguments of `memory_search`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchArgs {
    /// What to look for, in natural language (a question or a few keywords).
    pub query: String,
    /// How many memories to return, 1 to 100. Default 5.
    #[serde(default = "default_k")]
    #[schemars(range(min = 1, max = 100))]
    pub k: u32,
    /// Only search this namespace.
    #[serde(default)]
    #[schemars(with = "String")]
    pub namespace: Option<String>,
    /// "hybrid" (default: keywords and meaning combined), "vector" (meaning only) or
    /// "keyword" (exact words only).
    #[serde(default)]
    pub mode: Mode,
    /// How much newer memories should be preferred, from 0 (not at all, default) to 1.
    #[serde(default)]
    #[schemars(with = "f64", range(min = 0.0, max = 1.0))]
    pub recency: Option<f64>,
    /// Half-life of the recency preference, e.g. "1d", "7d" (default "30d").
    #[serde(default)]
    #[schemars(with = "String")]
    pub recency_half_life: Option<String>,
    /// How much more important memories should be preferred, from 0 (default) to 1.
    #[serde(default)]
    #[schemars(with = "f64", range(min = 0.0, max = 1.0))]
    pub importance: Option<f64>,
}

/// Result of `memory_search`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SearchResult {
    /// Matching memories, most relevant first.
    pub results: Vec<Scored>,
}

/// Arguments of `memory_get` and `memory_delete`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdArgs {
    /// Id of the memory (from memory_store, memory_search or memory_list).
    pub id: i64,
}

/// Arguments of `memory_update`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateArgs {
    /// Id of the memory to change.
    pub id: i64,
    /// New text (replaces the old text).
    #[serde(default)]
    #[schemars(with = "String")]
    pub content: Option<String>,
    /// New tags (replace the old tags).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub tags: Option<Vec<String>>,
    /// New metadata object (replaces the old one).
    #[serde(default)]
    #[schemars(with = "Map<String, Value>")]
    pub metadata: Option<Map<String, Value>>,
    /// New importance, from 0 to 1.
    #[serde(default)]
    #[schemars(with = "f64", range(min = 0.0, max = 1.0))]
    pub importance: Option<f64>,
}

/// Result of `memory_delete`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DeleteResult {
    /// Id of the deleted memory.
    pub id: i64,
    /// Always true (a failed delete is an error result).
    pub deleted: bool,
}

fn default_limit() -> u32 {
    20
}

/// Arguments of `memory_list`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListArgs {
    /// Only list this namespace.
    #[serde(default)]
    #[schemars(with = "String")]
    pub namespace: Option<String>,
    /// Page size, 1 to 1000. Default 20.
    #[serde(default = "default_limit")]
    #[schemars(range(min = 1, max = 1000))]
    pub limit: u32,
    /// How many of the newest memories to skip (for paging). Default 0.
    #[serde(default)]
    pub offset: u64,
}

/// Result of `memory_list`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ListResult {
    /// Memories, newest first.
    pub memories: Vec<Memory>,
}

impl MemoryServer {
    /// Wraps an open connection to the memory database at `path`.
    pub fn new(conn: Connection, path: String) -> Self {
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
        one self-contained sentence. Secrets (API keys, tokens, passwords) are redacted. The \
        result gives the memory's id and an outcome: inserted (a new memory); duplicate (the \
        same text already exists as memory id: it is updated, not repeated); superseded (a new \
        memory that replaces a nearly identical older one, e.g. a corrected fact: the older \
        memory, given as supersedes with the similarity, no longer comes back from searches).",
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
    async fn memory_stats(&self) -> Result<Json<Stats>, String> {
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

/// The stdio transport, with the answer a handshake-era server gives to methods it does
/// not know, whatever state the session is in.
///
/// rmcp 3.9 also speaks the handshake-free 2026-07-28 revision: before `initialize` it
/// treats any other request as an inline-versioned one and answers a request without the
/// new `_meta` fields with -32602 (and `server/discover` at 2026-07-28 with -32022). This
/// server serves 2025-11-25 and older only, so `server/discover` (at any time) and unknown
/// methods (before `initialize`; after it rmcp itself answers -32601) get JSON-RPC -32601
/// "Method not found", on which clients fall back to `initialize`. Every other message is
/// passed to rmcp untouched; the messages are rmcp's own typed values.
pub struct HandshakeOnly<T> {
    inner: T,
    initialized: bool,
}

impl<T> HandshakeOnly<T> {
    /// Wraps a transport.
    pub fn new(inner: T) -> Self {
        HandshakeOnly {
            inner,
            initialized: false,
        }
    }

    /// Whether `request` gets -32601 here instead of going to rmcp.
    fn refuses(&self, request: &ClientRequest) -> bool {
        match request {
            ClientRequest::DiscoverRequest(_) => true,
            ClientRequest::CustomRequest(_) => !self.initialized,
            _ => false,
        }
    }
}

impl<T: Transport<RoleServer>> Transport<RoleServer> for HandshakeOnly<T> {
    type Error = T::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleServer>> {
        loop {
            let msg = self.inner.receive().await?;
            if let JsonRpcMessage::Request(req) = &msg {
                if self.refuses(&req.request) {
                    let method = req.request.method().to_string();
                    tracing::debug!(%method, "method not found");
                    let error = ErrorData::new(
                        ErrorCode::METHOD_NOT_FOUND,
                        format!("Method not found: {method}"),
                        None,
                    );
                    let reply = ServerJsonRpcMessage::error(error, Some(req.id.clone()));
                    // rmcp's service loop polls `receive` inside a select and drops it when
                    // another event wins; awaiting the send here could lose the reply. The
                    // send future is 'static: run it on its own task, with no await between
                    // taking the request and handing the reply off.
                    let send = self.inner.send(reply);
                    tokio::spawn(async move {
                        if send.await.is_err() {
                            tracing::warn!("could not send a method-not-found reply");
                        }
                    });
                    continue;
                }
                if matches!(req.request, ClientRequest::InitializeRequest(_)) {
                    self.initialized = true;
                }
            }
            return Some(msg);
        }
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}

/// Starts loading the embedding model on a background thread, through the process-wide
/// loader [`subcog::embedder::get`], and logs one line to stderr when it is done: `subcog:
/// embedding model loaded in N ms`, or `subcog: embedding model not loaded (...)` with the
/// reason. A tool call that needs the model meanwhile waits inside `get` for this same load
/// (it holds the loader's lock) instead of loading a second copy; when the model is missing
/// `get` checks the files again on every call, so the tools that need no model keep working
/// and the others return the same error, naming the missing file.
///
/// The line is printed whatever `RUST_LOG` says: it is the one thing a user needs to see to
/// know why the first store may wait (the load took 0.4-0.55 s on the 2-core machine the
/// project is developed on, up to 1 s when other processes competed for the cores;
/// measured with `tests/mcp/first_store_latency.py`).
///
/// # Errors
/// The thread cannot be spawned (the model then loads on first use, as without this).
fn preload_model() -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("subcog-model-load".into())
        .spawn(|| {
            let started = std::time::Instant::now();
            match subcog::embedder::get() {
                Ok(_) => eprintln!(
                    "subcog: embedding model loaded in {} ms ({})",
                    started.elapsed().as_millis(),
                    subcog::embedder::MODEL_NAME
                ),
                Err(e) => eprintln!(
                    "subcog: embedding model not loaded ({e}); memory_get, memory_list, \
                     memory_delete, memory_stats and keyword search still work"
                ),
            }
        })
}

/// Serves MCP on stdin/stdout until the client closes the connection, loading the
/// embedding model in the background from the start ([`preload_model`]).
///
/// # Errors
/// The database cannot be opened, or the transport fails.
pub fn serve(db: Option<PathBuf>) -> Result<(), String> {
    let loader = preload_model()
        .map_err(|e| tracing::warn!("cannot start the model-loading thread: {e}"))
        .ok();
    let served = serve_until_closed(db);
    // Wait for a load still under way: exiting while ONNX Runtime initialises on another
    // thread would run its static destructors under it. This only delays the exit of a
    // server closed within the load time.
    if let Some(h) = loader
        && h.join().is_err()
    {
        tracing::warn!("the model-loading thread panicked");
    }
    served
}

/// [`serve`] without the model preload.
fn serve_until_closed(db: Option<PathBuf>) -> Result<(), String> {
    let path = db::resolve(db);
    let conn = db::open(&path, Prepare::Memories)?;
    let server = MemoryServer::new(conn, path.display().to_string());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    rt.block_on(async move {
        tracing::info!(db = %path.display(), "subcog MCP server on stdio");
        let running = server
            .serve(HandshakeOnly::new(
                IntoTransport::<RoleServer, _, _>::into_transport(rmcp::transport::stdio()),
            ))
            .await
            .map_err(|e| format!("MCP handshake failed: {e}"))?;
        running
            .waiting()
            .await
            .map_err(|e| format!("MCP server stopped: {e}"))?;
        Ok(())
    })
}
