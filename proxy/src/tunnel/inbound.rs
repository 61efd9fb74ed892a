//! Inbound: terminate mTLS from peer idgates (client certificate required), read the caller's
//! SPIFFE ID, authorize each CONNECT stream for its local destination, then splice.
//! Answers: 200 (forwarding), 400 (malformed), 403 (denied), 502 (destination unreachable).
use super::handshake_gate::HandshakeGate;
use super::local_addrs::LocalAddrs;
use super::refusals::HandshakeRefusals;
use super::ProxyInputs;
use super::{splice, FLOW_HEADER, PROCESS_HEADER};
use crate::config::TunnelConfig;
use crate::credential::PeerChain;
use crate::observe::decisions::Decision;
use crate::observe::flows::{FlowFacts, Registration};
use crate::observe::Verdict;
use crate::spiffe::SpiffeId;
use crate::sys::socket::connect_marked;
use bytes::Bytes;
use h2::server::SendResponse;
use http::{Method, Request, Response, StatusCode};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::TcpStream;

pub struct Inbound {
    pub inputs: Arc<ProxyInputs>,
    pub identity_header: crate::http::IdentityHeader,
    pub limits: TunnelConfig,
    /// Shared by every worker: the bound on handshakes in progress is per host.
    pub handshakes: Arc<HandshakeGate>,
    pub refusals: Arc<HandshakeRefusals>,
    pub local: LocalAddrs,
    pub flows: AtomicU64,
    /// Turns true at an upgrade's handover: every tunnel connection sends GOAWAY (its open
    /// flows finish here, peers open new ones to the successor).
    pub retire: tokio::sync::watch::Sender<bool>,
}

/// What a peer says about a flow is stored and logged, so it is bounded: a flow id longer than
/// this is replaced by one of ours, a process description is cut.
const MAX_PEER_FLOW_ID: usize = 128;
const MAX_PEER_PROCESS: usize = 1024;

/// The peer's flow id, if it is one we keep (header values reach here as visible ASCII).
fn peer_flow_id(value: Option<&str>) -> Option<String> {
    value.filter(|v| !v.is_empty() && v.len() <= MAX_PEER_FLOW_ID).map(str::to_string)
}

fn peer_process(value: &str) -> String {
    if value.len() <= MAX_PEER_PROCESS {
        return value.to_string();
    }
    // Visible ASCII: any byte is a character boundary.
    format!("{}... ({} bytes cut)", &value[..MAX_PEER_PROCESS], value.len() - MAX_PEER_PROCESS)
}

/// The authenticated caller of one tunnel connection.
pub(super) struct Peer {
    pub id: SpiffeId,
    pub serial: Arc<str>,
    pub remote: SocketAddr,
    /// The caller's certificate (DER), for the identity header of HTTP flows.
    pub cert: Arc<[u8]>,
    /// Its chain, checked against the deny list for each stream and when the list changes.
    pub chain: Arc<PeerChain>,
}

impl Inbound {
    /// One CONNECT stream of an authenticated peer, from the request to the flow's end (an
    /// `async move` block rather than an `async fn`: see `splice_connect`).
    #[expect(clippy::manual_async_fn, reason = "per-flow state: see `splice_connect`")]
    pub(super) fn stream(
        self: Arc<Self>,
        request: Request<h2::RecvStream>,
        mut respond: SendResponse<Bytes>,
        peer: Arc<Peer>,
    ) -> impl Future<Output = ()> {
        async move {
            let Peer { id: peer_id, serial, remote, cert, chain } = &*peer;
            let (peer_id, serial, remote) = (peer_id.clone(), serial.clone(), *remote);
            let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
            let flow = peer_flow_id(header(FLOW_HEADER)).unwrap_or_else(|| {
                format!("{}-{}.in{}", self.inputs.host, crate::observe::flows::own_pid(), self.flows.fetch_add(1, Ordering::Relaxed))
            });
            let mut d = Decision::new("inbound", flow);
            d.source_id = Some(peer_id.to_string());
            d.process = header(PROCESS_HEADER).map(peer_process);
            d.destination = request.uri().authority().map(|a| a.to_string()).unwrap_or_default();
            d.verdict = Verdict::Allowed;
            d.detail = Some(format!("client certificate serial {serial}"));
            let dst: Option<SocketAddr> =
                (request.method() == Method::CONNECT).then(|| request.uri().authority().and_then(|a| a.as_str().parse().ok())).flatten();
            let policy = self.inputs.live.policy();
            let revoked = self.inputs.live.revoked().why_chain(chain);
            let mut closed = false;
            let (status, detail) = match dst {
                None => (StatusCode::BAD_REQUEST, "not a CONNECT to ip:port".to_string()),
                Some(_) if revoked.is_some() => (StatusCode::FORBIDDEN, revoked.unwrap_or_default()),
                Some(dst) if !self.local.contains(&dst.ip()) && !policy.authorizer.forwards_to(&dst) => {
                    (StatusCode::FORBIDDEN, format!("{dst} is neither a local address nor a backend an [[inbound]] rule names"))
                }
                Some(dst) if !policy.authorizer.allows(&dst, self.local.contains(&dst.ip()), &peer_id) => {
                    (StatusCode::FORBIDDEN, format!("{peer_id} is not allowed to reach {dst}"))
                }
                Some(dst) => {
                    let facts = FlowFacts {
                        id: d.flow.clone(),
                        direction: "inbound",
                        process: None,
                        source: Some(peer_id.clone()),
                        serial: Some(serial.clone()),
                        destination: dst,
                        peer: Some(remote.to_string()),
                    };
                    let http = policy.authorizer.protocol(dst.port()) == crate::config::Protocol::Http;
                    drop(policy);
                    // Registered before the service is dialled: a revocation meanwhile closes it.
                    match self.inputs.registry.register_checked(facts, Some(chain.clone()), self.inputs.live.deny_list()) {
                        Err(why) => (StatusCode::FORBIDDEN, why),
                        Ok(registration) => {
                            let flow = registration.flow.clone();
                            let connected = tokio::select! {
                                connected = Box::pin(connect_marked(dst, self.inputs.mark, self.limits.dial_timeout.0)) => Some(connected),
                                () = flow.closed() => None,
                            };
                            match (connected, flow.closed_because()) {
                                // Closed while it dialled: the closer recorded the decision.
                                (_, Some(why)) => {
                                    closed = true;
                                    (StatusCode::FORBIDDEN, why)
                                }
                                (None, None) => (StatusCode::FORBIDDEN, "closed by idgate".to_string()),
                                (Some(Err(e)), None) => (StatusCode::BAD_GATEWAY, format!("connecting to {dst}: {e}")),
                                (Some(Ok(tcp)), None) if http => {
                                    let identity = self.identity_header.value(self.inputs.credentials.server_id(), &peer_id, cert);
                                    // Both paths boxed: the task's size is per open flow, and each
                                    // flow should carry only the state of the path it takes.
                                    return Box::pin(self.forward_http(request.into_body(), respond, tcp, identity, d, registration)).await;
                                }
                                (Some(Ok(tcp)), None) => return Box::pin(self.forward(request.into_body(), respond, tcp, d, registration)).await,
                            }
                        }
                    }
                }
            };
            d.verdict = match status {
                _ if closed => Verdict::Closed,
                StatusCode::FORBIDDEN => Verdict::Denied,
                StatusCode::BAD_GATEWAY => Verdict::Unreachable,
                _ => Verdict::BadRequest,
            };
            d.detail = Some(format!("{detail} (tunnel from {remote}, certificate serial {serial})"));
            self.inputs.metrics.inbound(d.verdict);
            if self.refusals.stream_trail(d.verdict) {
                self.inputs.trail.refused(&d);
            }
            if !closed {
                self.inputs.decisions.record(d); // a closed flow's is the closer's
            }
            let response = Response::builder().status(status).body(()).expect("static response");
            let _ = respond.send_response(response, true);
        }
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
        self.inputs.metrics.inbound(Verdict::Allowed);
        self.inputs.decisions.record(d);
        Some(send)
    }

    /// Answers now; the future it returns is the flow while it runs, holding only what that needs.
    fn forward(
        &self,
        body: h2::RecvStream,
        mut respond: SendResponse<Bytes>,
        tcp: TcpStream,
        d: Decision,
        registration: Registration,
    ) -> impl Future<Output = ()> + '_ {
        let active = self.inputs.metrics.flow_guard();
        let accepted = self.accept(&mut respond, d).map(|send| (send, registration));
        async move {
            let _active = active;
            let Some((send, registration)) = accepted else { return };
            let flow = &registration.flow;
            match splice(tcp, send, body, flow).await {
                Ok((to_peer, from_peer)) => tracing::debug!(flow = %flow.facts.id, to_peer, from_peer, "inbound flow closed"),
                Err(e) => tracing::debug!(flow = %flow.facts.id, error = %e, "inbound flow reset"),
            }
            self.inputs.trail.ended(flow, Verdict::Allowed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_peer_says_about_a_flow_is_kept_within_bounds() {
        assert_eq!(peer_flow_id(Some("host-a-12.7")).as_deref(), Some("host-a-12.7"));
        assert_eq!(peer_flow_id(Some(&"f".repeat(MAX_PEER_FLOW_ID + 1))), None);
        assert_eq!(peer_flow_id(Some("")), None);
        let huge = "exe=/".to_string() + &"x".repeat(1 << 20);
        let kept = peer_process(&huge);
        assert!(kept.len() < MAX_PEER_PROCESS + 40 && kept.ends_with(&format!("({} bytes cut)", huge.len() - MAX_PEER_PROCESS)), "{}", kept.len());
        assert_eq!(peer_process("pid=1;uid=0"), "pid=1;uid=0");
    }
}
