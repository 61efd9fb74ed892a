//! What the HTTP/1 and HTTP/2 paths share: the upstream a connection's requests go to, and
//! the answer idgate gives itself when it cannot forward one.
use super::forged::Protected;
use super::PeerRefused;
use http::{request, StatusCode, Version};
use std::error::Error;
use std::future::Future;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

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
}

/// Where the requests of one downstream connection go, and what changes on the way.
pub trait Upstream: Send + Sync + 'static {
    /// A byte stream to the upstream for requests of `version`.
    fn open(&self, version: Version) -> impl Future<Output = Result<BoxIo, Failure>> + Send;
    /// The largest body the rewrite must see whole before the request can leave (a signed
    /// payload), if it must.
    fn body_to_read(&self, _parts: &request::Parts) -> Option<u64> {
        None
    }
    /// Rewrites one request (`body`: the whole body, when `body_to_read` asked for it); an
    /// error answers it without forwarding.
    fn rewrite(&self, parts: &mut request::Parts, body: Option<&[u8]>) -> impl Future<Output = Result<(), Failure>> + Send;
    /// The names a request's trailer fields may not carry either (a service may merge them
    /// into its headers): they are stripped as from the head. Asked only of requests whose
    /// body may end in trailers.
    fn protected(&self) -> Arc<Protected>;
    /// Called for every answered request, with the failure when idgate answered it itself.
    fn answered(&self, _status: StatusCode, _failure: Option<&Failure>) {}
}

/// Maps an upstream error to what the workload sees: the peer's refusal keeps its status.
pub fn upstream_failure(e: &(dyn Error + 'static)) -> Failure {
    let mut cause = Some(e);
    let mut why = String::new();
    while let Some(c) = cause {
        // io::Error hides its payload from source(); look inside it.
        let inner = c.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()).map(|r| r as &(dyn Error + 'static));
        if let Some(refused) = inner.or(Some(c)).and_then(|r| r.downcast_ref::<PeerRefused>()) {
            let status = if refused.0 == StatusCode::FORBIDDEN { StatusCode::FORBIDDEN } else { StatusCode::BAD_GATEWAY };
            return Failure::new(status, refused.to_string());
        }
        let text = c.to_string();
        if !why.contains(&text) {
            why = if why.is_empty() { text } else { format!("{why}: {text}") };
        }
        cause = c.source();
    }
    Failure::new(StatusCode::BAD_GATEWAY, format!("upstream: {why}"))
}
