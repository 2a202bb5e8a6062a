//! `subcog mcp`: the MCP server over stdio (rmcp), with the memory tools.
//!
//! Each tool is a thin wrapper over [`crate::ops`], i.e. SQL against the `memories` table.
//! Bad arguments come back as tool results with `isError: true` (rmcp turns argument
//! deserialisation errors into such results; the checks in `ops` do the rest), so a
//! model can correct the call and the server keeps serving. [`schema`] holds the tools'
//! argument and result types, [`server`] the tools, [`transport`] the stdio transport,
//! [`pool`] the connections the tools run on. `subcog serve` ([`crate::serve`]) serves the
//! same [`MemoryServer`] over HTTP.

mod framing;
mod pool;
mod schema;
mod server;
mod transport;

use std::path::PathBuf;

use rmcp::ServiceExt;
use rmcp::model::ProtocolVersion;

use crate::db::{self, Prepare};
pub(crate) use pool::Pool;
pub(crate) use server::MemoryServer;
use transport::HandshakeOnly;

/// The newest protocol revision served. Revisions up to and including this one start with
/// `initialize`; `server/discover` (the newer, handshake-free revision) is answered with
/// -32601 so that clients fall back to `initialize`.
const MAX_PROTOCOL: ProtocolVersion = ProtocolVersion::V_2025_11_25;

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
pub(crate) fn preload_model() -> std::io::Result<std::thread::JoinHandle<()>> {
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
pub(crate) fn serve(db: Option<PathBuf>) -> Result<(), String> {
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
            .serve(HandshakeOnly::new(framing::LineTransport::new(
                tokio::io::stdin(),
                tokio::io::stdout(),
            )))
            .await
            .map_err(|e| format!("MCP handshake failed: {e}"))?;
        running
            .waiting()
            .await
            .map_err(|e| format!("MCP server stopped: {e}"))?;
        Ok(())
    })
}
