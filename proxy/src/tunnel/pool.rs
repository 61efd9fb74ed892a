//! Pooled mTLS + HTTP/2 connections to peer idgates, keyed by (peer, source SPIFFE ID).
//! A warm flow takes a read lock and an atomic increment; only the first flow of a key (or a
//! full connection) pays for a handshake, and concurrent first flows share that one handshake.
//! A connection made with an SVID that has since rotated, or older than `max_connection_age`,
//! takes no new streams and closes when its last stream ends. A peer that stops answering
//! keepalive PINGs has its connection, and every flow on it, closed within `peer_timeout`;
//! a revoked one at once.
use crate::config::TunnelConfig;
use crate::credential::deny_list::DenyList;
use crate::credential::{addresses_of_cert, Issued, PeerChain};
use crate::http::h2_settings::*;
use crate::spiffe::SpiffeId;
use bytes::Bytes;
use h2::client::SendRequest;
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_rustls::TlsConnector;

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct PoolKey {
    pub peer: SocketAddr,
    pub source: SpiffeId,
}

struct Conn {
    sender: SendRequest<Bytes>,
    /// The peer idgate's certificate chain (its SPIFFE ID, serials, its CA's host).
    chain: Option<Arc<PeerChain>>,
    /// The destination addresses the peer's certificate names: streams to others need a
    /// connection of their own (verified for them).
    covers: Vec<IpAddr>,
    svid_generation: u64,
    active: AtomicU32,
    closed: Arc<AtomicBool>,
    /// Ends the connection at once, resetting every stream on it.
    abort: Arc<tokio::sync::Notify>,
    idle_since: Mutex<Instant>,
    born: Instant,
}

impl Conn {
    fn close_now(&self) {
        self.closed.store(true, Ordering::Release);
        self.abort.notify_one();
    }

    /// Whether a new stream to `dst` with SVID `generation` may use this connection.
    fn usable(&self, generation: u64, dst: IpAddr, max_age: Duration) -> bool {
        self.svid_generation == generation && !self.closed.load(Ordering::Acquire) && self.covers.contains(&dst) && self.born.elapsed() < max_age
    }
}

/// One stream's claim on a pooled connection; releases the slot when dropped.
pub struct Lease {
    conn: Arc<Conn>,
    pub sender: SendRequest<Bytes>,
    pub fresh: bool,
}

impl Lease {
    /// The peer idgate's SPIFFE ID (for the trail and `idgate flows`).
    pub fn peer_id(&self) -> Option<&SpiffeId> {
        self.conn.chain.as_ref().map(|c| &c.id)
    }

    /// The peer idgate's certificate chain, which revocations are checked against.
    pub fn chain(&self) -> Option<Arc<PeerChain>> {
        self.conn.chain.clone()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.conn.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self.conn.idle_since.lock() = Instant::now();
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("connecting to peer idgate {peer}: {source}")]
    Connect { peer: SocketAddr, source: std::io::Error },
    #[error("TLS with peer idgate {peer}: {}", crate::credential::describe_tls_io_error(source))]
    Tls { peer: SocketAddr, source: std::io::Error },
    #[error("HTTP/2 with peer idgate {peer}: {source}")]
    H2 { peer: SocketAddr, source: h2::Error },
    #[error("peer idgate {peer}: {why}")]
    Revoked { peer: SocketAddr, why: String },
}

impl DialError {
    /// The peer, or a certificate of its chain, is on the deny list.
    pub fn is_revoked(&self) -> bool {
        match self {
            DialError::Revoked { .. } => true,
            DialError::Tls { source, .. } => {
                source.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()).is_some_and(crate::credential::is_revoked_error)
            }
            _ => false,
        }
    }

    /// The peer answered but its certificate was refused: not the destination's host, not an
    /// idgate, or not chaining to the trust bundle.
    pub fn is_unverified(&self) -> bool {
        let DialError::Tls { source, .. } = self else { return false };
        matches!(source.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()), Some(rustls::Error::InvalidCertificate(_)))
    }
}

pub struct Pool {
    conns: RwLock<HashMap<PoolKey, Vec<Arc<Conn>>>>,
    dialing: Mutex<HashMap<PoolKey, Arc<tokio::sync::Mutex<()>>>>,
    mark: u32,
    limits: TunnelConfig,
    /// The deny list in force (shared with the verifiers and the policy).
    revoked: Arc<DenyList>,
    pub dials: AtomicU64,
    key_exchanges: crate::observe::metrics::KeyExchanges,
}

pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

impl Pool {
    /// `key_exchanges` counts its handshakes by the group they used; `revoked` is the deny
    /// list in force.
    pub fn new(mark: u32, limits: TunnelConfig, key_exchanges: crate::observe::metrics::KeyExchanges, revoked: Arc<DenyList>) -> Self {
        let (conns, dialing) = (RwLock::new(HashMap::new()), Mutex::new(HashMap::new()));
        Pool { conns, dialing, mark, limits, revoked, dials: AtomicU64::new(0), key_exchanges }
    }

    pub fn limits(&self) -> TunnelConfig {
        self.limits
    }

    /// Live connections (a dead or closed one leaves the pool at the next sweep).
    pub fn connection_count(&self) -> usize {
        self.conns.read().values().flatten().filter(|c| !c.closed.load(Ordering::Acquire)).count()
    }

    /// A stream slot for a flow to `dst` on a live connection for `key` made with `issued`'s
    /// current SVID, to a peer whose certificate names `dst`.
    pub async fn lease(&self, key: &PoolKey, issued: &Issued, dst: IpAddr) -> Result<Lease, DialError> {
        if let Some(lease) = self.try_lease(key, issued.svid.generation, dst) {
            return Ok(lease);
        }
        let gate = self.dialing.lock().entry(key.clone()).or_default().clone();
        let _dialing = gate.lock().await;
        if let Some(lease) = self.try_lease(key, issued.svid.generation, dst) {
            return Ok(lease); // a concurrent flow finished the handshake for us
        }
        let conn = Arc::new(self.dial(key, issued, dst).await?);
        conn.active.store(1, Ordering::Release);
        {
            let mut conns = self.conns.write();
            let list = conns.entry(key.clone()).or_default();
            let max_age = self.limits.max_connection_age.0;
            list.retain(|c| !c.closed.load(Ordering::Acquire) && c.svid_generation == issued.svid.generation && c.born.elapsed() < max_age);
            list.push(conn.clone());
        }
        // The peer was verified against the deny list of the moment of its handshake; one
        // swapped in since, whose revocation sweep may have run before the connection was
        // pooled, is read now (the sweep takes the pool's lock after swapping the list in).
        let list = self.revoked.load();
        let why = list.why(Some(&key.source), None).or_else(|| conn.chain.as_ref().and_then(|c| list.why_chain(c)));
        if let Some(why) = why {
            conn.close_now();
            return Err(DialError::Revoked { peer: key.peer, why });
        }
        Ok(Lease { sender: conn.sender.clone(), conn, fresh: true })
    }

    fn try_lease(&self, key: &PoolKey, generation: u64, dst: IpAddr) -> Option<Lease> {
        let conns = self.conns.read();
        for conn in conns.get(key)? {
            if !conn.usable(generation, dst, self.limits.max_connection_age.0) {
                continue;
            }
            let prev = conn.active.fetch_add(1, Ordering::AcqRel);
            if prev < MAX_STREAMS_PER_CONNECTION {
                return Some(Lease { conn: conn.clone(), sender: conn.sender.clone(), fresh: false });
            }
            conn.active.fetch_sub(1, Ordering::AcqRel);
        }
        None
    }

    /// Dials `key.peer` and accepts it only as the host of `dst` (see IdgateServerVerifier).
    async fn dial(&self, key: &PoolKey, issued: &Issued, dst: IpAddr) -> Result<Conn, DialError> {
        let peer = key.peer;
        self.dials.fetch_add(1, Ordering::Relaxed);
        let dial_timeout = self.limits.dial_timeout.0;
        let tcp = crate::sys::socket::connect_marked(peer, self.mark, dial_timeout).await.map_err(|source| DialError::Connect { peer, source })?;
        crate::sys::socket::set_peer_timeout(&tcp, self.limits.peer_timeout.0);
        let connector = TlsConnector::from(issued.client_config.clone());
        let name = rustls::pki_types::ServerName::IpAddress(dst.into());
        let tls = tokio::time::timeout(dial_timeout, connector.connect(name, crate::sys::socket::buffered(tcp)))
            .await
            .unwrap_or_else(|_| Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake timed out")))
            .map_err(|source| DialError::Tls { peer, source })?;
        let group = crate::credential::negotiated_group(tls.get_ref().1);
        self.key_exchanges.get_or_create(&crate::observe::metrics::KeyExchangeLabels { side: "client", group }).inc();
        let certs = tls.get_ref().1.peer_certificates().unwrap_or_default();
        let chain = certs.split_first().and_then(|(leaf, cas)| PeerChain::read(leaf, cas).ok()).map(Arc::new);
        let covers = certs.first().and_then(|c| addresses_of_cert(c).ok()).unwrap_or_default();
        let (sender, mut connection) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_frame_size(MAX_FRAME)
            .max_send_buffer_size(MAX_SEND_BUFFER)
            .enable_push(false)
            .max_header_list_size(MAX_HEADER_LIST)
            .handshake::<_, Bytes>(tls)
            .await
            .map_err(|source| DialError::H2 { peer, source })?;
        let closed = Arc::new(AtomicBool::new(false));
        let abort = Arc::new(tokio::sync::Notify::new());
        let (flag, aborted) = (closed.clone(), abort.clone());
        let ping_pong = connection.ping_pong().expect("a new connection hands out its PingPong");
        let (interval, peer_timeout) = (self.limits.ping_interval(), self.limits.peer_timeout.0);
        tokio::spawn(async move {
            tokio::select! {
                ended = connection => if let Err(e) = ended {
                    tracing::debug!(%peer, error = %e, "tunnel connection ended");
                },
                // Dropping the connection here resets every stream on it.
                why = super::keepalive::watch(ping_pong, interval, peer_timeout) => {
                    tracing::warn!(%peer, "peer idgate taken for dead, closing its tunnel connection and flows: {why}");
                }
                () = aborted.notified() => tracing::info!(%peer, "tunnel connection closed with its flows: revoked"),
            }
            flag.store(true, Ordering::Release);
        });
        let peer_id = chain.as_ref().map(|c| c.id.to_string());
        tracing::info!(%peer, source = %key.source, peer_id = ?peer_id, key_exchange = group, "tunnel connection established");
        Ok(Conn {
            sender,
            chain,
            covers,
            svid_generation: issued.svid.generation,
            active: AtomicU32::new(0),
            closed,
            abort,
            idle_since: Mutex::new(Instant::now()),
            born: Instant::now(),
        })
    }

    /// Drops closed connections, and unused ones idle for longer than `IDLE_TIMEOUT` or older
    /// than `max_connection_age` (in use, they close after their last stream).
    pub fn sweep(&self) {
        let max_age = self.limits.max_connection_age.0;
        let mut conns = self.conns.write();
        for list in conns.values_mut() {
            list.retain(|c| {
                let unused = c.active.load(Ordering::Acquire) == 0;
                let expired = unused && (c.idle_since.lock().elapsed() > IDLE_TIMEOUT || c.born.elapsed() >= max_age);
                !c.closed.load(Ordering::Acquire) && !expired
            });
        }
        conns.retain(|_, list| !list.is_empty());
        let live: Vec<PoolKey> = conns.keys().cloned().collect();
        drop(conns);
        self.dialing.lock().retain(|k, gate| live.contains(k) || Arc::strong_count(gate) > 1);
    }

    /// Closes the connections `doomed` picks (by pool key and peer chain) at once: no new
    /// stream uses them, and every stream on them is reset (a revocation). Returns how many.
    pub fn close_where(&self, doomed: impl Fn(&PoolKey, Option<&PeerChain>) -> bool) -> usize {
        let mut conns = self.conns.write();
        let mut closed = 0;
        for (key, list) in conns.iter_mut() {
            list.retain(|c| {
                let close = !c.closed.load(Ordering::Acquire) && doomed(key, c.chain.as_deref());
                if close {
                    c.close_now();
                    closed += 1;
                }
                !close
            });
        }
        conns.retain(|_, list| !list.is_empty());
        closed
    }

    /// Marks a connection unusable after a failed stream open, so the next lease re-dials.
    pub fn discard(&self, lease: &Lease) {
        lease.conn.closed.store(true, Ordering::Release);
    }
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
