//! Every open flow, in both directions: what `idgate flows` lists, what a reload or a
//! revocation re-checks (and closes when the new policy denies it), and what the attribution
//! trail records when the flow ends. Each worker thread registers its flows in its own shard,
//! so the data path takes an uncontended lock per flow; the control thread reads all shards.
use crate::credential::deny_list::{DenyList, Revocations};
use crate::credential::PeerChain;
use crate::identity::ProcessInfo;
use crate::spiffe::SpiffeId;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;

/// This process's id, read once: flow ids and trail records carry it (two idgate processes
/// serve at an upgrade's handover), and getpid is a system call every time.
pub fn own_pid() -> u32 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PID.get_or_init(std::process::id)
}

/// What is known of a flow once it is authorized. Fixed for its life.
#[derive(Debug, Clone)]
pub struct FlowFacts {
    /// `host-a-12`: the outbound side's id, which the inbound side records too.
    pub id: String,
    pub direction: &'static str,
    /// The local process (outbound and local flows).
    pub process: Option<Arc<ProcessInfo>>,
    /// The workload's SPIFFE ID (outbound, local) or the authenticated caller's (inbound).
    pub source: Option<SpiffeId>,
    /// The serial of the certificate that identified `source`: our SVID (outbound) or the
    /// caller's (inbound).
    pub serial: Option<Arc<str>>,
    pub destination: SocketAddr,
    /// The peer idgate's address (outbound), or the caller's address (inbound).
    pub peer: Option<String>,
}

/// One open flow: its facts, its byte counts as they grow, and a way to close it.
pub struct OpenFlow {
    pub facts: FlowFacts,
    pub started: Instant,
    pub started_unix_ms: u64,
    /// Workload → destination, and back.
    pub up: AtomicU64,
    pub down: AtomicU64,
    /// Credential rules applied to its requests (HTTP flows; names, never values).
    pub rules: Mutex<Vec<String>>,
    /// Exchanged credentials its requests carried: each source and the expiry of the latest.
    pub credentials: Mutex<Vec<UsedCredential>>,
    /// The peer's certificate chain: the server idgate's (outbound, known once its tunnel
    /// connection is dialled, and for HTTP flows the latest one's) or the caller's (inbound).
    peer_chain: Mutex<Option<Arc<PeerChain>>>,
    close: Notify,
    closed_because: Mutex<Option<String>>,
}

/// An exchanged credential a flow's requests carried (its source's name, never its value).
#[derive(Debug, Clone, serde::Serialize)]
pub struct UsedCredential {
    pub source: String,
    /// Unix seconds.
    pub expires: u64,
}

impl OpenFlow {
    /// Notes that a request carried `source`'s credential, which expires at `expires`.
    pub fn used_credential(&self, source: &str, expires: std::time::SystemTime) {
        let expires = expires.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
        let mut used = self.credentials.lock();
        match used.iter_mut().find(|u| u.source == source) {
            Some(u) => u.expires = expires,
            None => used.push(UsedCredential { source: source.to_owned(), expires }),
        }
    }

    pub fn peer_chain(&self) -> Option<Arc<PeerChain>> {
        self.peer_chain.lock().clone()
    }

    /// Records the peer's chain and checks the flow against the deny list in force, which may
    /// have changed while the flow waited for its dial: a revocation swaps the list in before it
    /// looks at open flows, and the flow's chain is in place before it reads the list here, so
    /// one of the two sees the other. `Err` says why the flow must stop.
    pub fn set_peer_chain(&self, chain: Option<Arc<PeerChain>>, deny: &DenyList) -> Result<(), String> {
        if chain.is_some() {
            *self.peer_chain.lock() = chain;
        }
        match self.revoked_by(&deny.load()) {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }

    /// Why the deny list stops this flow, if it does: its own identity or certificate, or any
    /// certificate of its peer's chain.
    pub fn revoked_by(&self, list: &Revocations) -> Option<String> {
        if list.is_empty() {
            return None;
        }
        list.why(self.facts.source.as_ref(), self.facts.serial.as_deref()).or_else(|| self.peer_chain().and_then(|c| list.why_chain(&c)))
    }

    /// How the trail and `idgate flows` name the peer: an outbound flow's peer idgate by its
    /// address and SPIFFE ID, an inbound flow's caller by its address.
    pub fn peer_label(&self) -> Option<String> {
        match (self.facts.direction, &self.facts.peer, self.peer_chain()) {
            ("outbound", Some(addr), Some(chain)) => Some(format!("{addr} {}", chain.id)),
            (_, peer, _) => peer.clone(),
        }
    }

    /// Asks the flow's task to close it (both ends, a reset) and says why.
    pub fn close(&self, why: String) {
        *self.closed_because.lock() = Some(why);
        self.close.notify_one();
    }

    /// Resolves when `close` was called: the flow's task selects on it beside the copy.
    pub async fn closed(&self) {
        self.close.notified().await
    }

    pub fn closed_because(&self) -> Option<String> {
        self.closed_because.lock().clone()
    }
}

pub struct FlowRegistry {
    shards: Vec<Mutex<HashMap<u64, Arc<OpenFlow>>>>,
    next: AtomicU64,
}

/// Removes the flow from the registry when its task ends, however it ends.
pub struct Registration {
    registry: Arc<FlowRegistry>,
    shard: usize,
    key: u64,
    pub flow: Arc<OpenFlow>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.shards[self.shard].lock().remove(&self.key);
    }
}

thread_local! {
    static SHARD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// This thread's flows go to registry shard `shard` (a worker thread's own; flows registered
/// anywhere else share shard 0), so registering one locks nothing another worker holds.
pub fn use_shard(shard: usize) {
    SHARD.with(|s| s.set(shard));
}

impl FlowRegistry {
    /// One shard per worker thread (and one for the control thread's own flows).
    pub fn new(shards: usize) -> Arc<Self> {
        Arc::new(FlowRegistry { shards: (0..shards.max(1)).map(|_| Mutex::new(HashMap::new())).collect(), next: AtomicU64::new(0) })
    }

    /// Registers a flow and checks it against the deny list in force (see `set_peer_chain`):
    /// a revocation that landed since the flow was last checked is seen here, and any later
    /// one finds the flow registered. `Err` says why the flow must not go on.
    pub fn register_checked(self: &Arc<Self>, facts: FlowFacts, chain: Option<Arc<PeerChain>>, deny: &DenyList) -> Result<Registration, String> {
        let registration = self.register(facts);
        registration.flow.set_peer_chain(chain, deny)?;
        Ok(registration)
    }

    pub fn register(self: &Arc<Self>, facts: FlowFacts) -> Registration {
        let shard = SHARD.with(|s| s.get()) % self.shards.len();
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        let flow = Arc::new(OpenFlow {
            facts,
            started: Instant::now(),
            started_unix_ms: SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64,
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            rules: Mutex::new(Vec::new()),
            credentials: Mutex::new(Vec::new()),
            peer_chain: Mutex::new(None),
            close: Notify::new(),
            closed_because: Mutex::new(None),
        });
        self.shards[shard].lock().insert(key, flow.clone());
        Registration { registry: self.clone(), shard, key, flow }
    }

    /// Every open flow (a copy of the list: the flows go on while the caller looks).
    pub fn all(&self) -> Vec<Arc<OpenFlow>> {
        self.shards.iter().flat_map(|s| s.lock().values().cloned().collect::<Vec<_>>()).collect()
    }

    /// Closes every open flow `verdict` returns a reason for; returns how many.
    pub fn close_where(&self, mut verdict: impl FnMut(&OpenFlow) -> Option<String>) -> usize {
        let mut closed = 0;
        for flow in self.all() {
            if let Some(why) = verdict(&flow) {
                flow.close(why);
                closed += 1;
            }
        }
        closed
    }
}

/// A flow's client-side byte stream, counting what passes: reads are the client's bytes (up),
/// writes what it is sent (down). For flows whose bytes an HTTP engine moves.
pub struct Counted<T> {
    inner: T,
    flow: Arc<OpenFlow>,
}

impl<T> Counted<T> {
    pub fn new(inner: T, flow: Arc<OpenFlow>) -> Self {
        Counted { inner, flow }
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Counted<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        self.flow.up.fetch_add((buf.filled().len() - before) as u64, Ordering::Relaxed);
        polled
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Counted<T> {
    fn poll_write(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>, data: &[u8]) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write(cx, data);
        if let std::task::Poll::Ready(Ok(n)) = &polled {
            self.flow.down.fetch_add(*n as u64, Ordering::Relaxed);
        }
        polled
    }

    fn poll_flush(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(id: &str) -> FlowFacts {
        FlowFacts {
            id: id.into(),
            direction: "inbound",
            process: None,
            source: Some(SpiffeId::parse("spiffe://td/app/a").unwrap()),
            serial: None,
            destination: "10.0.0.1:80".parse().unwrap(),
            peer: None,
        }
    }

    #[tokio::test]
    async fn flows_are_listed_while_open_and_closed_on_request() {
        let reg = FlowRegistry::new(2);
        let a = reg.register(facts("a"));
        use_shard(1); // as a worker thread would: its flows in a shard of its own
        let b = reg.register(facts("b"));
        use_shard(0);
        assert_eq!(reg.all().len(), 2);
        assert_eq!(reg.close_where(|f| (f.facts.id == "b").then(|| "denied by the new policy".to_string())), 1);
        tokio::time::timeout(std::time::Duration::from_secs(1), b.flow.closed()).await.expect("close reaches the flow's task");
        assert_eq!(b.flow.closed_because().as_deref(), Some("denied by the new policy"));
        assert!(a.flow.closed_because().is_none());
        drop(b);
        assert_eq!(reg.all().iter().map(|f| f.facts.id.clone()).collect::<Vec<_>>(), ["a"]);
    }

    #[test]
    fn a_flow_registers_only_while_neither_it_nor_its_peer_is_revoked() {
        use crate::config::deny_list::Entry;
        let reg = FlowRegistry::new(1);
        let list = |entries: &[&str]| DenyList::from_pointee(Revocations::new(entries.iter().map(|e| Entry::parse(e).unwrap()).collect::<Vec<_>>()));
        let peer = || {
            Some(Arc::new(PeerChain {
                id: SpiffeId::parse("spiffe://td/idgate/host/b").unwrap(),
                serials: vec!["0b".into(), "ca".into()],
                hosts: vec![SpiffeId::parse("spiffe://td/idgate/host/b").unwrap()],
            }))
        };
        let mut outbound = facts("o");
        outbound.direction = "outbound";
        outbound.peer = Some("10.0.0.2:15008".into());
        let err = reg.register_checked(outbound.clone(), peer(), &list(&["spiffe://td/app/a"])).err().unwrap();
        assert_eq!(err, "spiffe://td/app/a is revoked");
        let err = reg.register_checked(outbound.clone(), peer(), &list(&["ca"])).err().unwrap();
        assert_eq!(err, "CA certificate serial ca in the chain of spiffe://td/idgate/host/b is revoked");
        assert!(reg.all().is_empty(), "a refused flow stays out of the registry");
        // Registered before its dial: the chain comes later, and is checked then.
        let flow = reg.register_checked(outbound, None, &list(&["spiffe://td/idgate/host/b"])).unwrap();
        assert_eq!(flow.flow.peer_label().as_deref(), Some("10.0.0.2:15008"));
        let err = flow.flow.set_peer_chain(peer(), &list(&["spiffe://td/idgate/host/b"])).unwrap_err();
        assert_eq!(err, "spiffe://td/idgate/host/b is revoked");
        assert_eq!(flow.flow.peer_label().as_deref(), Some("10.0.0.2:15008 spiffe://td/idgate/host/b"));
        assert_eq!(flow.flow.revoked_by(&list(&["0b"]).load()).as_deref(), Some("certificate serial 0b is revoked"));
        assert!(flow.flow.revoked_by(&list(&[]).load()).is_none());
    }
}
