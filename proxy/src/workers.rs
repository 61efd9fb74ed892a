//! The data path runs thread-per-core: each worker thread has its own single-threaded tokio
//! runtime, its own SO_REUSEPORT listeners (the kernel spreads flows over them), and its own
//! tunnel pool. A flow, its tunnel connection and both of its splice directions then live on
//! one thread, so relaying a request wakes no other thread. With tokio's work-stealing runtime
//! the same host spent twice the CPU per request on cross-thread wake-ups (see the #5 notes).
use crate::tunnel::inbound::Inbound;
use crate::tunnel::outbound::Outbound;
use anyhow::{Context, Result};
use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;

/// `[listen] workers`, else a quarter of the cores (at least one): the proxy shares the host
/// with its workloads, and on a busy 2-core host one worker did 21k req/s where two did 16k,
/// because each wake-up of a single thread handles more flows' events. `IDGATE_WORKER_THREADS`
/// overrides both (benchmarks, containers).
pub fn count(configured: Option<std::num::NonZeroUsize>) -> usize {
    std::env::var("IDGATE_WORKER_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .or(configured.map(|n| n.get()))
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get() / 4).unwrap_or(1).max(1))
}

/// Fails if anything already listens on `addr`. SO_REUSEPORT would otherwise let a second
/// idgate of the same uid join our group silently and take a share of the flows; a socket
/// without it cannot bind next to a listener, reuseport or not.
pub fn ensure_free(addr: SocketAddr, what: &str) -> Result<()> {
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM.cloexec(), Some(Protocol::TCP))?;
    probe.set_reuse_address(true)?; // TIME_WAIT leftovers of a previous run are not a conflict
    if addr.is_ipv6() {
        probe.set_only_v6(true)?;
    }
    probe.bind(&addr.into()).with_context(|| format!("{what} address {addr} is in use (is another idgate running?)"))
}

/// A listening socket that other workers' sockets can share the address of.
pub fn bind_shared(addr: SocketAddr, what: &str) -> Result<std::net::TcpListener> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM.cloexec(), Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.bind(&addr.into()).with_context(|| format!("binding {what} listener {addr}"))?;
    sock.listen(4096).with_context(|| format!("listening on {what} {addr}"))?;
    sock.set_nonblocking(true)?;
    Ok(sock.into())
}

/// One worker's sockets: the outbound capture port (IPv4, and IPv6 when the host has it) and
/// the inbound tunnel port.
pub struct Listeners {
    pub outbound: Vec<std::net::TcpListener>,
    pub inbound: std::net::TcpListener,
}

/// Starts a worker thread serving `listeners` until `stop` turns true; flows already open keep
/// running on it until the process exits (the caller drains them).
pub fn spawn(index: usize, listeners: Listeners, outbound: Arc<Outbound>, inbound: Arc<Inbound>, mut stop: watch::Receiver<bool>) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("building a worker runtime")?;
    std::thread::Builder::new()
        .name(format!("idgate-worker-{index}"))
        .spawn(move || {
            runtime.block_on(async move {
                let mut serving = tokio::task::JoinSet::new();
                let adopt = |l: std::net::TcpListener| tokio::net::TcpListener::from_std(l).expect("a nonblocking listener inside a runtime");
                for l in listeners.outbound {
                    serving.spawn(outbound.clone().serve(adopt(l)));
                }
                serving.spawn(inbound.serve(adopt(listeners.inbound)));
                let _ = stop.wait_for(|stopped| *stopped).await;
                serving.abort_all(); // closes this worker's listeners
                std::future::pending::<()>().await
            })
        })
        .context("starting a worker thread")?;
    Ok(())
}
