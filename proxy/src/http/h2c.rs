//! HTTP/2 with prior knowledge (h2c) on the downstream side: hyper serves it and each request
//! goes on over one upstream HTTP/2 connection (opened on the first request, re-opened if the
//! upstream closed it).
use super::forged::Protected;
use super::upstream::{upstream_failure, Failure, Io, Upstream};
use crate::http::h2_settings::*;
use bytes::{Buf, Bytes};
use http::{Request, Response, Version};
use http_body_util::{Either, Full};
use hyper::body::{Body as _, Incoming};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

type ProxyBody = Either<Incoming, Full<Bytes>>;
type TrySendError = hyper::client::conn::TrySendError<Request<Guarded>>;

/// A request body whose trailers lose the fields a workload may not send (a service may merge
/// trailers into the request's headers).
struct Guarded {
    body: BodySource,
    /// None for a request whose stream ended with its head.
    protected: Option<Arc<Protected>>,
}

/// The body as it streams in, or as a rewrite read it whole (to sign it).
enum BodySource {
    Stream(Incoming),
    Whole(Option<Bytes>),
}

impl hyper::body::Body for Guarded {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let body = match &mut this.body {
            BodySource::Stream(body) => body,
            BodySource::Whole(data) => return Poll::Ready(data.take().filter(|d| !d.is_empty()).map(|d| Ok(hyper::body::Frame::data(d)))),
        };
        let polled = Pin::new(body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = polled {
            let mut frame = frame;
            if let (Some(trailers), Some(protected)) = (frame.trailers_mut(), &this.protected) {
                protected.strip(trailers);
            }
            return Poll::Ready(Some(Ok(frame)));
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.body {
            BodySource::Stream(body) => body.is_end_stream(),
            BodySource::Whole(data) => data.as_ref().is_none_or(Bytes::is_empty),
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match &self.body {
            BodySource::Stream(body) => body.size_hint(),
            BodySource::Whole(data) => hyper::body::SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
        }
    }
}

/// A request body read whole for a rewrite that must see it (at most `max` bytes).
async fn read_whole(body: Incoming, max: u64) -> Result<Bytes, Failure> {
    use http_body_util::BodyExt;
    match http_body_util::Limited::new(body, usize::try_from(max).unwrap_or(usize::MAX)).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Failure::new(
            http::StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is over the {max} bytes idgate reads to sign it (aws_sigv4.max_body)"),
        )),
        Err(e) => Err(Failure::new(http::StatusCode::BAD_REQUEST, format!("reading the request body: {e}"))),
    }
}

fn response(f: &Failure) -> Response<ProxyBody> {
    let body = Full::new(Bytes::from(format!("idgate: {}\n", f.why)));
    let mut r = Response::new(Either::Right(body));
    *r.status_mut() = f.status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain"));
    r
}

struct Conn<U> {
    upstream: U,
    sender: tokio::sync::Mutex<Option<http2::SendRequest<Guarded>>>,
}

/// Serves one downstream HTTP/2 connection until it closes.
pub async fn serve<U: Upstream>(downstream: impl Io, upstream: U) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let conn = Arc::new(Conn { upstream, sender: tokio::sync::Mutex::new(None) });
    let service = hyper::service::service_fn(move |req| {
        let conn = conn.clone();
        async move {
            let response = match conn.send(req).await {
                Ok(r) => {
                    conn.upstream.answered(r.status(), None);
                    r.map(Either::Left)
                }
                Err(f) => {
                    conn.upstream.answered(f.status, Some(&f));
                    response(&f)
                }
            };
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME.min(16 * 1024 * 1024 - 1))
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .serve_connection(TokioIo::new(downstream), service)
        .await?;
    Ok(())
}

impl<U: Upstream> Conn<U> {
    async fn send(&self, req: Request<Incoming>) -> Result<Response<Incoming>, Failure> {
        let (mut parts, body) = req.into_parts();
        let protected = (!body.is_end_stream()).then(|| self.upstream.protected());
        let (body, whole) = match self.upstream.body_to_read(&parts) {
            None => (BodySource::Stream(body), None),
            Some(max) => {
                let whole = read_whole(body, max).await?;
                (BodySource::Whole(Some(whole.clone())), Some(whole))
            }
        };
        self.upstream.rewrite(&mut parts, whole.as_deref()).await?;
        let body = Guarded { protected, body };
        let mut req = Request::from_parts(parts, body);
        let mut fresh = false;
        loop {
            match self.dispatch(req, fresh).await? {
                Ok(response) => return Ok(response),
                Err(mut e) => match e.take_message() {
                    // The upstream closed an idle connection before our request left: the
                    // request is intact, so it goes once more on a new connection.
                    Some(back) if !fresh => {
                        tracing::debug!(error = %e.error(), "upstream connection closed while idle; retrying on a new one");
                        req = back;
                        fresh = true;
                    }
                    _ => return Err(upstream_failure(&e.into_error())),
                },
            }
        }
    }

    /// Sends `req` on the connection's upstream, opening one if there is none, it is closed,
    /// or `fresh` asks for a new one.
    async fn dispatch(&self, req: Request<Guarded>, fresh: bool) -> Result<Result<Response<Incoming>, TrySendError>, Failure> {
        let mut slot = self.sender.lock().await;
        if fresh || slot.as_ref().is_none_or(|s| s.is_closed()) {
            *slot = Some(self.connect().await?);
        }
        let mut sender = slot.as_ref().expect("set above").clone();
        drop(slot);
        sender.ready().await.map_err(|e| upstream_failure(&e))?;
        Ok(sender.try_send_request(req).await)
    }

    async fn connect(&self) -> Result<http2::SendRequest<Guarded>, Failure> {
        let io = TokioIo::new(self.upstream.open(Version::HTTP_2).await?);
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .handshake(io)
            .await
            .map_err(|e| upstream_failure(&e))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream HTTP/2 connection ended");
            }
        });
        Ok(sender)
    }
}

/// A stream whose first bytes were already read (to recognise the HTTP/2 preface).
pub struct Prefixed<T> {
    prefix: Bytes,
    io: T,
}

impl<T> Prefixed<T> {
    pub fn new(prefix: Bytes, io: T) -> Self {
        Prefixed { prefix, io }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Prefixed<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Prefixed<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
