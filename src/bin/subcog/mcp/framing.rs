//! Newline-delimited framing of the stdio transport: one JSON-RPC message per line, in
//! and out. rmcp parses and handles the messages (its own types, [`RxJsonRpcMessage`]);
//! this layer only splits stdin into lines, bounds their length and answers the lines
//! rmcp cannot take, which its own stdio transport drops without a reply (rmcp issue 938:
//! unparseable input is ignored) or answers without the `id`:
//!
//! * a line that is not JSON text (`{`, `not json`, truncated JSON, invalid UTF-8): JSON-RPC
//!   -32700 "Parse error";
//! * well-formed JSON that is not a message rmcp accepts (a lone surrogate `"\ud800"` in a
//!   string, nesting deeper than serde_json's 128 levels, a request without `method`, ...):
//!   -32600 "Invalid Request";
//! * a line longer than [`MAX_LINE`]: -32600, and its bytes are dropped as they arrive
//!   (never buffered past the limit).
//!
//! Each reply carries the request's `id` when it can be read (serde_json reads it while
//! skipping the rest of the line without decoding it), else `"id": null` as JSON-RPC 2.0
//! says; an invalid line without `id` but with a `method` is a notification and gets no
//! reply. The server keeps serving after each.

use std::sync::Arc;

use rmcp::RoleServer;
use rmcp::model::{ErrorCode, RequestId};
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::Mutex;

/// Longest accepted line (one JSON-RPC message), in bytes: 64 MiB. The largest valid
/// memory (8 MiB of content) sent with `\u00e9`-style escapes is ~25 MB; rmcp's own default
/// (16 MiB) refused a 6 MiB memory sent that way (18.9 MB).
pub(crate) const MAX_LINE: usize = 64 << 20;

/// UTF-8 byte order mark, which RFC 8259 lets a parser ignore (rmcp does too).
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The stdio transport: lines from `R` (bounded by [`MAX_LINE`]) parsed into rmcp's
/// messages, and rmcp's messages written to `W` one per line.
pub(crate) struct LineTransport<R, W> {
    read: BufReader<R>,
    /// The line read so far (kept across cancelled `receive` calls).
    line: Vec<u8>,
    /// Dropping the rest of an oversized line until its newline.
    discarding: bool,
    max_line: usize,
    write: Arc<Mutex<W>>,
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> LineTransport<R, W> {
    /// Reads from `read` and writes to `write`, with lines of at most [`MAX_LINE`] bytes.
    pub(crate) fn new(read: R, write: W) -> Self {
        LineTransport {
            read: BufReader::new(read),
            line: Vec::new(),
            discarding: false,
            max_line: MAX_LINE,
            write: Arc::new(Mutex::new(write)),
        }
    }
}

/// One bounded line read.
enum Read {
    /// A whole line is in `line` (without its `\n`).
    Line,
    /// A line went over the limit; its bytes were dropped.
    Oversized,
    /// End of input (a trailing line without `\n` is incomplete and dropped).
    Eof,
}

/// Only the `id` of a line, whatever the rest holds: serde_json skips the other fields
/// without decoding their strings, so invalid UTF-8, lone surrogates or deep nesting
/// elsewhere do not hide the `id`.
#[derive(Deserialize)]
struct IdOnly {
    #[serde(default)]
    id: Option<RequestId>,
    #[serde(default)]
    method: Option<serde::de::IgnoredAny>,
}

/// What to do with a line rmcp could not parse: reply `(code, message, id)`, or nothing
/// (a notification).
fn reject(line: &[u8], e: &serde_json::Error) -> Option<(ErrorCode, String, Option<RequestId>)> {
    // Only an object has an `id` (serde would also read a struct from an array).
    let object = line.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let head: IdOnly = object
        .then(|| serde_json::from_slice(line).ok())
        .flatten()
        .unwrap_or(IdOnly {
            id: None,
            method: None,
        });
    if head.id.is_none() && head.method.is_some() {
        tracing::debug!("ignoring an invalid notification: {e}");
        return None;
    }
    let well_formed = std::str::from_utf8(line).is_ok()
        && serde_json::from_slice::<serde::de::IgnoredAny>(line).is_ok();
    Some(if well_formed {
        (
            ErrorCode::INVALID_REQUEST,
            format!("Invalid Request: {e}"),
            head.id,
        )
    } else {
        let why = match std::str::from_utf8(line) {
            Err(u) => format!("invalid UTF-8 at byte {}", u.valid_up_to()),
            Ok(_) => e.to_string(),
        };
        (
            ErrorCode::PARSE_ERROR,
            format!("Parse error: {why}"),
            head.id,
        )
    })
}

/// A JSON-RPC 2.0 error response line (`"id": null` when `id` is unknown, as JSON-RPC
/// requires; rmcp's own error type omits it).
fn error_line(code: ErrorCode, message: &str, id: Option<&RequestId>) -> Vec<u8> {
    let v = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {"code": code.0, "message": message},
    });
    let mut out = v.to_string().into_bytes();
    out.push(b'\n');
    out
}

/// Writes `bytes` (whole lines) to the shared writer and flushes.
async fn write_all<W: AsyncWrite + Unpin>(w: &Mutex<W>, bytes: &[u8]) -> std::io::Result<()> {
    let mut w = w.lock().await;
    w.write_all(bytes).await?;
    w.flush().await
}

impl<R, W> LineTransport<R, W>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    /// Reads one line into `self.line` without letting it grow past `self.max_line`.
    /// Cancellation-safe: bytes are moved from the reader's buffer to `line` with no await
    /// in between, so a dropped call leaves the partial line for the next one.
    async fn read_line(&mut self) -> std::io::Result<Read> {
        loop {
            let (taken, done) = {
                let buf = self.read.fill_buf().await?;
                if buf.is_empty() {
                    return Ok(Read::Eof);
                }
                let nl = buf.iter().position(|&b| b == b'\n');
                let take = nl.map_or(buf.len(), |i| i + 1);
                if self.discarding {
                    if nl.is_some() {
                        self.discarding = false;
                    }
                    (take, None)
                } else if self.line.len().saturating_add(take) > self.max_line.saturating_add(1) {
                    self.line.clear();
                    self.discarding = nl.is_none();
                    (take, Some(Read::Oversized))
                } else {
                    self.line.extend_from_slice(&buf[..take]);
                    (take, nl.map(|_| Read::Line))
                }
            };
            self.read.consume(taken);
            if let Some(r) = done {
                return Ok(r);
            }
        }
    }

    /// Sends a JSON-RPC error line on a task of its own: `receive` runs inside rmcp's
    /// `select!` and may be dropped at any await, which must not lose the reply.
    fn reply(&self, code: ErrorCode, message: &str, id: Option<&RequestId>) {
        let line = error_line(code, message, id);
        let write = Arc::clone(&self.write);
        tokio::spawn(async move {
            if let Err(e) = write_all(&write, &line).await {
                tracing::warn!("could not send an error reply: {e}");
            }
        });
    }
}

impl<R, W> Transport<RoleServer> for LineTransport<R, W>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let write = Arc::clone(&self.write);
        async move {
            let mut line = serde_json::to_vec(&item)?;
            line.push(b'\n');
            write_all(&write, &line).await
        }
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleServer>> {
        loop {
            match self.read_line().await {
                Ok(Read::Line) => {}
                Ok(Read::Oversized) => {
                    tracing::warn!(max = self.max_line, "dropping a line over the limit");
                    let msg = format!(
                        "Invalid Request: the message is longer than the line limit of {} bytes",
                        self.max_line
                    );
                    self.reply(ErrorCode::INVALID_REQUEST, &msg, None);
                    continue;
                }
                Ok(Read::Eof) => return None,
                Err(e) => {
                    tracing::error!("error reading stdin: {e}");
                    return None;
                }
            }
            let line = std::mem::take(&mut self.line);
            let mut l = line.strip_suffix(b"\n").unwrap_or(&line);
            l = l.strip_suffix(b"\r").unwrap_or(l);
            l = l.strip_prefix(BOM).unwrap_or(l);
            if l.iter().all(u8::is_ascii_whitespace) {
                self.line = line;
                self.line.clear();
                continue;
            }
            let parsed = serde_json::from_slice::<RxJsonRpcMessage<RoleServer>>(l);
            let rejected = parsed.as_ref().err().map(|e| reject(l, e));
            // Keep the buffer's capacity for the next line.
            self.line = line;
            self.line.clear();
            match (parsed, rejected) {
                (Ok(msg), _) => return Some(msg),
                (Err(_), Some(Some((code, message, id)))) => {
                    tracing::debug!(code = code.0, "{message}");
                    self.reply(code, &message, id.as_ref());
                }
                (Err(_), _) => {}
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        let mut w = self.write.lock().await;
        w.flush().await
    }
}
