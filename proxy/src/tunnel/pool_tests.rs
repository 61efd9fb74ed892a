//! The pool against a real peer on loopback (TCP, mTLS with idgate's configs, HTTP/2 CONNECT):
//! connections are shared and remember their peer's chain, a revoked peer is refused at the
//! handshake, and closing a revoked peer's connection resets its streams at once.
use super::{Pool, PoolKey};
use crate::config::deny_list::Entry;
use crate::config::TunnelConfig;
use crate::credential::deny_list::{DenyList, Revocations};
use crate::credential::test_pki::{credentials, deny, host_id, id, Root};
use crate::credential::Credentials;
use bytes::Bytes;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// A peer idgate's tunnel side, reduced to what the pool sees: mTLS with `creds`, then every
/// CONNECT answered 200 and held open.
async fn peer(creds: Arc<Credentials>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind((LOCAL, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = tokio_rustls::TlsAcceptor::from(creds.server_config());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let mut conn = h2::server::handshake(tls).await.unwrap();
                let mut held = Vec::new();
                while let Some(Ok((request, mut respond))) = conn.accept().await {
                    let send = respond.send_response(http::Response::new(()), false).unwrap();
                    held.push((request, send));
                }
            });
        }
    });
    addr
}

struct Setup {
    _dir: tempfile::TempDir,
    client: Credentials,
    pool: Pool,
    list: Arc<DenyList>,
    key: PoolKey,
}

async fn setup() -> Setup {
    let (dir, root) = (tempfile::tempdir().unwrap(), Root::new());
    let grant: &[&str] = &["spiffe://fleet.idgate/app/*"];
    let list = deny(&[]);
    let client = credentials(root.host_ca(dir.path(), "a", Some(grant), time::Duration::days(1)), &[root.der()], "a", list.clone());
    let server = credentials(root.host_ca(dir.path(), "b", Some(grant), time::Duration::days(1)), &[root.der()], "b", Default::default());
    let addr = peer(Arc::new(server)).await;
    // Mark 0: these sockets are this test's own, no table redirects them.
    let pool = Pool::new(0, TunnelConfig::default(), Default::default(), list.clone());
    Setup { _dir: dir, client, pool, list, key: PoolKey { peer: addr, source: id("/app/alice") } }
}

fn revoke(list: &DenyList, entries: &[&str]) {
    list.store(Arc::new(Revocations::new(entries.iter().map(|e| Entry::parse(e).unwrap()).collect::<Vec<_>>())));
}

/// A CONNECT stream on `lease`, answered: its body ends only when the peer or the pool ends it
/// (while the sending half is kept).
async fn open_stream(lease: &super::Lease) -> (h2::SendStream<Bytes>, h2::RecvStream) {
    let request = http::Request::builder().method(http::Method::CONNECT).uri("127.0.0.1:9").body(()).unwrap();
    let mut sender = lease.sender.clone().ready().await.unwrap();
    let (response, send) = sender.send_request(request, false).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    (send, response.into_body())
}

#[tokio::test]
async fn a_pooled_connection_is_shared_and_remembers_its_peers_chain() {
    let s = setup().await;
    let issued = s.client.workload(&s.key.source).unwrap();
    let first = s.pool.lease(&s.key, &issued, LOCAL).await.unwrap();
    let second = s.pool.lease(&s.key, &issued, LOCAL).await.unwrap();
    assert!(first.fresh && !second.fresh);
    assert_eq!(s.pool.dials.load(Ordering::Relaxed), 1);
    let chain = second.chain().unwrap();
    assert_eq!((chain.id.clone(), chain.serials.len(), chain.hosts.clone()), (host_id("b"), 2, vec![host_id("b")]));
}

#[tokio::test]
async fn a_revoked_peer_is_refused_at_the_handshake_and_says_why() {
    let s = setup().await;
    let issued = s.client.workload(&s.key.source).unwrap();
    for entry in ["spiffe://fleet.idgate/idgate/host/b", "spiffe://fleet.idgate/idgate/host/*"] {
        revoke(&s.list, &[entry]);
        let err = s.pool.lease(&s.key, &issued, LOCAL).await.err().unwrap();
        assert!(err.is_revoked() && err.to_string().contains("spiffe://fleet.idgate/idgate/host/b is revoked"), "{err}");
    }
    assert_eq!(s.pool.connection_count(), 0);
    revoke(&s.list, &[]);
    assert!(s.pool.lease(&s.key, &issued, LOCAL).await.unwrap().fresh);
}

#[tokio::test]
async fn closing_a_revoked_peers_connection_resets_its_streams_at_once() {
    let s = setup().await;
    let issued = s.client.workload(&s.key.source).unwrap();
    let lease = s.pool.lease(&s.key, &issued, LOCAL).await.unwrap();
    let (_up, mut body) = open_stream(&lease).await;
    let other = PoolKey { peer: s.key.peer, source: id("/app/bob") };
    let bob = s.pool.lease(&other, &s.client.workload(&other.source).unwrap(), LOCAL).await.unwrap();
    let (_bobs_up, mut bobs_body) = open_stream(&bob).await;
    let closed = s.pool.close_where(|key, chain| key.source == id("/app/alice") && chain.is_some_and(|c| c.id == host_id("b")));
    assert_eq!(closed, 1);
    let ended = tokio::time::timeout(Duration::from_secs(1), body.data()).await.expect("the stream was not reset within a second");
    assert!(!matches!(ended, Some(Ok(_))), "{ended:?}");
    // Another connection to the same peer is left alone, and the next lease dials afresh.
    assert!(tokio::time::timeout(Duration::from_millis(200), bobs_body.data()).await.is_err(), "bob's stream ended too");
    drop(lease);
    assert!(s.pool.lease(&s.key, &issued, LOCAL).await.unwrap().fresh);
    assert_eq!(s.pool.dials.load(Ordering::Relaxed), 3);
}
