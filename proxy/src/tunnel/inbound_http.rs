//! Inbound flows to `protocol = "http"` ports: each request from the tunnel gets the caller's
//! verified identity header (any copy that came over the network is removed first) before it
//! reaches the local service.
use super::inbound::Inbound;
use super::StreamIo;
use crate::decisions::Decision;
use crate::http::{BoxIo, Failure, Upstream};
use bytes::Bytes;
use h2::server::SendResponse;
use http::{request, HeaderValue, Request, StatusCode, Version};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;

struct Local {
    inbound: Arc<Inbound>,
    dst: SocketAddr,
    /// The connection made while authorizing; later ones are dialed when the service closed it.
    first: parking_lot::Mutex<Option<TcpStream>>,
    identity: HeaderValue,
}

impl Upstream for Local {
    async fn open(&self, _version: Version) -> Result<BoxIo, Failure> {
        if let Some(tcp) = self.first.lock().take() {
            return Ok(Box::new(tcp));
        }
        let tcp = crate::socket::connect_marked(self.dst, self.inbound.mark, self.inbound.limits.dial_timeout.0)
            .await
            .map_err(|e| Failure::new(StatusCode::BAD_GATEWAY, format!("connecting to {}: {e}", self.dst)))?;
        Ok(Box::new(tcp))
    }

    fn rewrite(&self, parts: &mut request::Parts) -> Result<(), Failure> {
        let name = &self.inbound.identity_header.name;
        parts.headers.remove(name);
        parts.headers.insert(name.clone(), self.identity.clone());
        Ok(())
    }

    fn answered(&self, status: StatusCode, _failure: Option<&Failure>) {
        self.inbound.metrics.http_request("inbound", status);
    }
}

impl Inbound {
    pub(super) async fn forward_http(
        self: Arc<Self>,
        request: Request<h2::RecvStream>,
        mut respond: SendResponse<Bytes>,
        tcp: TcpStream,
        dst: SocketAddr,
        identity: HeaderValue,
        d: Decision,
    ) {
        let _active = self.metrics.flow_guard();
        let flow = d.flow.clone();
        let Some(send) = self.accept(&mut respond, d) else { return };
        self.serve_http(StreamIo::server(send, request.into_body()), tcp, dst, identity, &flow).await;
    }

    /// Serves an authorized caller's HTTP (from a tunnel stream or a local socket) to the
    /// service at `dst`, already connected as `tcp`, with the caller's `identity` header.
    pub(super) async fn serve_http(
        self: Arc<Self>,
        caller: impl crate::http::forward::Io,
        tcp: TcpStream,
        dst: SocketAddr,
        identity: HeaderValue,
        flow: &str,
    ) {
        let local = Local { inbound: self.clone(), dst, first: parking_lot::Mutex::new(Some(tcp)), identity };
        if let Err(e) = crate::http::serve(caller, local).await {
            tracing::debug!(%flow, error = %e, "inbound http flow ended with an error");
        }
    }
}
