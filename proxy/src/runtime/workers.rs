//! The data path runs thread-per-core: each worker thread has its own single-threaded tokio
//! runtime, its own SO_REUSEPORT listeners (the kernel spreads flows over them), and its own
//! tunnel pool. A flow, its tunnel connection and both of its splice directions then live on
//! one thread, so relaying a request wakes no other thread. With tokio's work-stealing runtime
//! the same host spent twice the CPU per request on cross-thread wake-ups (see the #5 notes).
use crate::runtime::supervise::Supervised;
use crate::tunnel::inbound::Inbound;
use crate::tunnel::outbound::Outbound;
use anyhow::{Context, Result};
use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

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

/// A listening socket that other workers' sockets can share the address of. It carries the
/// bypass `mark`: the table lets only marked listeners take redirected flows.
pub fn bind_shared(addr: SocketAddr, what: &str, mark: u32) -> Result<std::net::TcpListener> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM.cloexec(), Some(Protocol::TCP))?;
    sock.set_mark(mark).with_context(|| format!("marking the {what} listener (needs CAP_NET_ADMIN)"))?;
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

/// What one worker serves: both directions of the data path, and the warm-up requests that
/// fill its tunnel pool ahead of flows (see `prewarm`).
pub struct DataPath {
    pub outbound: Arc<Outbound>,
    pub inbound: Arc<Inbound>,
    pub warm: mpsc::Receiver<crate::prewarm::Warm>,
}

/// Starts a worker thread serving `listeners` until `stop` turns true; flows already open keep
/// running on it until the process exits (the caller drains them).
pub fn spawn(
    index: usize,
    listeners: Listeners,
    path: DataPath,
    stop: watch::Receiver<bool>,
    fatal: mpsc::UnboundedSender<String>,
    beat: Arc<AtomicU64>,
) -> Result<()> {
    let DataPath { outbound, inbound, warm } = path;
    spawn_serving(
        index,
        move || {
            let adopt = |l: std::net::TcpListener| tokio::net::TcpListener::from_std(l).expect("a nonblocking listener inside a runtime");
            let mut loops: Vec<(&'static str, ServeLoop)> =
                listeners.outbound.into_iter().map(|l| ("outbound accept loop", Box::pin(outbound.clone().serve(adopt(l))) as ServeLoop)).collect();
            loops.push(("inbound accept loop", Box::pin(inbound.serve(adopt(listeners.inbound)))));
            loops.push(("warm-up loop", Box::pin(outbound.warm_loop(warm))));
            loops
        },
        stop,
        fatal,
        beat,
    )
}

/// How often a worker's heartbeat advances while its runtime turns.
pub const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(1);

/// An accept loop: it runs until aborted, so its end is always a fault.
pub type ServeLoop = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// The worker thread itself; `loops` builds the accept loops inside its runtime. An accept
/// loop that ends (a panic) would otherwise close its listener unnoticed and shrink the
/// SO_REUSEPORT group, with one worker to nothing: it is reported on `fatal` instead, and
/// the control thread stops the process so that the service manager restarts it. `beat`
/// advances every `HEARTBEAT` while the runtime turns: a thread stuck in a blocking call or a
/// busy loop stops it, and the watchdog (see `service`) stops pinging the service manager.
pub fn spawn_serving(
    index: usize,
    loops: impl FnOnce() -> Vec<(&'static str, ServeLoop)> + Send + 'static,
    mut stop: watch::Receiver<bool>,
    fatal: mpsc::UnboundedSender<String>,
    beat: Arc<AtomicU64>,
) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("building a worker runtime")?;
    std::thread::Builder::new()
        .name(format!("idgate-worker-{index}"))
        .spawn(move || {
            crate::observe::flows::use_shard(index + 1);
            runtime.block_on(async move {
                let mut serving = Supervised::default();
                for (name, l) in loops() {
                    serving.spawn(name, l);
                }
                serving.spawn("heartbeat", async move {
                    loop {
                        beat.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(HEARTBEAT).await;
                    }
                });
                tokio::select! {
                    _ = stop.wait_for(|stopped| *stopped) => serving.abort_all(), // closes this worker's listeners
                    why = serving.first_to_end() => {
                        let _ = fatal.send(format!("worker {index}: {why}"));
                    }
                }
                std::future::pending::<()>().await
            })
        })
        .context("starting a worker thread")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_accept_loop_that_panics_is_reported_as_fatal() {
        let (_stop_tx, stop) = watch::channel(false);
        let (fatal, mut reports) = mpsc::unbounded_channel();
        let loops = || {
            vec![
                ("outbound accept loop", Box::pin(std::future::pending::<()>()) as ServeLoop),
                ("inbound accept loop", Box::pin(async { panic!("listener exploded") }) as ServeLoop),
            ]
        };
        spawn_serving(3, loops, stop, fatal, Default::default()).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let why = loop {
            match reports.try_recv() {
                Ok(why) => break why,
                Err(_) if std::time::Instant::now() < deadline => std::thread::sleep(std::time::Duration::from_millis(10)),
                Err(e) => panic!("no report within 5 s: {e}"),
            }
        };
        assert_eq!(why, "worker 3: inbound accept loop panicked: listener exploded");
    }

    #[test]
    fn a_stopped_worker_reports_nothing() {
        let (stop_tx, stop) = watch::channel(false);
        let (fatal, mut reports) = mpsc::unbounded_channel();
        let beat = Arc::new(AtomicU64::new(0));
        spawn_serving(0, || vec![("accept loop", Box::pin(std::future::pending::<()>()) as ServeLoop)], stop, fatal, beat.clone()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert_eq!(beat.load(Ordering::Relaxed), 1, "the heartbeat did not start");
        stop_tx.send(true).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(reports.try_recv().is_err(), "a worker stopped on purpose reported a fault");
    }
}
