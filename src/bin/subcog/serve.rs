//! `subcog serve`: the memory tools over MCP's streamable HTTP transport, for several
//! clients on several machines.
//!
//! The HTTP protocol is rmcp's [`StreamableHttpService`] (stateless: every POST is one
//! JSON-RPC exchange answered with `application/json`), mounted at `/mcp` in an axum
//! router next to a plain `GET /health`. In front of `/mcp` sits one layer
//! ([`authenticate`]): it resolves `Authorization: Bearer <token>` against the tokens
//! file (401 otherwise), reads the body up to the body limit (413 above it, after reading
//! on a bounded amount so the client sees the reply; rmcp checks the limit again), bounds
//! each request's time (408), attaches the token's [`Principal`] to the request, and logs one line per
//! request with the token's name. rmcp hands the request's parts to the tools, which
//! check the principal's namespaces ([`crate::mcp`]). The tokens file is read again on
//! SIGHUP; SIGTERM and SIGINT stop the server after the requests in flight.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::signal::unix::{SignalKind, signal};

use crate::access::Principal;
use crate::db::{self, Prepare};
use crate::mcp::{MemoryServer, Pool, preload_model};
use crate::tokens::{self, Refusal, TokenSet};

/// The settings of `subcog serve`.
#[derive(Debug)]
pub(crate) struct Options {
    /// Address to listen on, `IP:PORT`.
    pub(crate) listen: String,
    /// Memory database (default as for `subcog mcp`).
    pub(crate) db: Option<PathBuf>,
    /// Tokens file; without one, only a loopback address is served, to the local user.
    pub(crate) tokens: Option<PathBuf>,
    /// Largest request body, bytes.
    pub(crate) max_body: usize,
    /// Reader connections (concurrent reads).
    pub(crate) readers: usize,
    /// Longest time one request may take, reading its body included.
    pub(crate) request_timeout: Duration,
    /// Extra host names accepted in the `Host` header (besides the loopback names and
    /// the listening address).
    pub(crate) allowed_hosts: Vec<String>,
}

/// What the request layer needs.
struct Gate {
    /// The tokens, when a tokens file is used (replaced whole on SIGHUP).
    tokens: Option<RwLock<Arc<TokenSet>>>,
    max_body: usize,
    request_timeout: Duration,
}

impl Gate {
    /// The principal of a request's `Authorization` header.
    fn principal(&self, headers: &HeaderMap) -> Result<Principal, Refusal> {
        let Some(tokens) = &self.tokens else {
            return Ok(Principal::local());
        };
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or(Refusal::Missing)?;
        let set = Arc::clone(&tokens.read().unwrap_or_else(|p| p.into_inner()));
        set.authenticate(token, subcog::row::now_ms())
    }
}

/// The layer in front of `/mcp`: authentication, the body limit, the time limit, the
/// principal for the tools, and the access log (token names only).
async fn authenticate(State(gate): State<Arc<Gate>>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let principal = match gate.principal(req.headers()) {
        Ok(p) => p,
        Err(r) => {
            tracing::warn!(target: "subcog::access", %method, status = 401, "refused: {}", r.message());
            // Read the body away first (bounded), as for a 413: see `drain_limit`.
            let drained = tokio::time::timeout(gate.request_timeout, async {
                let _ = read_body(req, (0, drain_limit(gate.max_body))).await;
            });
            let _ = drained.await;
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                r.message(),
            )
                .into_response();
        }
    };
    let name = principal.name.clone();
    req.extensions_mut().insert(principal);
    let limits = (gate.max_body, drain_limit(gate.max_body));
    let response = match tokio::time::timeout(gate.request_timeout, async {
        match read_body(req, limits).await {
            Ok(req) => next.run(req).await,
            Err(refusal) => refusal.into_response(&name, &method, gate.max_body),
        }
    })
    .await
    {
        Ok(r) => r,
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "408 Request Timeout: the request took more than {} s (subcog serve \
                 --request-timeout)",
                gate.request_timeout.as_secs()
            ),
        )
            .into_response(),
    };
    tracing::info!(
        target: "subcog::access",
        token = %name,
        %method,
        status = response.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}

/// Bytes of an over-limit body read and thrown away before the 413, beyond the limit
/// itself: four times the limit, between 1 MiB and 64 MiB.
///
/// Replying while the client is still sending and then closing makes the kernel reset the
/// connection over the unread bytes, and a reset can destroy the 413 before the client reads
/// it ("server disconnected without a response"). Reading the rest of a moderately
/// oversized body (in constant memory, within `--request-timeout`) lets the client finish
/// and see the reply; a body larger than this still gets the 413 and a closed connection.
fn drain_limit(max_body: usize) -> u64 {
    (max_body as u64).saturating_mul(4).clamp(1 << 20, 64 << 20)
}

/// Why a request's body was not handed on.
enum BodyRefusal {
    /// More than the limit: the declared `Content-Length`, or the bytes read so far.
    TooLarge { bytes: u64, declared: bool },
    /// The client's body ended in an error (a broken chunked encoding, a reset).
    Unreadable(String),
}

impl BodyRefusal {
    fn into_response(self, name: &str, method: &axum::http::Method, max_body: usize) -> Response {
        match self {
            BodyRefusal::TooLarge { bytes, declared } => {
                tracing::warn!(target: "subcog::access", token = %name, %method, status = 413, bytes, "refused: body too large");
                let has = if declared {
                    format!("has {bytes} bytes")
                } else {
                    format!("has more than {max_body} bytes")
                };
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "413 Payload Too Large: the request body {has}; this server takes at \
                         most {max_body} (subcog serve --max-body)"
                    ),
                )
                    .into_response()
            }
            BodyRefusal::Unreadable(e) => {
                tracing::warn!(target: "subcog::access", token = %name, %method, status = 400, "refused: unreadable body");
                (
                    StatusCode::BAD_REQUEST,
                    format!("400 Bad Request: the request body could not be read: {e}"),
                )
                    .into_response()
            }
        }
    }
}

/// Reads a request's body into memory, at most `max_body` bytes (from the
/// `(max_body, drain)` pair), and gives the request back with it.
///
/// A body over the limit (declared by `Content-Length` or found while reading a chunked one)
/// is read on and discarded up to `drain` more bytes, so that the client can finish sending
/// and read the 413 (see [`drain_limit`]); memory stays bounded by `max_body` either way.
///
/// # Errors
/// [`BodyRefusal::TooLarge`] over the limit, [`BodyRefusal::Unreadable`] when the body
/// itself fails.
async fn read_body(req: Request, (max_body, drain): (usize, u64)) -> Result<Request, BodyRefusal> {
    use axum::body::{Body, HttpBody};
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let (parts, mut body) = req.into_parts();
    let limit = max_body as u64;
    let mut kept: Vec<u8> = Vec::new();
    let mut seen: u64 = 0;
    let over_from_start = declared.is_some_and(|n| n > limit);
    if over_from_start && declared.is_some_and(|n| n > limit.saturating_add(drain)) {
        // Too large to wait for: refuse now (the connection is closed after the reply).
        return Err(BodyRefusal::TooLarge {
            bytes: declared.unwrap_or(limit),
            declared: true,
        });
    }
    loop {
        let frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await;
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|e| BodyRefusal::Unreadable(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen = seen.saturating_add(data.len() as u64);
        if seen > limit.saturating_add(drain) {
            break;
        }
        if !over_from_start && seen <= limit {
            kept.extend_from_slice(&data);
        }
    }
    if over_from_start || seen > limit {
        return Err(BodyRefusal::TooLarge {
            bytes: declared.unwrap_or(seen),
            declared: declared.is_some(),
        });
    }
    Ok(Request::from_parts(parts, Body::from(kept)))
}

/// `GET /health`: the server is up (no token needed, nothing about the data).
async fn health() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!(
            "{{\"status\":\"ok\",\"version\":\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        ),
    )
}

/// Runs `subcog serve` until SIGTERM or SIGINT.
///
/// # Errors
/// A non-loopback address without a tokens file, a bad address, tokens file or database,
/// or the address cannot be bound.
pub(crate) fn run(o: Options) -> Result<(), String> {
    let addr: SocketAddr = o.listen.parse().map_err(|e| {
        format!(
            "--listen {:?}: {e} (give IP:PORT, e.g. 127.0.0.1:8420)",
            o.listen
        )
    })?;
    if o.tokens.is_none() && !addr.ip().is_loopback() {
        return Err(format!(
            "refusing to listen on {addr} without --tokens: on a non-loopback address anyone \
             who can reach it would read and change every memory. Create tokens with \
             `subcog token add NAME --read NS --write NS --tokens FILE` and pass --tokens FILE \
             (or listen on 127.0.0.1)"
        ));
    }
    if o.max_body == 0 {
        return Err("--max-body must be at least 1 byte".into());
    }
    let tokens = match &o.tokens {
        Some(p) => Some(tokens::load(p)?),
        None => None,
    };
    let path = db::resolve(o.db.clone());
    let writer = db::open(&path, Prepare::Memories)?;
    let readers = (0..o.readers)
        .map(|_| db::open(&path, Prepare::Memories))
        .collect::<Result<Vec<_>, _>>()?;
    let pool = Arc::new(Pool::new(writer, readers));
    let server = MemoryServer::authenticated(pool, path.display().to_string());
    let loader = preload_model()
        .map_err(|e| tracing::warn!("cannot start the model-loading thread: {e}"))
        .ok();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let served = rt.block_on(serve_http(o, addr, tokens, server));
    if let Some(h) = loader
        && h.join().is_err()
    {
        tracing::warn!("the model-loading thread panicked");
    }
    served
}

/// Binds, serves, reloads the tokens on SIGHUP, and stops on SIGTERM or SIGINT.
async fn serve_http(
    o: Options,
    addr: SocketAddr,
    tokens: Option<tokens::TokenFile>,
    server: MemoryServer,
) -> Result<(), String> {
    let sig = |kind: SignalKind| {
        signal(kind).map_err(|e| format!("cannot install a signal handler: {e}"))
    };
    let mut hup = sig(SignalKind::hangup())?;
    let mut term = sig(SignalKind::terminate())?;
    let mut int = sig(SignalKind::interrupt())?;
    let n_tokens = tokens.as_ref().map(|t| t.tokens.len());
    let gate = Arc::new(Gate {
        tokens: tokens.map(|t| RwLock::new(Arc::new(TokenSet::new(t)))),
        max_body: o.max_body,
        request_timeout: o.request_timeout,
    });
    let mut hosts: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    if !addr.ip().is_loopback() && !addr.ip().is_unspecified() {
        hosts.push(addr.ip().to_string());
    }
    hosts.extend(o.allowed_hosts.iter().cloned());
    let mut config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_max_request_body_bytes(o.max_body)
        .with_allowed_hosts(hosts);
    // Cancelled at shutdown: rmcp then ends the exchanges in flight.
    let ct = config.cancellation_token.clone();
    if addr.ip().is_unspecified() && o.allowed_hosts.is_empty() {
        // 0.0.0.0 / [::]: any Host the machine is reached by; the tokens are the gate.
        config = config.disable_allowed_hosts();
    }
    let mcp = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(NeverSessionManager::default()),
        config,
    );
    let app = Router::new()
        .route_service("/mcp", mcp)
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&gate),
            authenticate,
        ))
        .route("/health", get(health));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    match n_tokens {
        Some(n) => eprintln!(
            "subcog: serving MCP on http://{local}/mcp ({n} tokens from {}; health: /health)",
            o.tokens
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        ),
        None => eprintln!(
            "subcog: serving MCP on http://{local}/mcp without tokens: every request has the \
             local user's full access (loopback only; health: /health)"
        ),
    }
    // SIGHUP: read the tokens file again; a file that does not load keeps the old tokens.
    let reload_gate = Arc::clone(&gate);
    let tokens_path = o.tokens.clone();
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let (Some(lock), Some(path)) = (&reload_gate.tokens, &tokens_path) else {
                tracing::warn!("SIGHUP: no tokens file to reload");
                continue;
            };
            match tokens::load(path) {
                Ok(file) => {
                    let set = Arc::new(TokenSet::new(file));
                    let n = set.len();
                    *lock.write().unwrap_or_else(|p| p.into_inner()) = set;
                    eprintln!(
                        "subcog: SIGHUP: {n} tokens reloaded from {}",
                        path.display()
                    );
                }
                Err(e) => eprintln!("subcog: SIGHUP: kept the previous tokens: {e}"),
            }
        }
    });
    let stop = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        eprintln!("subcog: stopping");
    };
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
    let graceful = axum::serve(listener, app).with_graceful_shutdown(async move {
        stop.await;
        ct.cancel();
        let _ = stopped_tx.send(());
    });
    // After the signal, the requests in flight get a few seconds to finish.
    let deadline = async move {
        if stopped_rx.await.is_ok() {
            tokio::time::sleep(Duration::from_secs(5)).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        r = graceful => r.map_err(|e| format!("the HTTP server failed: {e}")),
        () = deadline => Ok(()),
    }
}
