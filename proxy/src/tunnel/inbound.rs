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

/// Why a CONNECT stream is not forwarded: the answer's status and the decision's verdict.
#[derive(Debug, thiserror::Error)]
pub(super) enum Refusal {
    #[error("not a CONNECT to ip:port")]
    NotConnect,
    #[error("{0}")]
    Revoked(String),
    #[error("{0} is neither a local address nor a backend an [[inbound]] rule names")]
    Elsewhere(SocketAddr),
    #[error("{id} is not allowed to reach {dst}")]
    NotAllowed { id: SpiffeId, dst: SocketAddr },
    /// Closed while it dialled (a revocation or reload): the closer records the decision.
    #[error("{0}")]
    Closed(String),
    #[error("connecting to {dst}: {source}")]
    Unreachable { dst: SocketAddr, source: std::io::Error },
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Refusal::NotConnect => StatusCode::BAD_REQUEST,
            Refusal::Revoked(_) | Refusal::Elsewhere(_) | Refusal::NotAllowed { .. } | Refusal::Closed(_) => StatusCode::FORBIDDEN,
            Refusal::Unreachable { .. } => StatusCode::BAD_GATEWAY,
        }
    }

    fn verdict(&self) -> Verdict {
        match self {
            Refusal::NotConnect => Verdict::BadRequest,
            Refusal::Revoked(_) | Refusal::Elsewhere(_) | Refusal::NotAllowed { .. } => Verdict::Denied,
            Refusal::Closed(_) => Verdict::Closed,
            Refusal::Unreachable { .. } => Verdict::Unreachable,
        }
    }
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
        respond: SendResponse<Bytes>,
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
            let refusal = match self.authorize(dst, &peer_id, chain) {
                Err(refusal) => refusal,
                Ok((dst, http)) => {
                    let facts = FlowFacts {
                        id: d.flow.clone(),
                        direction: "inbound",
                        process: None,
                        source: Some(peer_id.clone()),
                        serial: Some(serial.clone()),
                        destination: dst,
                        peer: Some(remote.to_string()),
                    };
                    // Registered before the service is dialled: a revocation meanwhile closes it.
                    match self.inputs.registry.register_checked(facts, Some(chain.clone()), self.inputs.live.deny_list()) {
                        Err(why) => Refusal::Revoked(why),
                        Ok(registration) => {
                            let tcp = match self.dial(dst, &registration).await {
                                Ok(tcp) => tcp,
                                Err(refusal) => return self.refuse(respond, d, refusal, (remote, &serial)),
                            };
                            if http {
                                let identity = self.identity_header.value(self.inputs.credentials.server_id(), &peer_id, cert);
                                // Both paths boxed: the task's size is per open flow, and each
                                // flow should carry only the state of the path it takes.
                                return Box::pin(self.forward_http(request.into_body(), respond, tcp, identity, d, registration)).await;
                            }
                            return Box::pin(self.forward(request.into_body(), respond, tcp, d, registration)).await;
                        }
                    }
                }
            };
            self.refuse(respond, d, refusal, (remote, &serial));
        }
    }

    /// Whether `peer_id` may reach `dst` now: the destination and whether it is an HTTP one.
    fn authorize(&self, dst: Option<SocketAddr>, peer_id: &SpiffeId, chain: &PeerChain) -> Result<(SocketAddr, bool), Refusal> {
        let dst = dst.ok_or(Refusal::NotConnect)?;
        if let Some(why) = self.inputs.live.revoked().why_chain(chain) {
            return Err(Refusal::Revoked(why));
        }
        let policy = self.inputs.live.policy();
        let local = self.local.contains(&dst.ip());
        if !local && !policy.authorizer.forwards_to(&dst) {
            return Err(Refusal::Elsewhere(dst));
        }
        if !policy.authorizer.allows(&dst, local, peer_id) {
            return Err(Refusal::NotAllowed { id: peer_id.clone(), dst });
        }
        Ok((dst, policy.authorizer.protocol(dst.port()) == crate::config::Protocol::Http))
    }

    /// Dials the service, unless the flow is closed meanwhile (a revocation).
    async fn dial(&self, dst: SocketAddr, registration: &Registration) -> Result<TcpStream, Refusal> {
        let flow = &registration.flow;
        let connected = tokio::select! {
            connected = Box::pin(connect_marked(dst, self.inputs.mark, self.limits.dial_timeout.0)) => Some(connected),
            () = flow.closed() => None,
        };
        match (connected, flow.closed_because()) {
            // Closed while it dialled: the closer recorded the decision.
            (_, Some(why)) => Err(Refusal::Closed(why)),
            (None, None) => Err(Refusal::Revoked("closed by idgate".to_string())),
            (Some(Err(e)), None) => Err(Refusal::Unreachable { dst, source: e }),
            (Some(Ok(tcp)), None) => Ok(tcp),
        }
    }

    /// Answers the stream with the refusal's status, and records it (but a flow closed while it
    /// dialled, whose decision is the closer's).
    fn refuse(&self, mut respond: SendResponse<Bytes>, mut d: Decision, refusal: Refusal, (remote, serial): (SocketAddr, &str)) {
        d.verdict = refusal.verdict();
        d.detail = Some(format!("{refusal} (tunnel from {remote}, certificate serial {serial})"));
        self.inputs.metrics.inbound(d.verdict);
        if self.refusals.stream_trail(d.verdict) {
            self.inputs.trail.refused(&d);
        }
        if !matches!(refusal, Refusal::Closed(_)) {
            self.inputs.decisions.record(d); // a closed flow's is the closer's
        }
        let response = Response::builder().status(refusal.status()).body(()).expect("static response");
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
