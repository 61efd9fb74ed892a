//! The tunnel on loopback, in one process: a real inbound side (mTLS, authorization, local
//! connect) in front of an echo server, and the client side's connection pool.
//! - connect_stream_warm: open a CONNECT stream on a warm pooled connection and get the 200
//! - copy_64k_round_trip: 64 KiB up and the same 64 KiB back on an open stream
#[path = "credential.rs"]
#[allow(dead_code)]
mod credential_bench;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use idgate::observe::decisions::DecisionLog;
use idgate::observe::metrics::Metrics;
use idgate::spiffe::SpiffeId;
use idgate::tunnel::inbound::Inbound;
use idgate::tunnel::pool::{Pool, PoolKey};
use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MARK: u32 = 0x1d6a_0001;

async fn echo_server() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 1 << 16];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

async fn open(pool: &Pool, key: &PoolKey, issued: &idgate::credential::Issued, dst: SocketAddr) -> (h2::SendStream<Bytes>, h2::RecvStream) {
    let lease = pool.lease(key, issued, dst.ip()).await.unwrap();
    let req = http::Request::builder().method(http::Method::CONNECT).uri(dst.to_string()).body(()).unwrap();
    let mut sender = lease.sender.clone().ready().await.unwrap();
    let (resp, send) = sender.send_request(req, false).unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 200);
    (send, resp.into_body())
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let creds = Arc::new(credential_bench::credentials(dir.path()));
    let (pool, key, issued, echo) = rt.block_on(async {
        let echo = echo_server().await;
        let config = idgate::config::parse(
            std::path::Path::new("bench.toml"),
            &format!("trust_domain = \"bench.idgate\"\n[[inbound]]\nports = [{}]\nallow = [\"spiffe://bench.idgate/w/*\"]\n", echo.port()),
        )
        .unwrap();
        let identity_header =
            idgate::http::IdentityHeader::new(http::HeaderName::from_static("x-forwarded-client-cert"), idgate::config::IdentityFormat::Xfcc);
        let limits = idgate::config::TunnelConfig::default();
        let metrics = Arc::new(Metrics::new());
        let inputs = Arc::new(idgate::tunnel::ProxyInputs {
            host: "b".into(),
            credentials: creds.clone(),
            live: idgate::policy::live::Live::new(
                idgate::policy::live::Policy::build(
                    &config,
                    identity_header.name.clone(),
                    idgate::http::exchange::Exchanges::new(
                        Arc::new(idgate::http::JwtIssuer::new(Duration::from_secs(300), "b".into(), None).unwrap()),
                        0,
                        Default::default(),
                    ),
                    0,
                )
                .unwrap(),
                Default::default(),
            ),
            mark: MARK,
            decisions: Arc::new(DecisionLog::new()),
            metrics: metrics.clone(),
            registry: idgate::observe::flows::FlowRegistry::new(1),
            trail: Arc::new(idgate::observe::trail::Trail::open("b".into(), None).unwrap()),
        });
        let inbound = Arc::new(Inbound {
            inputs,
            identity_header: identity_header.clone(),
            limits,
            handshakes: idgate::tunnel::handshake_gate::HandshakeGate::new(limits.max_handshakes, limits.max_handshakes_per_source),
            refusals: Arc::new(idgate::tunnel::refusals::HandshakeRefusals::new(metrics)),
            local: Default::default(),
            flows: Default::default(),
            retire: tokio::sync::watch::channel(false).0,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = listener.local_addr().unwrap();
        tokio::spawn(inbound.serve(listener));
        let id = SpiffeId::parse("spiffe://bench.idgate/w/client").unwrap();
        let issued = creds.workload(&id).unwrap();
        (
            Arc::new(Pool::new(MARK, idgate::config::TunnelConfig::default(), Default::default(), Default::default())),
            PoolKey { peer, source: id },
            issued,
            echo,
        )
    });
    let mut g = c.benchmark_group("tunnel");
    g.bench_function("connect_stream_warm", |b| {
        b.to_async(&rt).iter(|| async {
            let (mut send, _recv) = open(&pool, &key, &issued, echo).await;
            send.send_data(Bytes::new(), true).unwrap();
        })
    });
    let payload = Bytes::from(vec![42u8; 64 * 1024]);
    let (send, recv) = rt.block_on(open(&pool, &key, &issued, echo));
    let stream = Arc::new(tokio::sync::Mutex::new((send, recv)));
    g.throughput(criterion::Throughput::Bytes(2 * payload.len() as u64));
    g.bench_function("copy_64k_round_trip", |b| {
        b.to_async(&rt).iter(|| async {
            let mut guard = stream.lock().await;
            let (send, recv) = &mut *guard;
            let mut data = payload.clone();
            while !data.is_empty() {
                send.reserve_capacity(data.len());
                let n = poll_fn(|cx| send.poll_capacity(cx)).await.unwrap().unwrap();
                send.send_data(data.split_to(n.min(data.len())), false).unwrap();
            }
            let mut got = 0;
            while got < payload.len() {
                let chunk = recv.data().await.unwrap().unwrap();
                got += chunk.len();
                recv.flow_control().release_capacity(chunk.len()).unwrap();
            }
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(Duration::from_secs(4));
    targets = bench
}
criterion_main!(benches);
