//! Pooled mTLS + HTTP/2 connections to peer idgates, keyed by (peer, source SPIFFE ID).
//! A warm flow takes a read lock and an atomic increment; only the first flow of a key (or a
//! full connection) pays for a handshake, and concurrent first flows share that one handshake.
//! A connection made with an SVID that has since rotated, or older than `max_connection_age`,
//! takes no new streams and closes when its last stream ends. A peer that stops answering
//! keepalive PINGs has its connection, and every flow on it, closed within `peer_timeout`.
use super::h2_settings::*;
use crate::config::TunnelConfig;
use crate::credential::{addresses_of_cert, spiffe_id_of_cert, Issued};
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
    /// The peer idgate's SPIFFE ID, as its certificate said.
    peer_id: Option<SpiffeId>,
    /// The destination addresses the peer's certificate names: streams to others need a
    /// connection of their own (verified for them).
    covers: Vec<IpAddr>,
    svid_generation: u64,
    active: AtomicU32,
    closed: Arc<AtomicBool>,
    idle_since: Mutex<Instant>,
    born: Instant,
}

impl Conn {
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
        self.conn.peer_id.as_ref()
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
}

impl DialError {
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
    pub dials: AtomicU64,
    key_exchanges: crate::metrics::KeyExchanges,
}

pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

impl Pool {
    /// `key_exchanges` counts its handshakes by the group they used.
    pub fn new(mark: u32, limits: TunnelConfig, key_exchanges: crate::metrics::KeyExchanges) -> Self {
        Pool { conns: RwLock::new(HashMap::new()), dialing: Mutex::new(HashMap::new()), mark, limits, dials: AtomicU64::new(0), key_exchanges }
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
        let mut conns = self.conns.write();
        let list = conns.entry(key.clone()).or_default();
        let max_age = self.limits.max_connection_age.0;
        list.retain(|c| !c.closed.load(Ordering::Acquire) && c.svid_generation == issued.svid.generation && c.born.elapsed() < max_age);
        list.push(conn.clone());
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
        let tcp = crate::socket::connect_marked(peer, self.mark, dial_timeout).await.map_err(|source| DialError::Connect { peer, source })?;
        crate::socket::set_peer_timeout(&tcp, self.limits.peer_timeout.0);
        let connector = TlsConnector::from(issued.client_config.clone());
        let name = rustls::pki_types::ServerName::IpAddress(dst.into());
        let tls = tokio::time::timeout(dial_timeout, connector.connect(name, crate::socket::buffered(tcp)))
            .await
            .unwrap_or_else(|_| Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake timed out")))
            .map_err(|source| DialError::Tls { peer, source })?;
        let group = crate::credential::negotiated_group(tls.get_ref().1);
        self.key_exchanges.get_or_create(&crate::metrics::KeyExchangeLabels { side: "client", group }).inc();
        let leaf = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
        let peer_id = leaf.and_then(|c| spiffe_id_of_cert(c).ok());
        let covers = leaf.and_then(|c| addresses_of_cert(c).ok()).unwrap_or_default();
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
        let flag = closed.clone();
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
            }
            flag.store(true, Ordering::Release);
        });
        tracing::info!(%peer, source = %key.source, peer_id = ?peer_id, key_exchange = group, "tunnel connection established");
        Ok(Conn {
            sender,
            peer_id,
            covers,
            svid_generation: issued.svid.generation,
            active: AtomicU32::new(0),
            closed,
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

    /// Closes the connections `doomed` picks (by pool key and peer ID): no new stream uses
    /// them, and they go once their open streams (which a revocation resets) are over.
    /// Returns how many.
    pub fn close_where(&self, doomed: impl Fn(&PoolKey, Option<&SpiffeId>) -> bool) -> usize {
        let mut conns = self.conns.write();
        let mut closed = 0;
        for (key, list) in conns.iter_mut() {
            list.retain(|c| {
                let close = !c.closed.load(Ordering::Acquire) && doomed(key, c.peer_id.as_ref());
                if close {
                    c.closed.store(true, Ordering::Release);
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
