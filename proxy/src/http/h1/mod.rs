//! The HTTP/1 path: one task per downstream connection reads each request head, lets the
//! upstream rewrite it, writes it out again and moves the body and the response as the bytes
//! they are. Only heads are parsed (httparse); nothing is buffered while a flow is idle.
mod body;
mod exchange;
mod head;
pub mod reader;

/// Longest head (or trailer section) accepted, in bytes.
const MAX_HEAD: usize = 64 * 1024;

use super::upstream::{upstream_failure, BoxIo, Failure, Io, Upstream};
use body::Framing;
use bytes::BytesMut;
use exchange::{Exchanged, Request};
use http::Method;
pub use reader::Reader;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long a request head may take to arrive once its first byte did.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves one downstream connection until it closes.
pub async fn serve<D: Io, U: Upstream>(mut down: Reader<D>, upstream: &U) -> Result<(), BoxError> {
    let mut up: Option<Reader<BoxIo>> = None;
    loop {
        let Some(head) = read_head(&mut down).await? else { return Ok(()) };
        let head = match head {
            Ok(head) => head,
            Err(f) => {
                // Malformed: answered here, and the connection ends (its framing is lost).
                tracing::debug!(status = %f.status, why = %f.why, "malformed HTTP/1 request");
                reply(&mut down, &f, false, true).await?;
                return Ok(());
            }
        };
        down.consume(head.len);
        let head::RequestHead { mut parts, body, keep_alive, upgrade, .. } = head;
        let whole = match upstream.body_to_read(&parts) {
            None => None,
            Some(max) => match read_whole_body(&mut down, &body, max).await? {
                Ok(len) => Some(len),
                Err(f) => {
                    upstream.answered(f.status, Some(&f));
                    reply(&mut down, &f, parts.method == Method::HEAD, true).await?;
                    return Ok(());
                }
            },
        };
        if let Err(f) = upstream.rewrite(&mut parts, whole.map(|len| &down.buf[..len])).await {
            upstream.answered(f.status, Some(&f));
            // A body we will not read leaves the connection's framing unknown: close.
            let close = !keep_alive || body != Framing::Empty;
            reply(&mut down, &f, parts.method == Method::HEAD, close).await?;
            if close {
                return Ok(());
            }
            continue;
        }
        let trailers = (body == Framing::Chunked).then(|| upstream.protected());
        let request = Request { head: head::write_request(&parts), method: parts.method, body, upgrade, trailers };
        match exchange::run(&mut down, &mut up, upstream, &request).await? {
            Exchanged::Answered { status, reuse_upstream, keep_downstream } => {
                upstream.answered(status, None);
                if !reuse_upstream {
                    up = None;
                }
                if !(keep_alive && keep_downstream) {
                    down.io.shutdown().await?;
                    return Ok(());
                }
            }
            Exchanged::Failed { failure, body_consumed } => {
                upstream.answered(failure.status, Some(&failure));
                up = None;
                let close = !keep_alive || !body_consumed;
                reply(&mut down, &failure, request.method == Method::HEAD, close).await?;
                if close {
                    return Ok(());
                }
            }
            Exchanged::Upgraded(status) => {
                upstream.answered(status, None);
                let Some(mut up) = up.take() else { return Ok(()) };
                exchange::tunnel(&mut down, &mut up).await?;
                return Ok(());
            }
        }
    }
}

/// Reads a request's whole body into `down`'s buffer (without consuming it: it is sent on as
/// it would have been) for a rewrite that must see it; its length, or the answer when it is
/// too large or has no length.
async fn read_whole_body<D: Io>(down: &mut Reader<D>, body: &Framing, max: u64) -> Result<Result<usize, Failure>, BoxError> {
    let len = match *body {
        Framing::Empty => return Ok(Ok(0)),
        Framing::Length(n) if n <= max => n as usize,
        Framing::Length(n) => {
            let why = format!("the body ({n} bytes) is over the {max} bytes idgate reads to sign it (aws_sigv4.max_body)");
            return Ok(Err(Failure::new(http::StatusCode::PAYLOAD_TOO_LARGE, why)));
        }
        Framing::Chunked | Framing::UntilClose => {
            let why = "a request whose body is signed needs a Content-Length (chunked bodies cannot be signed before they are sent)";
            return Ok(Err(Failure::new(http::StatusCode::LENGTH_REQUIRED, why)));
        }
    };
    while down.buf.len() < len {
        let n = tokio::time::timeout(HEAD_TIMEOUT, down.fill()).await.map_err(|_| "request body not complete in time")??;
        if n == 0 {
            return Err("client closed in the middle of a request body".into());
        }
    }
    Ok(Ok(len))
}

/// Reads the next request head: `None` when the client closed between requests.
async fn read_head<D: Io>(down: &mut Reader<D>) -> Result<Option<Result<head::RequestHead, Failure>>, BoxError> {
    loop {
        match head::parse_request(&down.buf) {
            Ok(Some(head)) => return Ok(Some(Ok(head))),
            Ok(None) => {}
            Err(f) => return Ok(Some(Err(f))),
        }
        let n = if down.buf.is_empty() {
            down.fill().await? // idle keep-alive: no deadline, no buffer
        } else {
            tokio::time::timeout(HEAD_TIMEOUT, down.fill()).await.map_err(|_| "request head not complete in time")??
        };
        if n == 0 {
            return if down.buf.is_empty() { Ok(None) } else { Err("client closed in the middle of a request head".into()) };
        }
    }
}

/// Answers a request itself; with `close`, the connection ends after it.
async fn reply<D: Io>(down: &mut Reader<D>, f: &Failure, head_only: bool, close: bool) -> std::io::Result<()> {
    let mut out = BytesMut::new();
    head::write_failure(f, head_only, close, &mut out);
    down.io.write_all(&out).await?;
    if close {
        down.io.shutdown().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
