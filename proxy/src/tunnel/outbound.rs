//! Outbound: accept a redirected workload connection, find who opened it, and carry it as one
//! HTTP/2 CONNECT stream to the peer idgate under that workload's SVID. Anything that goes
//! wrong resets the workload's connection: nothing leaves in plaintext unless the config
//! says `default_action = "passthrough"` for unidentified processes.
use super::pool::{Lease, Pool, PoolKey};
use super::ProxyInputs;
use super::{splice_connect, ConnectSpliceError, FLOW_HEADER, PROCESS_HEADER};
use crate::config::{DefaultAction, Protocol};
use crate::identity::{Identities, Workload};
use crate::observe::decisions::Decision;
use crate::observe::flows::FlowFacts;
use crate::observe::Verdict;
use crate::sys::socket::{connect_marked, set_abortive_close};
use bytes::Bytes;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// At most this much of what the workload sent before its tunnel stream opened rides along
/// with the CONNECT headers.
const EARLY_READ: usize = 16 * 1024;

pub struct Outbound {
    pub inputs: Arc<ProxyInputs>,
    pub identities: Arc<Identities>,
    /// This worker's pool: a flow and its tunnel connection stay on one thread.
    pub pool: Arc<Pool>,
    /// Shared by every worker's Outbound: flow ids stay unique per host.
    pub flows: Arc<AtomicU64>,
    /// This host's inbound side: its policy also decides local callers of protected ports.
    pub inbound: Arc<super::inbound::Inbound>,
    /// Strict mode: protected ports are reachable only through idgate, from here too.
    pub strict: bool,
    /// Where flows went, so that a workload's next process can have its connections warmed.
    pub history: Arc<crate::prewarm::History>,
}

/// Where an HTTP-aware flow goes.
pub(super) struct HttpRoute {
    /// The flow's original destination.
    pub dst: SocketAddr,
    /// The names it is known by (`OutboundRule::names`).
    pub names: Arc<[crate::config::HostPattern]>,
    /// The peer idgate that serves it, unless `origin` says idgate originates TLS itself.
    pub peer: SocketAddr,
    pub origin: Option<Arc<crate::http::Origin>>,
}

/// How decision records name a process: `exe(pid)`.
pub(super) fn process_label(workload: &Workload) -> String {
    if let Some(r) = &workload.process.routed_from {
        return format!("routed from {} on {}", r.address, r.interface);
    }
    match &workload.process.container_id {
        Some(id) => format!("{}({}) in container {}", workload.process.exe, workload.process.tgid, id.get(..12).unwrap_or(id)),
        None => format!("{}({})", workload.process.exe, workload.process.tgid),
    }
}

impl Outbound {
    /// Who opened the flow from `src` to `dst` that this host accepted on `local`: its process
    /// (here, or in a container), or for a flow routed from a machine behind this host, its
    /// site. Redirected flows of this host's own processes arrive over loopback.
    fn identify(&self, policy: &crate::policy::live::Policy, local: SocketAddr, src: SocketAddr, dst: SocketAddr) -> Result<Arc<Workload>, Refusal> {
        match self.identities.resolve(src, dst, &policy.selector, policy.generation) {
            Err(crate::identity::IdentityError::NoSocket { .. }) if !local.ip().is_loopback() => {
                site_workload(&policy.selector, local, src).ok_or(Refusal::Routed { src, dst })
            }
            other => other.map_err(Refusal::from),
        }
    }
}

/// A flow routed through this host from a machine behind it: the site rule for the interface
/// it came in on (the one holding the address the table redirected it to) and its source.
fn site_workload(selector: &crate::identity::Selector, local: SocketAddr, src: SocketAddr) -> Option<Arc<Workload>> {
    let [interface] = <[String; 1]>::try_from(crate::sys::netif::holders_of(local.ip())).ok()?;
    let id = selector.site(&interface, &src.ip())?;
    Some(Arc::new(Workload::routed(interface, src.ip(), id)))
}

/// Where a TCP flow with an identity goes, and as whom.
struct TcpRoute {
    dst: SocketAddr,
    peer: SocketAddr,
    workload: Arc<Workload>,
    id: crate::spiffe::SpiffeId,
}

/// A registered flow and its open CONNECT stream.
type Opened = (crate::observe::flows::Registration, Lease, h2::SendStream<Bytes>, h2::client::ResponseFuture);

/// The flow's local address (where the table redirected it) and its original source and
/// destination. The workload's real address may differ from `client`: NAT can rewrite the
/// source port.
fn redirected_tuple(stream: &TcpStream, client: SocketAddr) -> Result<(SocketAddr, SocketAddr, SocketAddr), Refusal> {
    let local = stream.local_addr().map_err(Refusal::NoOriginalDst)?;
    match crate::intercept::original_tuple(local, client) {
        Ok(t) if t.dst != local => Ok((local, t.src, t.dst)),
        Ok(_) => Err(Refusal::NoOriginalDst(std::io::Error::other("connection was not redirected"))),
        Err(e) => Err(Refusal::NoOriginalDst(e)),
    }
}

/// Why a flow did not go through; the workload sees a reset either way.
#[derive(Debug, thiserror::Error)]
pub(super) enum Refusal {
    #[error("{id} is not allowed to reach local port {port}")]
    LocalDenied { id: crate::spiffe::SpiffeId, port: u16 },
    #[error("connecting to {dst}: {source}")]
    LocalUnreachable { dst: SocketAddr, source: std::io::Error },
    #[error("no original flow in conntrack: {0}")]
    NoOriginalDst(std::io::Error),
    #[error("destination {0} matches no [[outbound]] rule")]
    NoRoute(SocketAddr),
    #[error("{0}")]
    Identity(#[from] crate::identity::IdentityError),
    #[error("flow {src} -> {dst} was routed through this host: no process here or in a container of [containers] networks opened it, and no site rule ([[workload]] interface and sources) names its source on the interface it came in on")]
    Routed { src: SocketAddr, dst: SocketAddr },
    #[error("process matches no workload rule and default_action = \"deny\"")]
    NoWorkloadRule,
    #[error("minting SVID: {0}")]
    Svid(anyhow::Error),
    #[error("{0}")]
    Dial(#[from] super::pool::DialError),
    #[error("opening tunnel stream to {peer}: {source}")]
    Stream { peer: SocketAddr, source: h2::Error },
    #[error("waiting for the answer of peer idgate {peer}: {source}")]
    Answer { peer: SocketAddr, source: std::io::Error },
    #[error("peer idgate {peer} answered {status}")]
    PeerStatus { peer: SocketAddr, status: http::StatusCode },
    #[error("workload connection failed before it was tunneled: {0}")]
    ClientGone(std::io::Error),
    #[error("{0}")]
    Revoked(String),
    /// The peer idgate's chain was revoked after its handshake, before the flow took it.
    #[error("peer idgate: {0}")]
    PeerRevoked(String),
    /// A reload or revocation closed the flow while it dialled (and recorded the decision).
    #[error("{0}")]
    Closed(String),
    #[error("passthrough connect to {dst}: {source}")]
    Passthrough { dst: SocketAddr, source: std::io::Error },
}

impl Refusal {
    fn verdict(&self) -> Verdict {
        match self {
            Refusal::PeerStatus { status, .. } if *status == http::StatusCode::FORBIDDEN => Verdict::DeniedByPeer,
            Refusal::Dial(e) if e.is_revoked() => Verdict::Denied,
            Refusal::Dial(e) if e.is_unverified() => Verdict::PeerUnverified,
            Refusal::LocalDenied { .. } => Verdict::Denied,
            Refusal::LocalUnreachable { .. } => Verdict::Unreachable,
            Refusal::PeerStatus { .. } | Refusal::Answer { .. } | Refusal::Dial(_) | Refusal::Stream { .. } | Refusal::Passthrough { .. } => {
                Verdict::PeerUnreachable
            }
            Refusal::NoWorkloadRule | Refusal::Identity(_) | Refusal::Routed { .. } => Verdict::DeniedNoIdentity,
            Refusal::Revoked(_) => Verdict::Revoked,
            Refusal::Closed(_) => Verdict::Closed,
            Refusal::ClientGone(_) => Verdict::ClientGone,
            _ => Verdict::Denied,
        }
    }
}

impl Outbound {
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            match listener.accept().await {
                Ok((stream, client)) => {
                    let this = self.clone();
                    tokio::spawn(this.handle(stream, client));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "outbound accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// One intercepted flow, start to end (an `async move` block rather than an `async fn`:
    /// see `splice_connect`).
    fn handle(self: Arc<Self>, stream: TcpStream, client: SocketAddr) -> impl Future<Output = ()> {
        let _ = stream.set_nodelay(true);
        let active = self.inputs.metrics.flow_guard();
        // Unique per host across restarts and upgrades (two processes serve at a handover).
        let flow = format!("{}-{}.{}", self.inputs.host, crate::observe::flows::own_pid(), self.flows.fetch_add(1, Ordering::Relaxed));
        let mut decision = Decision::new("outbound", flow);
        decision.verdict = Verdict::Tunneled;
        async move {
            let _active = active;
            match self.forward(stream, client, &mut decision).await {
                Ok(()) => {}
                Err((stream, refusal)) => {
                    if let Some(stream) = stream {
                        set_abortive_close(&stream);
                    }
                    decision.verdict = refusal.verdict();
                    decision.detail = Some(refusal.to_string());
                    self.inputs.metrics.outbound(decision.verdict);
                    self.inputs.trail.refused(&decision);
                    if !matches!(refusal, Refusal::Closed(_)) {
                        self.inputs.decisions.record(decision); // a closed flow's is the closer's
                    }
                }
            }
        }
    }

    #[expect(clippy::manual_async_fn, reason = "per-flow state: see `splice_connect`")]
    fn forward<'a>(
        self: &'a Arc<Self>,
        stream: TcpStream,
        client: SocketAddr,
        d: &'a mut Decision,
    ) -> impl Future<Output = Result<(), (Option<TcpStream>, Refusal)>> + 'a {
        // An `async move` block rather than an `async fn`: see `splice_connect`.
        async move {
            macro_rules! bail {
                ($e:expr) => {
                    return Err((Some(stream), $e.into()))
                };
            }
            let (local, src, dst) = match redirected_tuple(&stream, client) {
                Ok(t) => t,
                Err(e) => bail!(e),
            };
            d.destination = dst.to_string();
            // One snapshot of the policy decides the whole flow.
            let policy = self.inputs.live.policy();
            if self.is_local_protected(&policy, &dst) {
                return Box::pin(self.forward_local(stream, src, dst, d, policy)).await;
            }
            let Some((route, peer)) = policy.route(&dst) else { bail!(Refusal::NoRoute(dst)) };
            let workload = match self.identify(&policy, local, src, dst) {
                Ok(w) => w,
                Err(e) => bail!(e),
            };
            let open = self.identities.open_flow(src);
            d.process = Some(process_label(&workload));
            d.process_info = Some(workload.process.clone());
            let Some(id) = workload.spiffe_id.clone() else {
                if policy.default_action == DefaultAction::Passthrough {
                    return Box::pin(self.passthrough(stream, dst, d)).await;
                }
                bail!(Refusal::NoWorkloadRule)
            };
            d.source_id = Some(id.to_string());
            if let Some(why) = self.inputs.live.revoked().why(Some(&id), None) {
                bail!(Refusal::Revoked(why))
            }
            if policy.routes[route].protocol == Protocol::Http {
                d.detail = Some("http".into());
                let route = HttpRoute { dst, names: policy.names[route].clone(), peer, origin: policy.origins[route].clone() };
                drop(policy);
                // Boxed, like the dial below: a TCP flow's task keeps only the splice's state.
                return Box::pin(self.forward_http(stream, route, workload, id, d.clone())).await;
            }
            drop(policy);
            let result = self.tunnel(stream, TcpRoute { dst, peer, workload, id }, &open, d).await;
            drop(open);
            result
        }
    }

    /// A TCP flow whose workload has an ID: registered, dialled (or a pooled connection
    /// leased), and spliced into one CONNECT stream to `route.peer`.
    #[expect(clippy::manual_async_fn, reason = "per-flow state: see `splice_connect`")]
    fn tunnel<'a>(
        &'a self,
        stream: TcpStream,
        route: TcpRoute,
        open: &'a crate::identity::OpenFlow<'a>,
        d: &'a mut Decision,
    ) -> impl Future<Output = Result<(), (Option<TcpStream>, Refusal)>> + 'a {
        async move {
            macro_rules! bail {
                ($e:expr) => {
                    return Err((Some(stream), $e.into()))
                };
            }
            let TcpRoute { dst, peer, workload, id } = route;
            let issued = match self.inputs.credentials.workload(&id) {
                Ok(i) => i,
                Err(e) => bail!(Refusal::Svid(e)),
            };
            // Usually the workload's whole first request is already here: it then shares the
            // CONNECT's TLS record and packet instead of following in its own.
            let early = match crate::sys::socket::read_queued::<EARLY_READ>(&stream) {
                Ok(early) => early,
                Err(e) => bail!(Refusal::ClientGone(e)),
            };
            let key = PoolKey { peer, source: id };
            let (registration, lease, send, response) = match self.dial_registered(&key, &issued, dst, &workload, d).await {
                Ok(opened) => opened,
                Err(e) => bail!(e),
            };
            let flow = &registration.flow;
            let accepted = std::sync::atomic::AtomicBool::new(false);
            let on_accept = || {
                // Allowed by the peer: log now, so long-lived flows show up while they run.
                accepted.store(true, Ordering::Relaxed);
                self.inputs.metrics.outbound(Verdict::Tunneled);
                self.inputs.decisions.record(d.clone());
            };
            let answer_timeout = self.pool.limits().dial_timeout.0;
            // Boxed, like the HTTP path: each flow's task then holds only the state of the path it took.
            let result = Box::pin(splice_connect(stream, early, (send, response), answer_timeout, flow, on_accept, || open.client_done())).await;
            drop(lease); // the stream slot is free only once the flow is over
            if accepted.load(Ordering::Relaxed) {
                self.inputs.trail.ended(flow, Verdict::Tunneled);
            }
            match result {
                Ok((up, down)) => {
                    self.inputs.metrics.bytes_out.inc_by(up);
                    self.inputs.metrics.bytes_in.inc_by(down);
                    tracing::debug!(flow = %d.flow, up, down, "outbound flow closed");
                    Ok(())
                }
                Err(ConnectSpliceError::Refused(status)) => Err((None, Refusal::PeerStatus { peer, status })),
                Err(ConnectSpliceError::Io(source)) if !accepted.load(Ordering::Relaxed) => Err((None, Refusal::Answer { peer, source })),
                Err(e) => {
                    tracing::debug!(flow = %d.flow, error = %e, "outbound flow reset");
                    Ok(())
                }
            }
        }
    }

    /// The flow registered (before the dial, so that a revocation landing while it dials
    /// closes it) and its stream opened, with the peer's chain checked against the deny list
    /// of now (see `set_peer_chain`).
    async fn dial_registered(
        &self,
        key: &PoolKey,
        issued: &crate::credential::Issued,
        dst: SocketAddr,
        workload: &Workload,
        d: &Decision,
    ) -> Result<Opened, Refusal> {
        let facts = FlowFacts {
            id: d.flow.clone(),
            direction: "outbound",
            process: Some(workload.process.clone()),
            source: Some(key.source.clone()),
            serial: Some(issued.svid.serial.as_str().into()),
            destination: dst,
            peer: Some(key.peer.to_string()),
        };
        let registration = self.inputs.registry.register_checked(facts, None, self.inputs.live.deny_list()).map_err(Refusal::Revoked)?;
        let (lease, send, response) = tokio::select! {
            opened = Box::pin(self.open_stream(key, issued, dst, workload, &d.flow)) => opened?,
            () = registration.flow.closed() => return Err(Refusal::Closed(registration.flow.closed_because().unwrap_or_default())),
        };
        if let Some(why) = registration.flow.closed_because() {
            return Err(Refusal::Closed(why));
        }
        registration.flow.set_peer_chain(lease.chain(), self.inputs.live.deny_list()).map_err(Refusal::PeerRevoked)?;
        Ok((registration, lease, send, response))
    }

    /// Serves warm-up requests (see `prewarm`) on this worker, so that the connections land
    /// in its pool and run on its thread.
    pub async fn warm_loop(self: Arc<Self>, mut requests: tokio::sync::mpsc::Receiver<crate::prewarm::Warm>) {
        while let Some(warm) = requests.recv().await {
            let Ok(issued) = self.inputs.credentials.workload(&warm.source) else { continue };
            for (peer, dst) in warm.targets {
                let this = self.clone();
                let (key, issued) = (PoolKey { peer, source: warm.source.clone() }, issued.clone());
                tokio::spawn(async move {
                    // The lease ends at once; the connection stays pooled for the first flow.
                    match this.pool.lease(&key, &issued, dst).await {
                        Ok(lease) => tracing::debug!(%peer, source = %key.source, fresh = lease.fresh, "tunnel connection warmed"),
                        Err(e) => tracing::debug!(%peer, source = %key.source, error = %e, "warming a tunnel connection failed"),
                    }
                });
            }
        }
        std::future::pending::<()>().await // the control side is gone: nothing more to warm
    }

    pub(super) async fn open_stream(
        &self,
        key: &PoolKey,
        issued: &crate::credential::Issued,
        dst: SocketAddr,
        workload: &Workload,
        flow: &str,
    ) -> Result<(Lease, h2::SendStream<Bytes>, h2::client::ResponseFuture), Refusal> {
        // A pooled connection may have died since it was last used: retry once on a fresh one.
        let mut attempt = 0;
        loop {
            let lease = self.pool.lease(key, issued, dst.ip()).await?;
            match self.connect_request(&lease, key.peer, dst, workload, flow).await {
                Ok((send, response)) => {
                    if lease.fresh {
                        // Remembered per connection, not per flow: warm flows take no lock here.
                        self.history.used(&key.source, (key.peer, dst.ip()));
                    }
                    return Ok((lease, send, response));
                }
                Err(Refusal::Stream { peer, source }) if attempt == 0 && !lease.fresh => {
                    tracing::debug!(%peer, error = %source, "pooled connection failed; re-dialing");
                    self.pool.discard(&lease);
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends the CONNECT headers; the answer is awaited while the workload's bytes already flow.
    async fn connect_request(
        &self,
        lease: &Lease,
        peer: SocketAddr,
        dst: SocketAddr,
        workload: &Workload,
        flow: &str,
    ) -> Result<(h2::SendStream<Bytes>, h2::client::ResponseFuture), Refusal> {
        let stream_err = |source| Refusal::Stream { peer, source };
        // Unique to the flow, so never indexed: encoding it then neither searches the
        // connection's header table nor evicts the entries that do repeat.
        let mut flow_id = http::HeaderValue::from_str(flow).expect("a flow id is a host name and numbers");
        flow_id.set_sensitive(true);
        let request = http::Request::builder()
            .method(http::Method::CONNECT)
            .uri(dst.to_string())
            .header(PROCESS_HEADER, workload.process_header.clone())
            .header(FLOW_HEADER, flow_id)
            .body(())
            .expect("CONNECT request from valid parts");
        let mut sender = lease.sender.clone().ready().await.map_err(stream_err)?;
        let (response, send) = sender.send_request(request, false).map_err(stream_err)?;
        Ok((send, response))
    }

    async fn passthrough(&self, stream: TcpStream, dst: SocketAddr, d: &mut Decision) -> Result<(), (Option<TcpStream>, Refusal)> {
        let mut upstream = match connect_marked(dst, self.inputs.mark, self.pool.limits().dial_timeout.0).await {
            Ok(s) => s,
            Err(source) => return Err((Some(stream), Refusal::Passthrough { dst, source })),
        };
        d.verdict = Verdict::Passthrough;
        self.inputs.metrics.outbound(Verdict::Passthrough);
        self.inputs.decisions.record(d.clone());
        let facts = FlowFacts {
            id: d.flow.clone(),
            direction: "outbound",
            process: d.process_info.clone(),
            source: None,
            serial: None,
            destination: dst,
            peer: None,
        };
        let registration = self.inputs.registry.register(facts);
        let flow = &registration.flow;
        let mut stream = stream;
        tokio::select! {
            copied = tokio::io::copy_bidirectional(&mut stream, &mut upstream) => {
                if let Ok((up, down)) = copied {
                    flow.up.store(up, Ordering::Relaxed);
                    flow.down.store(down, Ordering::Relaxed);
                }
            }
            () = flow.closed() => set_abortive_close(&stream),
        }
        self.inputs.trail.ended(flow, Verdict::Passthrough);
        Ok(())
    }
}
