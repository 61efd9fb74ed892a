//! Flow identity lookup cost with the procfs backend (sock_diag + procfs), warm and cold, and
//! what a new process's workload rules cost on top (an `exe` rule's look at its path, a
//! `sha256` rule's kept digest).
use criterion::{criterion_group, criterion_main, Criterion};
use idgate::identity::{read_process, FlowIdentity, ProcfsBackend, Selector};
use std::net::{TcpListener, TcpStream};
use std::path::Path;

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

fn selector(rule: &str) -> Selector {
    let text = format!("trust_domain = \"t\"\n[[workload]]\nspiffe_id = \"spiffe://t/w\"\n{rule}\n");
    Selector::new(idgate::config::parse(Path::new("bench.toml"), &text).unwrap().workloads)
}

/// Rules are decided once per process (and again only when it changes): these run for a new
/// process's first flow, not for every flow.
fn select(c: &mut Criterion) {
    let me = read_process(std::process::id()).unwrap();
    let uid = selector(&format!("uid = {}", me.uid));
    let exe = selector(&format!("exe = \"{}\"", me.exe));
    let digest = std::process::Command::new("sha256sum").arg(&me.exe).output().unwrap().stdout;
    let sha256 = selector(&format!("sha256 = \"{}\"", String::from_utf8_lossy(&digest[..64])));
    assert!(sha256.select(&me).is_some(), "hashed once, kept from now on");
    let mut g = c.benchmark_group("identity");
    g.bench_function("select_uid_rule", |b| b.iter(|| uid.select(&me).unwrap()));
    g.bench_function("select_exe_rule", |b| b.iter(|| exe.select(&me).unwrap()));
    g.bench_function("select_sha256_rule_kept", |b| b.iter(|| sha256.select(&me).unwrap()));
    g.finish();
}

criterion_group!(benches, lookup, select);
criterion_main!(benches);
