//! Inbound tunnel connections: admission (bounded, cheap until authenticated), the mTLS
//! handshake within a deadline, the caller's identity, then the HTTP/2 connection with
//! keepalive (a dead peer's connection and flows are closed) and a maximum age (GOAWAY: the
//! caller's next connection verifies certificates and policy afresh).
use super::inbound::{Inbound, Peer};
use super::lazy_buffer::LazyBuffer;
use crate::credential::PeerChain;
use crate::http::h2_settings::*;
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// What a refused connection counts as (see `HandshakeRefusals`).
mod reason {
    pub const TIMEOUT: &str = "timeout";
    pub const TLS: &str = "tls";
    pub const IDENTITY: &str = "identity";
    pub const H2: &str = "h2";
}

impl Inbound {
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            match listener.accept().await {
                Ok((tcp, remote)) => {
                    let ticket = match self.handshakes.admit(remote.ip()) {
                        Ok(t) => t,
                        Err(why) => {
                            self.refusals.record(remote, why, "too many handshakes in progress".into());
                            continue; // dropping `tcp` closes it
                        }
                    };
                    let this = self.clone();
                    // The config in force now: a CA rotation replaces it.
                    let acceptor = TlsAcceptor::from(self.inputs.credentials.server_config());
                    tokio::spawn(async move {
                        // A lighter source may take this place (see `HandshakeGate`): then the
                        // handshake ends here, and its connection with it.
                        let authenticated = tokio::select! {
                            a = this.authenticate(acceptor, tcp, remote) => a,
                            () = ticket.evicted() => {
                                this.refusals.record(remote, crate::tunnel::handshake_gate::EVICTED, "handshake place given to a source holding fewer".into());
                                None
                            }
                        };
                        let Some((tls, peer)) = authenticated else { return };
                        drop(ticket);
                        // Boxed: an unauthenticated connection's task stays small.
                        Box::pin(this.run_connection(tls, peer)).await
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "inbound accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// The handshake and the caller's identity, within `handshake_timeout`. An idle connection
    /// holds no TLS state: nothing is set up before its first bytes arrive.
    async fn authenticate(&self, acceptor: TlsAcceptor, tcp: TcpStream, remote: SocketAddr) -> Option<(TlsStream<LazyBuffer>, Peer)> {
        let deadline = Instant::now() + self.limits.handshake_timeout.0;
        let refuse = |reason, detail: String| {
            self.refusals.record(remote, reason, detail);
            None
        };
        // A peek, not readable(): tokio reports a new socket readable before any byte came.
        match tokio::time::timeout_at(deadline, tcp.peek(&mut [0u8; 1])).await {
            Ok(Ok(0)) => return refuse(reason::TLS, "closed before its handshake".into()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return refuse(reason::TLS, e.to_string()),
            Err(_) => return refuse(reason::TIMEOUT, "no handshake within the deadline".into()),
        }
        let _ = tcp.set_nodelay(true);
        crate::sys::socket::set_peer_timeout(&tcp, self.limits.peer_timeout.0);
        let mut tls = match tokio::time::timeout_at(deadline, acceptor.accept(LazyBuffer::new(tcp))).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => return refuse(reason::TLS, format!("mTLS handshake failed: {}", crate::credential::describe_tls_io_error(&e))),
            Err(_) => return refuse(reason::TIMEOUT, "mTLS handshake timed out".into()),
        };
        let group = crate::credential::negotiated_group(tls.get_ref().1);
        self.inputs.metrics.key_exchanges.get_or_create(&crate::observe::metrics::KeyExchangeLabels { side: "server", group }).inc();
        let certs = tls.get_ref().1.peer_certificates().unwrap_or_default();
        let Some((leaf, cas)) = certs.split_first() else { return refuse(reason::IDENTITY, "no client certificate".into()) };
        let id = match self.inputs.credentials.bundle().peer_id(leaf) {
            Ok(id) => id,
            Err(e) => return refuse(reason::IDENTITY, e.to_string()),
        };
        let chain = match PeerChain::read(leaf, cas) {
            Ok(chain) => Arc::new(chain),
            Err(e) => return refuse(reason::IDENTITY, e.to_string()),
        };
        let (serial, cert): (Arc<str>, Arc<[u8]>) = (chain.serials[0].as_str().into(), leaf.as_ref().into());
        tls.get_mut().0.grow(crate::sys::socket::TLS_READ_BUFFER);
        Some((tls, Peer { id, serial, remote, cert, chain }))
    }

    async fn run_connection(self: Arc<Self>, tls: TlsStream<LazyBuffer>, peer: Peer) {
        let remote = peer.remote;
        let handshake = h2::server::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_frame_size(MAX_FRAME)
            .max_send_buffer_size(MAX_SEND_BUFFER)
            .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
            .max_header_list_size(MAX_HEADER_LIST)
            .handshake::<_, Bytes>(tls);
        let mut conn = match tokio::time::timeout(self.limits.dial_timeout.0, handshake).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return self.refusals.record(remote, reason::H2, format!("HTTP/2 handshake: {e}")),
            Err(_) => return self.refusals.record(remote, reason::TIMEOUT, "HTTP/2 handshake timed out".into()),
        };
        tracing::debug!(%remote, peer_id = %peer.id, serial = %peer.serial, "inbound tunnel connection");
        let peer = Arc::new(peer);
        let ping_pong = conn.ping_pong().expect("a new connection hands out its PingPong");
        let keepalive = super::keepalive::watch(ping_pong, self.limits.ping_interval(), self.limits.peer_timeout.0);
        let retire = tokio::time::sleep(self.limits.max_connection_age.0);
        let mut revocations = self.inputs.live.revocations_changed();
        let mut handover = self.retire.subscribe();
        let handed_over = async move {
            let _ = handover.wait_for(|h| *h).await;
        };
        tokio::pin!(keepalive, retire, handed_over);
        let mut retiring = false;
        loop {
            tokio::select! {
                next = conn.accept() => match next {
                    Some(Ok((request, respond))) => {
                        let this = self.clone();
                        tokio::spawn(this.stream(request, respond, peer.clone()));
                    }
                    Some(Err(e)) => {
                        tracing::debug!(%remote, error = %e, "inbound tunnel connection ended");
                        break;
                    }
                    None => break,
                },
                // Leaving the loop drops the connection, which resets every stream on it.
                why = &mut keepalive => {
                    tracing::warn!(%remote, peer_id = %peer.id, "peer idgate taken for dead, closing its tunnel connection and flows: {why}");
                    break;
                }
                _ = &mut retire, if !retiring => {
                    // GOAWAY: open flows finish here, new ones go to a new connection.
                    conn.graceful_shutdown();
                    retiring = true;
                }
                () = &mut handed_over, if !retiring => {
                    conn.graceful_shutdown();
                    retiring = true;
                }
                // A caller whose chain the deny list now names is cut off with its flows (they
                // are closed with a decision record each by the revocation itself).
                Ok(()) = revocations.changed() => if let Some(why) = self.inputs.live.revoked().why_chain(&peer.chain) {
                    tracing::info!(%remote, peer_id = %peer.id, "closing a revoked caller's tunnel connection: {why}");
                    break;
                },
            }
        }
    }
}
