//! SVID minting and a full TLS 1.3 mTLS handshake in memory, with idgate's own configs.
use criterion::{criterion_group, criterion_main, Criterion};
use idgate::credential::{init_embedded_ca, CertificateAuthority, Credentials, TrustBundle, CA_KEY_FILE};
use idgate::spiffe::SpiffeId;
use rustls::pki_types::ServerName;
use std::sync::Arc;
use std::time::Duration;

pub fn credentials(dir: &std::path::Path) -> Credentials {
    let cert = init_embedded_ca(dir, "bench.idgate").unwrap();
    let ca = CertificateAuthority::load(&cert, &dir.join(CA_KEY_FILE)).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der.clone()).unwrap();
    let bundle = TrustBundle { roots: Arc::new(roots), trust_domain: "bench.idgate".into(), expiries: Vec::new() };
    let server = SpiffeId::parse("spiffe://bench.idgate/idgate/host/b").unwrap();
    let addresses = idgate::credential::HostAddresses::Configured(vec![[127, 0, 0, 1].into()]);
    Credentials::new(ca, bundle, server, addresses, Duration::from_secs(3600)).unwrap()
}

fn pump(
    from: &mut impl std::ops::DerefMut<Target = rustls::ConnectionCommon<impl rustls::SideData>>,
    to: &mut impl std::ops::DerefMut<Target = rustls::ConnectionCommon<impl rustls::SideData>>,
) {
    let mut buf = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut buf).unwrap();
    }
    let mut rd = &buf[..];
    while !rd.is_empty() {
        to.read_tls(&mut rd).unwrap();
    }
    to.process_new_packets().unwrap();
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let creds = credentials(dir.path());
    let mut g = c.benchmark_group("credential");
    let mut n = 0u64;
    g.bench_function("svid_mint_new_identity", |b| {
        b.iter(|| {
            n += 1;
            creds.workload(&SpiffeId::parse(&format!("spiffe://bench.idgate/w/{n}")).unwrap()).unwrap()
        })
    });
    let client_config = creds.workload(&SpiffeId::parse("spiffe://bench.idgate/w/client").unwrap()).unwrap().client_config.clone();
    let server_config = creds.server_config();
    g.bench_function("mtls13_handshake_in_memory", |b| {
        b.iter(|| {
            let mut client = rustls::ClientConnection::new(client_config.clone(), ServerName::try_from("127.0.0.1").unwrap()).unwrap();
            let mut server = rustls::ServerConnection::new(server_config.clone()).unwrap();
            while client.is_handshaking() || server.is_handshaking() {
                pump(&mut client, &mut server);
                pump(&mut server, &mut client);
            }
            assert!(server.peer_certificates().is_some());
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
