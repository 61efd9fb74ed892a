//! Inbound flows to `protocol = "http"` ports: each request from the tunnel gets the caller's
//! verified identity header (any copy that came over the network is removed first) before it
//! reaches the local service.
use super::inbound::Inbound;
use super::StreamIo;
use crate::http::forged::Protected;
use crate::http::{BoxIo, Failure, Upstream};
use crate::observe::decisions::Decision;
use crate::observe::flows::{Counted, OpenFlow, Registration};
use crate::observe::Verdict;
use bytes::Bytes;
use h2::server::SendResponse;
use http::{request, HeaderValue, StatusCode, Version};
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
        let tcp = crate::sys::socket::connect_marked(self.dst, self.inbound.inputs.mark, self.inbound.limits.dial_timeout.0)
            .await
            .map_err(|e| Failure::new(StatusCode::BAD_GATEWAY, format!("connecting to {}: {e}", self.dst)))?;
        Ok(Box::new(tcp))
    }

    async fn rewrite(&self, parts: &mut request::Parts, _body: Option<&[u8]>) -> Result<(), Failure> {
        // Any copy that came over the network goes, under any spelling the service may read
        // as this header.
        self.inbound.identity_header.protected.strip(&mut parts.headers);
        parts.headers.insert(self.inbound.identity_header.name.clone(), self.identity.clone());
        Ok(())
    }

    fn protected(&self) -> Arc<Protected> {
        self.inbound.identity_header.protected.clone()
    }

    fn answered(&self, status: StatusCode, _failure: Option<&Failure>) {
        self.inbound.inputs.metrics.http_request("inbound", status);
    }
}

impl Inbound {
    pub(super) async fn forward_http(
        self: Arc<Self>,
        body: h2::RecvStream,
        mut respond: SendResponse<Bytes>,
        tcp: TcpStream,
        identity: HeaderValue,
        d: Decision,
        registration: Registration,
    ) {
        let _active = self.inputs.metrics.flow_guard();
        let Some(send) = self.accept(&mut respond, d) else { return };
        self.clone().serve_http(StreamIo::server(send, body), tcp, identity, &registration.flow).await;
        self.inputs.trail.ended(&registration.flow, Verdict::Allowed);
    }

    /// Serves an authorized caller's HTTP (from a tunnel stream or a local socket) to the
    /// service of `flow`, already connected as `tcp`, with the caller's `identity` header,
    /// until either side closes or idgate closes the flow.
    pub(super) async fn serve_http(
        self: Arc<Self>,
        caller: impl crate::http::upstream::Io,
        tcp: TcpStream,
        identity: HeaderValue,
        flow: &Arc<OpenFlow>,
    ) {
        let dst = flow.facts.destination;
        let local = Local { inbound: self.clone(), dst, first: parking_lot::Mutex::new(Some(tcp)), identity };
        // Bytes are counted on the caller's side: up is what it sent.
        let caller = Counted::new(caller, flow.clone());
        tokio::select! {
            served = crate::http::serve(caller, local) => if let Err(e) = served {
                tracing::debug!(flow = %flow.facts.id, error = %e, "inbound http flow ended with an error");
            },
            () = flow.closed() => tracing::debug!(flow = %flow.facts.id, "inbound http flow closed by idgate"),
        }
    }
}
