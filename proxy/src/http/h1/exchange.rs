//! One request and its response between the downstream connection and the upstream one:
//! the head goes out, the body (if any) flows up while the response flows down, and an idle
//! upstream that turns out closed is replaced once.
use super::body::{self, Copied, CopyError, Cursor, Framing};
use super::head;
use super::reader::Reader;
use super::{upstream_failure, BoxIo, Failure, Io, Upstream};
use crate::http::forged::Protected;
use bytes::BytesMut;
use http::{Method, StatusCode, Version};
use std::io;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

pub struct Request {
    /// The rewritten head, ready to send.
    pub head: Vec<u8>,
    pub method: Method,
    pub body: Framing,
    pub upgrade: bool,
    /// What a chunked body's trailer fields may not be.
    pub trailers: Option<Arc<Protected>>,
}

pub enum Exchanged {
    /// The upstream's response went down whole.
    Answered { status: StatusCode, reuse_upstream: bool, keep_downstream: bool },
    /// Nothing of a response went down: idgate answers with `failure`.
    Failed { failure: Failure, body_consumed: bool },
    /// The response switched protocols: from now on, bytes both ways.
    Upgraded(StatusCode),
}

/// How relaying a response went wrong.
enum RelayError {
    /// Nothing came back (end of stream or an error before the first byte).
    NoAnswer(io::Error),
    /// What came back is not a response we can forward; nothing was forwarded yet.
    BadAnswer(String),
    /// The upstream failed after part of the response went down.
    Broken(String),
    Downstream(io::Error),
}

/// A finished response.
struct Relayed {
    status: StatusCode,
    /// The connection is now a tunnel (101, or 2xx to CONNECT).
    switched: bool,
    /// The upstream closes after it (or its body ended with the connection).
    close: bool,
}

/// Sends `req` upstream (opening a connection if there is none) and relays its response.
/// Errors are the downstream's: the caller just ends the connection.
pub async fn run<D: Io, U: Upstream>(down: &mut Reader<D>, up: &mut Option<Reader<BoxIo>>, upstream: &U, req: &Request) -> io::Result<Exchanged> {
    let mut retried = false;
    loop {
        let reused = up.is_some() && usable(up);
        if !reused {
            // Boxed: opening (a dial, a TLS handshake) takes kilobytes of state that an idle
            // flow's task would otherwise carry all its life.
            *up = match Box::pin(upstream.open(Version::HTTP_11)).await {
                Ok(io) => Some(Reader::new(io, BytesMut::new())),
                Err(failure) => return Ok(Exchanged::Failed { failure, body_consumed: req.body == Framing::Empty }),
            };
        }
        let conn = up.as_mut().expect("opened above");
        let mut cursor = Cursor::request(req.body, req.trailers.clone());
        // The head and whatever of the body is already here leave in one write.
        let first = match cursor.advance(&down.buf) {
            Ok(step) => step,
            Err(why) => return Ok(Exchanged::Failed { failure: Failure::new(StatusCode::BAD_REQUEST, why), body_consumed: false }),
        };
        let trailers = cursor.take_trailers().unwrap_or_default();
        let sent = if first.used == 0 {
            conn.io.write_all(&req.head).await
        } else {
            let mut both = BytesMut::with_capacity(req.head.len() + first.pass + trailers.len());
            both.extend_from_slice(&req.head);
            both.extend_from_slice(&down.buf[..first.pass]);
            both.extend_from_slice(&trailers);
            down.consume(first.used);
            conn.io.write_all(&both).await
        };
        let outcome = match sent {
            Ok(()) if cursor.is_done() => relay(conn, &mut down.io, req).await.map(|r| (r, true)),
            Ok(()) => with_body(down, conn, &mut cursor, req).await,
            Err(e) => Err(RelayError::NoAnswer(e)),
        };
        let retryable = reused && !retried && req.body == Framing::Empty;
        return Ok(match outcome {
            Ok((r, _)) if r.switched => Exchanged::Upgraded(r.status),
            // A response that closes (said so, or ends with its connection) closes downstream too:
            // its `connection: close` went down with it.
            Ok((r, body_done)) => {
                Exchanged::Answered { status: r.status, reuse_upstream: body_done && !r.close, keep_downstream: body_done && !r.close }
            }
            Err(RelayError::NoAnswer(e)) if retryable => {
                // The upstream closed this idle connection as the request left: the request
                // did not reach it, so it goes once more on a new connection.
                tracing::debug!(error = %e, "upstream connection closed while idle; retrying on a new one");
                retried = true;
                *up = None;
                continue;
            }
            Err(RelayError::NoAnswer(e)) => Exchanged::Failed { failure: upstream_failure(&e), body_consumed: cursor.is_done() },
            Err(RelayError::BadAnswer(why)) => {
                Exchanged::Failed { failure: Failure::new(StatusCode::BAD_GATEWAY, format!("upstream: {why}")), body_consumed: cursor.is_done() }
            }
            Err(RelayError::Broken(why)) => return Err(io::Error::other(format!("upstream failed mid-response: {why}"))),
            Err(RelayError::Downstream(e)) => return Err(e),
        });
    }
}

/// An idle upstream connection can carry the next request unless it has ended or sent
/// something unasked (checked without waiting).
fn usable(up: &mut Option<Reader<BoxIo>>) -> bool {
    let Some(conn) = up else { return false };
    let mut cx = Context::from_waker(Waker::noop());
    match conn.poll_fill(&mut cx) {
        Poll::Pending => true,
        _ => {
            *up = None;
            false
        }
    }
}

/// The body flows up while the response flows down (a server may answer early, or wait
/// for `100-continue` to be relayed before the body comes). Returns the response and whether
/// the whole body went up; a response that ends first leaves the rest of it unread.
async fn with_body<D: Io>(down: &mut Reader<D>, conn: &mut Reader<BoxIo>, cursor: &mut Cursor, req: &Request) -> Result<(Relayed, bool), RelayError> {
    let (down_rd, mut down_wr) = tokio::io::split(&mut down.io);
    let (up_rd, mut up_wr) = tokio::io::split(&mut conn.io);
    let mut from_down = Reader::new(down_rd, std::mem::take(&mut down.buf));
    let mut from_up = Reader::new(up_rd, std::mem::take(&mut conn.buf));
    let result = {
        let upload = body::copy(&mut from_down, &mut up_wr, cursor);
        let response = relay(&mut from_up, &mut down_wr, req);
        tokio::pin!(upload, response);
        let mut uploaded = None;
        loop {
            tokio::select! {
                r = &mut upload, if uploaded.is_none() => match r {
                    Ok(Copied::Done) | Ok(Copied::Eof) => uploaded = Some(true),
                    // The upstream stopped reading: its answer may still come.
                    Err(CopyError::Sink(e)) => {
                        tracing::debug!(error = %e, "upstream stopped reading the request body");
                        uploaded = Some(false);
                    }
                    Err(CopyError::Source(why)) => break Err(RelayError::Broken(format!("request body: {why}"))),
                },
                r = &mut response => break r.map(|r| (r, uploaded == Some(true))),
            }
        }
    };
    down.buf = from_down.buf;
    conn.buf = from_up.buf;
    result
}

/// Reads the response to `req` and forwards it: informational ones (100-continue, 103) as
/// they come, then the final one with its body.
async fn relay<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(up: &mut Reader<R>, down: &mut W, req: &Request) -> Result<Relayed, RelayError> {
    let mut forwarded = false;
    loop {
        let head = loop {
            match head::parse_response(&up.buf, &req.method) {
                Ok(Some(head)) => break head,
                Ok(None) => {}
                Err(why) if forwarded => return Err(RelayError::Broken(why)),
                Err(why) => return Err(RelayError::BadAnswer(why)),
            }
            let nothing_yet = up.buf.is_empty() && !forwarded;
            match up.fill().await {
                Ok(0) if nothing_yet => return Err(RelayError::NoAnswer(io::ErrorKind::UnexpectedEof.into())),
                Err(e) if nothing_yet => return Err(RelayError::NoAnswer(e)),
                Ok(0) if forwarded => return Err(RelayError::Broken("closed before the final response".into())),
                Ok(0) => return Err(RelayError::BadAnswer("closed in the middle of a response head".into())),
                Err(e) if forwarded => return Err(RelayError::Broken(e.to_string())),
                Err(e) => return Err(RelayError::BadAnswer(e.to_string())),
                Ok(_) => {}
            }
        };
        let switched = head.status == StatusCode::SWITCHING_PROTOCOLS || (req.method == Method::CONNECT && head.status.is_success());
        if switched && !req.upgrade {
            return Err(RelayError::BadAnswer("switched protocols unasked".into()));
        }
        if head.status.is_informational() && !switched {
            down.write_all(&up.buf[..head.len]).await.map_err(RelayError::Downstream)?;
            up.consume(head.len);
            forwarded = true;
            continue;
        }
        let mut cursor = Cursor::new(head.body);
        let in_hand = cursor.advance(&up.buf[head.len..]).map_err(RelayError::BadAnswer)?.used;
        down.write_all(&up.buf[..head.len + in_hand]).await.map_err(RelayError::Downstream)?;
        up.consume(head.len + in_hand);
        if switched {
            return Ok(Relayed { status: head.status, switched, close: true });
        }
        if !cursor.is_done() {
            match body::copy(up, down, &mut cursor).await {
                Ok(_) => {}
                Err(CopyError::Source(why)) => return Err(RelayError::Broken(why)),
                Err(CopyError::Sink(e)) => return Err(RelayError::Downstream(e)),
            }
        }
        let close = head.close || head.body == Framing::UntilClose;
        return Ok(Relayed { status: head.status, switched: false, close });
    }
}

/// After a protocol switch: what each side already sent goes across, then bytes both ways
/// until both are done.
pub async fn tunnel<D: Io>(down: &mut Reader<D>, up: &mut Reader<BoxIo>) -> io::Result<()> {
    let early_up = down.take_all();
    let early_down = up.take_all();
    up.io.write_all(&early_up).await?;
    down.io.write_all(&early_down).await?;
    tokio::io::copy_bidirectional(&mut down.io, &mut up.io).await?;
    Ok(())
}
