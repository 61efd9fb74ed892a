//! Outbound flows to `protocol = "http"` destinations: requests are rewritten for the source
//! workload's identity, then carried through a CONNECT stream to the peer idgate, or over TLS
//! that idgate originates to an external endpoint.
use super::outbound::{HttpRoute, Outbound};
use super::pool::PoolKey;
use super::StreamIo;
use crate::config::HostPattern;
use crate::http::forged::Protected;
use crate::http::rules::Plan;
use crate::http::{BoxIo, Failure, Flow, Origin, RewriteError, Rewriter, Upstream};
use crate::identity::Workload;
use crate::observe::decisions::Decision;
use crate::observe::flows::{Counted, FlowFacts, OpenFlow};
use crate::observe::Verdict;
use crate::spiffe::SpiffeId;
use http::{request, StatusCode, Version};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::net::TcpStream;

/// What every HTTP-aware outbound flow shares, whichever way its requests leave.
struct Common {
    outbound: Arc<Outbound>,
    source: SpiffeId,
    dst: SocketAddr,
    names: Arc<[HostPattern]>,
    decision: Decision,
    /// The flow in the registry: its byte counts, the rules applied, how to close it.
    flow: Arc<OpenFlow>,
    /// The flow's decision is logged once, when the first upstream accepts it.
    logged: AtomicBool,
    /// The rules for this destination, made at the first request under each policy.
    plan: arc_swap::ArcSwapOption<Planned>,
}

/// A plan and the rewriter whose rules it indexes.
struct Planned {
    rewriter: Arc<Rewriter>,
    plan: Plan,
}

impl Common {
    /// The plan of the rules in force now: a reload's new rules apply to open keep-alive
    /// flows too.
    fn planned(&self) -> Arc<Planned> {
        let rewriter = self.outbound.inputs.live.policy().rewriter.clone();
        if let Some(planned) = self.plan.load_full().filter(|p| Arc::ptr_eq(&p.rewriter, &rewriter)) {
            return planned;
        }
        let plan = rewriter.plan(&Flow { source: &self.source, dst: self.dst, names: &self.names });
        let planned = Arc::new(Planned { rewriter, plan });
        self.plan.store(Some(planned.clone()));
        planned
    }

    fn protected(&self) -> Arc<Protected> {
        self.planned().plan.protected().clone()
    }

    fn body_to_read(&self, parts: &request::Parts) -> Option<u64> {
        let planned = self.planned();
        planned.rewriter.body_to_read(&planned.plan, &Flow { source: &self.source, dst: self.dst, names: &self.names }, parts)
    }

    async fn rewrite(&self, parts: &mut request::Parts, body: Option<&[u8]>) -> Result<(), Failure> {
        let flow = Flow { source: &self.source, dst: self.dst, names: &self.names };
        let planned = self.planned();
        let rewriter = &planned.rewriter;
        match rewriter.apply_planned(&planned.plan, &flow, parts, body).await {
            Ok(applied) => {
                tracing::debug!(flow = %self.decision.flow, method = %parts.method, rules = applied.rules.len(), "http request rewritten");
                if !applied.rules.is_empty() {
                    let mut names = self.flow.rules.lock();
                    for i in applied.rules {
                        let name = rewriter.rule_name(i);
                        if !names.iter().any(|n| n == name) {
                            names.push(name.to_owned());
                        }
                    }
                }
                for (source, expires) in applied.credentials {
                    self.flow.used_credential(&source.0, expires);
                }
                Ok(())
            }
            Err(e @ RewriteError::Misdirected { .. }) => Err(Failure::new(StatusCode::MISDIRECTED_REQUEST, e.to_string())),
            // Fail closed: the request would leave without the credential it must carry.
            Err(e) => {
                tracing::warn!(flow = %self.decision.flow, source = %self.source, error = %e, "credential unavailable; request refused");
                Err(Failure::new(StatusCode::SERVICE_UNAVAILABLE, format!("credential unavailable ({e})")))
            }
        }
    }

    fn accepted(&self, verdict: Verdict) {
        if !self.logged.swap(true, Ordering::Relaxed) {
            let mut d = self.decision.clone();
            d.verdict = verdict;
            self.outbound.inputs.metrics.outbound(verdict);
            self.outbound.inputs.decisions.record(d);
        }
    }

    fn answered(&self, status: StatusCode, failure: Option<&Failure>) {
        self.outbound.inputs.metrics.http_request("outbound", status);
        if let Some(f) = failure {
            let mut d = self.decision.clone();
            d.verdict = match f.status {
                StatusCode::FORBIDDEN => Verdict::DeniedByPeer,
                StatusCode::SERVICE_UNAVAILABLE => Verdict::CredentialUnavailable,
                StatusCode::MISDIRECTED_REQUEST => Verdict::Misdirected,
                _ => Verdict::PeerUnreachable,
            };
            d.detail = Some(f.why.clone());
            self.outbound.inputs.metrics.outbound(d.verdict);
            self.outbound.inputs.trail.refused(&d);
            self.outbound.inputs.decisions.record(d);
        }
    }
}

/// Requests go to the peer idgate, one CONNECT stream per upstream connection.
struct Tunnel {
    common: Arc<Common>,
    peer: SocketAddr,
    workload: Arc<Workload>,
}

impl Upstream for Tunnel {
    async fn open(&self, _version: Version) -> Result<BoxIo, Failure> {
        let c = &self.common;
        let unreachable = |e: String| Failure::new(StatusCode::BAD_GATEWAY, e);
        // Looked up per connection: the SVID may have rotated since the flow began.
        let issued = c.outbound.inputs.credentials.workload(&c.source).map_err(|e| unreachable(format!("minting SVID: {e}")))?;
        let key = PoolKey { peer: self.peer, source: c.source.clone() };
        let (lease, send, answer) =
            c.outbound.open_stream(&key, &issued, c.dst, &self.workload, &c.decision.flow).await.map_err(|e| unreachable(e.to_string()))?;
        // This connection's peer, checked against the deny list of now (see `set_peer_chain`).
        if let Err(why) = c.flow.set_peer_chain(lease.chain(), c.outbound.inputs.live.deny_list()) {
            c.flow.close(format!("revocation: {why}"));
            return Err(Failure::new(StatusCode::FORBIDDEN, why));
        }
        let common = self.common.clone();
        let answer_timeout = c.outbound.pool.limits().dial_timeout.0;
        Ok(Box::new(StreamIo::client((send, answer), answer_timeout, move || common.accepted(Verdict::Tunneled), lease)))
    }

    fn body_to_read(&self, parts: &request::Parts) -> Option<u64> {
        self.common.body_to_read(parts)
    }

    async fn rewrite(&self, parts: &mut request::Parts, body: Option<&[u8]>) -> Result<(), Failure> {
        self.common.rewrite(parts, body).await
    }

    fn protected(&self) -> Arc<Protected> {
        self.common.protected()
    }

    fn answered(&self, status: StatusCode, failure: Option<&Failure>) {
        self.common.answered(status, failure)
    }
}

/// Requests go straight to the external endpoint over TLS that idgate originates.
struct Tls {
    common: Arc<Common>,
    origin: Arc<Origin>,
}

impl Upstream for Tls {
    async fn open(&self, version: Version) -> Result<BoxIo, Failure> {
        let c = &self.common;
        let io = self.origin.connect(c.dst.ip(), c.outbound.inputs.mark, version).await?;
        c.accepted(Verdict::TlsOriginated);
        Ok(io)
    }

    fn body_to_read(&self, parts: &request::Parts) -> Option<u64> {
        self.common.body_to_read(parts)
    }

    async fn rewrite(&self, parts: &mut request::Parts, body: Option<&[u8]>) -> Result<(), Failure> {
        self.common.rewrite(parts, body).await?;
        if parts.version == Version::HTTP_2 {
            // The workload said http://; the request now travels as https.
            let mut uri = std::mem::take(&mut parts.uri).into_parts();
            uri.scheme = Some(http::uri::Scheme::HTTPS);
            parts.uri = http::Uri::from_parts(uri).map_err(|e| Failure::new(StatusCode::BAD_REQUEST, format!("request URI: {e}")))?;
        }
        Ok(())
    }

    fn protected(&self) -> Arc<Protected> {
        self.common.protected()
    }

    fn answered(&self, status: StatusCode, failure: Option<&Failure>) {
        self.common.answered(status, failure)
    }
}

impl Outbound {
    /// Serves an intercepted HTTP connection until it closes; refuses it if its identity was
    /// revoked since it was checked.
    pub(super) async fn forward_http(
        self: &Arc<Self>,
        stream: TcpStream,
        route: HttpRoute,
        workload: Arc<Workload>,
        source: SpiffeId,
        decision: Decision,
    ) -> Result<(), (Option<TcpStream>, super::outbound::Refusal)> {
        let HttpRoute { dst, names, peer, origin } = route;
        let verdict = if origin.is_some() { Verdict::TlsOriginated } else { Verdict::Tunneled };
        let facts = FlowFacts {
            id: decision.flow.clone(),
            direction: "outbound",
            process: Some(workload.process.clone()),
            source: Some(source.clone()),
            serial: self.inputs.credentials.workload(&source).ok().map(|i| i.svid.serial.as_str().into()),
            destination: dst,
            peer: Some(match &origin {
                Some(o) => format!("{} (TLS originated)", o.server_name.to_str()),
                None => peer.to_string(),
            }),
        };
        let registration = match self.inputs.registry.register_checked(facts, None, self.inputs.live.deny_list()) {
            Ok(r) => r,
            Err(why) => return Err((Some(stream), super::outbound::Refusal::Revoked(why))),
        };
        let flow = registration.flow.clone();
        let common = Arc::new(Common {
            outbound: self.clone(),
            source,
            dst,
            names,
            decision,
            flow: flow.clone(),
            logged: AtomicBool::new(false),
            plan: Default::default(),
        });
        let downstream = Counted::new(stream, flow.clone());
        let result = tokio::select! {
            served = async {
                match origin {
                    Some(origin) => crate::http::serve(downstream, Tls { common: common.clone(), origin }).await,
                    None => crate::http::serve(downstream, Tunnel { common: common.clone(), peer, workload }).await,
                }
            } => served,
            () = flow.closed() => Ok(()),
        };
        if let Err(e) = result {
            tracing::debug!(flow = %flow.facts.id, error = %e, "http flow ended with an error");
        }
        if common.logged.load(Ordering::Relaxed) {
            self.inputs.trail.ended(&flow, verdict);
        }
        Ok(())
    }
}
