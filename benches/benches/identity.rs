//! Flow identity lookup cost with the procfs backend (sock_diag + procfs), warm and cold.
use criterion::{criterion_group, criterion_main, Criterion};
use idgate::identity::{FlowIdentity, ProcfsBackend};
use std::net::{TcpListener, TcpStream};

fn lookup(c: &mut Criterion) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (src, dst) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
    let warm = ProcfsBackend::default();
    warm.process_of(src, dst).unwrap();
    let mut g = c.benchmark_group("identity");
    g.bench_function("procfs_lookup_warm_owner", |b| b.iter(|| warm.process_of(src, dst).unwrap()));
    // A new backend each time: the owner is found by walking /proc (the first flow of a process).
    g.bench_function("procfs_lookup_cold_owner", |b| b.iter(|| ProcfsBackend::default().process_of(src, dst).unwrap()));
    g.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
