//! The control thread's background work (rotation, sweeps, summaries, signals) and the drain
//! at the end.
use crate::control::reload::Reloader;
use crate::credential::Credentials;
use crate::observe::flows::FlowRegistry;
use crate::observe::metrics::Metrics;
use crate::tunnel::pool::Pool;
use crate::tunnel::refusals::HandshakeRefusals;
use anyhow::{bail, Result};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Waits until the open flows have ended or `deadline` passed; those still open then are reset
/// at both ends: closed plainly, a cut stream would look complete to a client that reads to
/// its end (a response without a length, say).
pub async fn drain(metrics: &Metrics, registry: &FlowRegistry, deadline: Instant) {
    while metrics.active_flows.get() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reset = registry.close_where(|_| Some("the drain ended with the flow still open (idgate stopping)".into()));
    if reset > 0 {
        tracing::info!(flows = reset, "the drain ended: resetting the {reset} flow(s) still open at both ends");
        let until = Instant::now() + Duration::from_secs(1);
        while metrics.active_flows.get() > 0 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Identity needs each flow's original tuple from ctnetlink; refuse to start without it
/// rather than guess from addresses NAT may have rewritten.
pub fn probe_conntrack() -> Result<()> {
    let nowhere: SocketAddr = (Ipv4Addr::LOCALHOST, 1).into();
    match crate::intercept::original_tuple(nowhere, nowhere) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Ok(_) => Ok(()),
        Err(e) => {
            bail!("conntrack netlink (ctnetlink) is not usable: {e}; load nf_conntrack_netlink")
        }
    }
}

pub async fn rotate(credentials: Arc<Credentials>) {
    let mut tick = tokio::time::interval(credentials.rotation_check_interval());
    loop {
        tick.tick().await;
        credentials.rotate_due();
    }
}

pub async fn sweep(pools: Vec<Arc<Pool>>) {
    let mut tick = tokio::time::interval(Duration::from_secs(15));
    loop {
        tick.tick().await;
        pools.iter().for_each(|p| p.sweep());
    }
}

/// One log line per interval for refused tunnel connections, however many there were. After
/// a burst of them, the memory their tasks held goes back to the system: glibc keeps freed
/// memory of its per-thread arenas otherwise, and a flood would leave the process large.
pub async fn summarize_refusals(refusals: Arc<HandshakeRefusals>) {
    const EVERY: Duration = Duration::from_secs(10);
    const BURST: u64 = 256;
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tick.tick().await;
        if refusals.log_summary(EVERY.as_secs()) >= BURST {
            // SAFETY: malloc_trim only returns free memory to the system; any thread may call it.
            unsafe { libc::malloc_trim(0) };
        }
    }
}

/// `systemctl reload` (and config tools) send SIGHUP; a refused file is logged by `reload`.
pub async fn reload_on_hangup(reloader: Arc<Reloader>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).expect("installing SIGHUP handler");
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the config");
        let _ = reloader.reload();
    }
}

/// The deny list is read again as soon as its file changes (a rename into place or a write):
/// a revocation reaches open flows within this interval plus the time to close them.
pub async fn watch_revocations(reloader: Arc<Reloader>) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if reloader.revocations_changed() {
            let _ = reloader.revocations();
        }
    }
}

pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
