//! The HTTP-aware path for one connection: serve HTTP/1.1 or HTTP/2 with prior knowledge on
//! the downstream side, rewrite each request, and send it over one upstream connection of the
//! same HTTP version (opened on the first request, re-opened if the upstream closed it).
//! Upgrades (WebSocket) are spliced as raw bytes once both sides said 101.
//! hyper does the parsing: malformed requests get its 400 and the connection closes.
use crate::tunnel::h2_settings::*;
use crate::tunnel::PeerRefused;
use bytes::Bytes;
use http::{request, Request, Response, StatusCode, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::error::Error as _;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

pub type ProxyBody = Either<Incoming, Full<Bytes>>;
type TrySendError = hyper::client::conn::TrySendError<Request<Incoming>>;

pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}
pub type BoxIo = Box<dyn Io>;

/// A request that was answered by idgate instead of the upstream.
#[derive(Debug)]
pub struct Failure {
    pub status: StatusCode,
    /// Shown to the workload and logged; must never contain a secret.
    pub why: String,
}

impl Failure {
    pub fn new(status: StatusCode, why: impl Into<String>) -> Self {
        Failure { status, why: why.into() }
    }

    fn response(&self) -> Response<ProxyBody> {
        let body = Full::new(Bytes::from(format!("idgate: {}\n", self.why)));
        let mut r = Response::new(Either::Right(body));
        *r.status_mut() = self.status;
        r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain"));
        r
    }
}

/// Where the requests of one downstream connection go, and what changes on the way.
pub trait Upstream: Send + Sync + 'static {
    /// A byte stream to the upstream for requests of `version`.
    fn open(&self, version: Version) -> impl Future<Output = Result<BoxIo, Failure>> + Send;
    /// Rewrites one request; an error answers it without forwarding.
    fn rewrite(&self, parts: &mut request::Parts) -> Result<(), Failure>;
    /// Called for every answered request, with the failure when idgate answered it itself.
    fn answered(&self, _status: StatusCode, _failure: Option<&Failure>) {}
}

enum Sender {
    H1(http1::SendRequest<Incoming>),
    H2(http2::SendRequest<Incoming>),
}

struct Conn<U> {
    upstream: U,
    sender: tokio::sync::Mutex<Option<Sender>>,
}

/// Serves one downstream connection until it closes.
pub async fn serve<U: Upstream>(downstream: impl Io, upstream: U) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let conn = Arc::new(Conn { upstream, sender: tokio::sync::Mutex::new(None) });
    let service = hyper::service::service_fn(move |req| {
        let conn = conn.clone();
        async move {
            let response = match conn.forward(req).await {
                Ok(r) => {
                    conn.upstream.answered(r.status(), None);
                    r
                }
                Err(f) => {
                    conn.upstream.answered(f.status, Some(&f));
                    f.response()
                }
            };
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        // No pipeline_flush: with it, hyper drops its own 400 for a malformed request.
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME.min(16 * 1024 * 1024 - 1))
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION);
    builder.serve_connection_with_upgrades(TokioIo::new(downstream), service).await
}

impl<U: Upstream> Conn<U> {
    async fn forward(&self, mut req: Request<Incoming>) -> Result<Response<ProxyBody>, Failure> {
        let upgrade = (req.version() != Version::HTTP_2 && req.headers().contains_key(http::header::UPGRADE)).then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        self.upstream.rewrite(&mut parts)?;
        let mut response = self.send(Request::from_parts(parts, body)).await?;
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(downstream) = upgrade {
                let upstream = hyper::upgrade::on(&mut response);
                tokio::spawn(async move {
                    match tokio::try_join!(downstream, upstream) {
                        Ok((d, u)) => {
                            let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(d), &mut TokioIo::new(u)).await;
                        }
                        Err(e) => tracing::debug!(error = %e, "upgrade did not complete"),
                    }
                });
            }
        }
        Ok(response.map(Either::Left))
    }

    async fn send(&self, mut req: Request<Incoming>) -> Result<Response<Incoming>, Failure> {
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
                    _ => return Err(upstream_failure(e.into_error())),
                },
            }
        }
    }

    /// Sends `req` on the connection's upstream, opening one if there is none, it is closed,
    /// it speaks the other HTTP version, or `fresh` asks for a new one.
    async fn dispatch(&self, req: Request<Incoming>, fresh: bool) -> Result<Result<Response<Incoming>, TrySendError>, Failure> {
        let want_h2 = req.version() == Version::HTTP_2;
        let mut slot = self.sender.lock().await;
        let usable = match &*slot {
            Some(Sender::H1(s)) => !want_h2 && !s.is_closed(),
            Some(Sender::H2(s)) => want_h2 && !s.is_closed(),
            None => false,
        };
        if fresh || !usable {
            *slot = Some(self.connect(req.version()).await?);
        }
        Ok(match slot.as_mut().expect("set above") {
            Sender::H1(s) => {
                if s.ready().await.is_err() {
                    // Closed since the check above: one new connection, then give up.
                    *slot = Some(self.connect(req.version()).await?);
                    let Some(Sender::H1(s)) = slot.as_mut() else { unreachable!("just connected HTTP/1") };
                    s.ready().await.map_err(upstream_failure)?;
                }
                let Some(Sender::H1(s)) = slot.as_mut() else { unreachable!("HTTP/1 slot") };
                let answer = s.try_send_request(req);
                drop(slot); // the next request waits in ready() until this exchange is over
                answer.await
            }
            Sender::H2(s) => {
                let mut s = s.clone();
                drop(slot);
                s.ready().await.map_err(upstream_failure)?;
                s.try_send_request(req).await
            }
        })
    }

    async fn connect(&self, version: Version) -> Result<Sender, Failure> {
        let io = TokioIo::new(self.upstream.open(version).await?);
        if version == Version::HTTP_2 {
            let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .initial_stream_window_size(STREAM_WINDOW)
                .initial_connection_window_size(CONNECTION_WINDOW)
                .handshake(io)
                .await
                .map_err(upstream_failure)?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "upstream HTTP/2 connection ended");
                }
            });
            Ok(Sender::H2(sender))
        } else {
            let (sender, conn) = http1::Builder::new().handshake(io).await.map_err(upstream_failure)?;
            tokio::spawn(async move {
                if let Err(e) = conn.with_upgrades().await {
                    tracing::debug!(error = %e, "upstream HTTP/1 connection ended");
                }
            });
            Ok(Sender::H1(sender))
        }
    }
}

/// Maps an upstream error to what the workload sees: the peer's refusal keeps its status.
fn upstream_failure(e: hyper::Error) -> Failure {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = e.source();
    let mut why = e.to_string();
    while let Some(c) = cause {
        // io::Error hides its payload from source(); look inside it.
        let inner = c.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()).map(|r| r as &(dyn std::error::Error + 'static));
        if let Some(refused) = inner.or(Some(c)).and_then(|r| r.downcast_ref::<PeerRefused>()) {
            let status = if refused.0 == StatusCode::FORBIDDEN { StatusCode::FORBIDDEN } else { StatusCode::BAD_GATEWAY };
            return Failure::new(status, refused.to_string());
        }
        why = format!("{why}: {c}");
        cause = c.source();
    }
    Failure::new(StatusCode::BAD_GATEWAY, format!("upstream: {why}"))
}
