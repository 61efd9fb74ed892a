//! Inbound: terminate mTLS from peer idgates (client certificate required), read the caller's
//! SPIFFE ID, authorize each CONNECT stream for its local destination, then splice.
//! Answers: 200 (forwarding), 400 (malformed), 403 (denied), 502 (destination unreachable).
use super::h2_settings::*;
use super::local_addrs::LocalAddrs;
use super::{splice, FLOW_HEADER, PROCESS_HEADER};
use crate::credential::Credentials;
use crate::decisions::{Decision, DecisionLog};
use crate::metrics::Metrics;
use crate::policy::Authorizer;
use crate::socket::connect_marked;
use crate::spiffe::SpiffeId;
use bytes::Bytes;
use h2::server::SendResponse;
use http::{Method, Request, Response, StatusCode};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

pub struct Inbound {
    pub credentials: Arc<Credentials>,
    pub identity_header: crate::http::IdentityHeader,
    pub authorizer: Authorizer,
    pub local: LocalAddrs,
    pub mark: u32,
    pub host: String,
    pub decisions: Arc<DecisionLog>,
    pub metrics: Arc<Metrics>,
    pub flows: AtomicU64,
}

/// The authenticated caller of one tunnel connection.
pub(super) struct Peer {
    pub id: SpiffeId,
    pub serial: Arc<str>,
    pub remote: SocketAddr,
    /// The caller's certificate (DER), for the identity header of HTTP flows.
    pub cert: Arc<[u8]>,
}

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

impl Inbound {
    pub fn new(
        credentials: Arc<Credentials>,
        identity_header: crate::http::IdentityHeader,
        authorizer: Authorizer,
        mark: u32,
        host: String,
        decisions: Arc<DecisionLog>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Inbound { credentials, identity_header, authorizer, local: LocalAddrs::new(), mark, host, decisions, metrics, flows: AtomicU64::new(0) }
    }

    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        let acceptor = TlsAcceptor::from(self.credentials.server_config());
        loop {
            match listener.accept().await {
                Ok((tcp, remote)) => {
                    let this = self.clone();
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move { this.connection(acceptor, tcp, remote).await });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "inbound accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    async fn connection(self: Arc<Self>, acceptor: TlsAcceptor, tcp: TcpStream, remote: SocketAddr) {
        let _ = tcp.set_nodelay(true);
        let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(crate::socket::buffered(tcp))).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => return self.refuse_connection(remote, format!("mTLS handshake failed: {e}")),
            Err(_) => return self.refuse_connection(remote, "mTLS handshake timed out".into()),
        };
        let leaf = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec());
        let peer_id = match leaf.as_deref().map(|l| self.credentials.bundle.peer_id(l)) {
            Some(Ok(id)) => id,
            Some(Err(e)) => return self.refuse_connection(remote, e.to_string()),
            None => return self.refuse_connection(remote, "no client certificate".into()),
        };
        let handshake = h2::server::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_frame_size(MAX_FRAME)
            .max_send_buffer_size(MAX_SEND_BUFFER)
            .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
            .handshake::<_, Bytes>(tls)
            .await;
        let mut conn = match handshake {
            Ok(c) => c,
            Err(e) => return self.refuse_connection(remote, format!("HTTP/2 handshake: {e}")),
        };
        let serial: Arc<str> = leaf.as_deref().and_then(crate::credential::serial_of_cert).unwrap_or_default().into();
        let cert: Arc<[u8]> = leaf.unwrap_or_default().into();
        tracing::debug!(%remote, %peer_id, %serial, "inbound tunnel connection");
        while let Some(next) = conn.accept().await {
            match next {
                Ok((request, respond)) => {
                    let this = self.clone();
                    let peer = Peer { id: peer_id.clone(), serial: serial.clone(), remote, cert: cert.clone() };
                    tokio::spawn(async move { this.stream(request, respond, peer).await });
                }
                Err(e) => {
                    tracing::debug!(%remote, error = %e, "inbound tunnel connection ended");
                    break;
                }
            }
        }
    }

    fn refuse_connection(&self, remote: SocketAddr, why: String) {
        self.metrics.inbound("tls_refused");
        self.decisions.record(Decision {
            unix_ms: 0,
            direction: "inbound",
            flow: format!("{}-in-{}", self.host, self.flows.fetch_add(1, Ordering::Relaxed)),
            source_id: None,
            process: None,
            destination: String::new(),
            verdict: "tls_refused",
            detail: Some(format!("peer {remote}: {why}")),
        });
    }

    async fn stream(self: Arc<Self>, request: Request<h2::RecvStream>, mut respond: SendResponse<Bytes>, peer: Peer) {
        let Peer { id: peer_id, serial, remote, cert } = &peer;
        let (peer_id, serial, remote) = (peer_id.clone(), serial.clone(), *remote);
        let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let mut d = Decision {
            unix_ms: 0,
            direction: "inbound",
            flow: header(FLOW_HEADER).unwrap_or_else(|| format!("{}-in-{}", self.host, self.flows.fetch_add(1, Ordering::Relaxed))),
            source_id: Some(peer_id.to_string()),
            process: header(PROCESS_HEADER),
            destination: request.uri().authority().map(|a| a.to_string()).unwrap_or_default(),
            verdict: "allowed",
            detail: Some(format!("client certificate serial {serial}")),
        };
        let dst: Option<SocketAddr> =
            (request.method() == Method::CONNECT).then(|| request.uri().authority().and_then(|a| a.as_str().parse().ok())).flatten();
        let (status, detail) = match dst {
            None => (StatusCode::BAD_REQUEST, "not a CONNECT to ip:port".to_string()),
            Some(dst) if !self.local.contains(&dst.ip()) => (StatusCode::FORBIDDEN, format!("{} is not a local address", dst.ip())),
            Some(dst) if !self.authorizer.allows(dst.port(), &peer_id) => {
                (StatusCode::FORBIDDEN, format!("{peer_id} is not allowed to reach port {}", dst.port()))
            }
            Some(dst) => match Box::pin(connect_marked(dst, self.mark, DIAL_TIMEOUT)).await {
                Ok(tcp) if self.authorizer.protocol(dst.port()) == crate::config::Protocol::Http => {
                    let identity = self.identity_header.value(self.credentials.server_id(), &peer_id, cert);
                    // Boxed: the HTTP engine's state is large, and a plain TCP flow should not
                    // carry room for it (the task's size is per open flow).
                    return Box::pin(self.forward_http(request, respond, tcp, dst, identity, d)).await;
                }
                Ok(tcp) => return self.forward(request, respond, tcp, d).await,
                Err(e) => (StatusCode::BAD_GATEWAY, format!("connecting to {dst}: {e}")),
            },
        };
        d.verdict = match status {
            StatusCode::FORBIDDEN => "denied",
            StatusCode::BAD_GATEWAY => "unreachable",
            _ => "bad_request",
        };
        d.detail = Some(format!("{detail} (tunnel from {remote}, certificate serial {serial})"));
        self.metrics.inbound(d.verdict);
        self.decisions.record(d);
        let response = Response::builder().status(status).body(()).expect("static response");
        let _ = respond.send_response(response, true);
    }

    /// Answers 200 and counts the flow as allowed; None if the peer went away meanwhile.
    pub(super) fn accept(&self, respond: &mut SendResponse<Bytes>, d: Decision) -> Option<h2::SendStream<Bytes>> {
        let response = Response::builder().status(StatusCode::OK).body(()).expect("static response");
        let send = match respond.send_response(response, false) {
            Ok(send) => send,
            Err(e) => {
                tracing::debug!(flow = %d.flow, error = %e, "peer went away before the answer");
                return None;
            }
        };
        self.metrics.inbound("allowed");
        self.decisions.record(d);
        Some(send)
    }

    async fn forward(&self, request: Request<h2::RecvStream>, mut respond: SendResponse<Bytes>, tcp: TcpStream, d: Decision) {
        let _active = self.metrics.flow_guard();
        let flow = d.flow.clone();
        let Some(send) = self.accept(&mut respond, d) else { return };
        match splice(tcp, send, request.into_body()).await {
            Ok((to_peer, from_peer)) => tracing::debug!(%flow, to_peer, from_peer, "inbound flow closed"),
            Err(e) => tracing::debug!(%flow, error = %e, "inbound flow reset"),
        }
    }
}
