//! The stdio transport wrapper that keeps clients of the handshake-free protocol revision
//! on `initialize`.

use rmcp::RoleServer;
use rmcp::model::{ClientRequest, ErrorCode, ErrorData, JsonRpcMessage, ServerJsonRpcMessage};
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;

/// Methods of the protocol that rmcp parses into their own request types; one that arrives
/// as a custom request had params rmcp could not read.
const KNOWN_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/call",
    "tools/list",
    "prompts/get",
    "prompts/list",
    "resources/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "resources/templates/list",
    "completion/complete",
    "logging/setLevel",
];

/// The stdio transport, with the answer a handshake-era server gives to methods it does
/// not know, whatever state the session is in.
///
/// rmcp 3.9 also speaks the handshake-free 2026-07-28 revision: before `initialize` it
/// treats any other request as an inline-versioned one and answers a request without the
/// new `_meta` fields with -32602 (and `server/discover` at 2026-07-28 with -32022). This
/// server serves 2025-11-25 and older only, so `server/discover` (at any time) and unknown
/// methods (before `initialize`; after it rmcp itself answers -32601) get JSON-RPC -32601
/// "Method not found", on which clients fall back to `initialize`. A known method whose
/// params rmcp could not read (it then sees a custom request) gets -32602 "Invalid params"
/// instead of rmcp's "Method not found". Before `initialize`, a
/// notification (e.g. an early `notifications/initialized`) or a response is dropped with a
/// debug log: rmcp ends the session on any non-request message there. Every other message
/// is passed to rmcp untouched; the messages are rmcp's own typed values.
pub(crate) struct HandshakeOnly<T> {
    inner: T,
    initialized: bool,
}

impl<T> HandshakeOnly<T> {
    /// Wraps a transport.
    pub(crate) fn new(inner: T) -> Self {
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
            if !self.initialized && !matches!(msg, JsonRpcMessage::Request(_)) {
                tracing::debug!("dropping a non-request message received before initialize");
                continue;
            }
            if let JsonRpcMessage::Request(req) = &msg {
                let method = req.request.method().to_string();
                let bad_params = matches!(req.request, ClientRequest::CustomRequest(_))
                    && KNOWN_METHODS.contains(&method.as_str());
                if bad_params || self.refuses(&req.request) {
                    let error = if bad_params {
                        // rmcp could not read the params of a method it knows (e.g.
                        // `tools/call` with `arguments` that are not an object) and took it
                        // for an unknown method: JSON-RPC says -32602 "Invalid params".
                        tracing::debug!(%method, "invalid params");
                        ErrorData::new(
                            ErrorCode::INVALID_PARAMS,
                            format!(
                                "Invalid params for {method} (e.g. tools/call needs \
                                 {{\"name\": string, \"arguments\": object}})"
                            ),
                            None,
                        )
                    } else {
                        tracing::debug!(%method, "method not found");
                        ErrorData::new(
                            ErrorCode::METHOD_NOT_FOUND,
                            format!("Method not found: {method}"),
                            None,
                        )
                    };
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
