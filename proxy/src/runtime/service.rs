//! The service manager's notify protocol (systemd `Type=notify`): READY only once the
//! listeners are bound, the table is installed and the TLS self-test passed; RELOADING and
//! STOPPING around those; and the watchdog, pinged only while every worker thread's heartbeat
//! advances, so a data path that hangs (not only one that dies) gets the service restarted,
//! with the table left in place and flows refused meanwhile. Without `NOTIFY_SOCKET` (not
//! under systemd) each call does nothing.
use sd_notify::NotifyState;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn send(states: &[NotifyState]) {
    tracing::debug!(?states, "notify");
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, "could not notify the service manager");
    }
}

pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn reloading() {
    send(&[NotifyState::Reloading]);
}

pub fn reloaded(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn stopping(status: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

/// In the proxies' environment: the pid of the main process that started them.
pub const PARENT_ENV: &str = "IDGATE_MAIN_PID";

pub fn parent_pid() -> u32 {
    rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32)
}

/// Whether this process is a proxy started by the main process (still its parent).
pub fn supervised() -> bool {
    std::env::var(PARENT_ENV).ok().and_then(|p| p.parse::<u32>().ok()).is_some_and(|p| p == parent_pid())
}

/// The watchdog interval the service manager set for this process: WATCHDOG_PID names it,
/// or the service's main process that started this proxy (see `main_process`).
fn watchdog_usec() -> Option<u64> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok().filter(|u| *u > 0)?;
    let pid: u32 = std::env::var("WATCHDOG_PID").ok()?.parse().ok()?;
    (pid == std::process::id() || (supervised() && pid == parent_pid())).then_some(usec)
}

/// Pings the watchdog at half its interval (when the service manager set one) as long as
/// every worker's heartbeat moved since the last ping; names the stuck workers otherwise.
pub async fn watchdog(beats: Vec<Arc<AtomicU64>>) {
    let Some(usec) = watchdog_usec() else {
        return std::future::pending().await;
    };
    // Never faster than the heartbeats can show progress.
    let every = Duration::from_micros(usec / 2).max(crate::runtime::workers::HEARTBEAT * 2);
    tracing::info!(interval_ms = every.as_millis() as u64, "watchdog enabled: pinging while every worker thread turns");
    let mut last: Vec<u64> = beats.iter().map(|b| b.load(Ordering::Relaxed)).collect();
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let now: Vec<u64> = beats.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        let stuck: Vec<usize> = now.iter().zip(&last).enumerate().filter(|(_, (n, l))| n == l).map(|(i, _)| i).collect();
        if stuck.is_empty() {
            send(&[NotifyState::Watchdog]);
        } else {
            tracing::error!(?stuck, "worker thread(s) stopped turning: not pinging the watchdog, so the service manager restarts idgate");
        }
        last = now;
    }
}
