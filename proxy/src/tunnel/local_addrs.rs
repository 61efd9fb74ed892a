//! Is an address one of this host's own? The inbound side forwards only to local destinations,
//! so a peer cannot use idgate to reach third hosts; the outbound side keeps flows to this
//! host's protected ports on the host. Both ask on every flow, so the answer comes from memory:
//! the kernel's address notifications keep it current, in either direction (an address that
//! moved to another host must stop being local at once), and no flow waits on a re-read.
use crate::sys::netif::{self, AddressEvents};
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

pub struct LocalAddrs {
    shared: Arc<Shared>,
}

struct Shared {
    current: ArcSwap<BTreeSet<IpAddr>>,
    /// Address notifications keep `current` fresh. Without them (no rtnetlink socket, or it
    /// failed) a lookup re-reads the addresses when they are older than `REREAD_AFTER`.
    followed: AtomicBool,
    read_at: Mutex<Instant>,
}

const REREAD_AFTER: Duration = Duration::from_secs(1);

impl LocalAddrs {
    pub fn new() -> Self {
        // Subscribed before the first read, so that no change falls between the two.
        let events = AddressEvents::subscribe();
        let shared =
            Arc::new(Shared { current: ArcSwap::from_pointee(netif::all()), followed: AtomicBool::new(false), read_at: Mutex::new(Instant::now()) });
        let followed = match events {
            Ok(events) => {
                let weak = Arc::downgrade(&shared);
                std::thread::Builder::new().name("idgate-addrs".into()).spawn(move || follow(events, weak)).map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        match followed {
            Ok(_) => shared.followed.store(true, Ordering::Release),
            Err(e) => tracing::warn!(error = %e, "cannot follow this host's address changes: they are re-read at most once a second on lookup"),
        }
        LocalAddrs { shared }
    }

    pub fn contains(&self, ip: &IpAddr) -> bool {
        if ip.is_loopback() {
            return true;
        }
        let s = &self.shared;
        if !s.followed.load(Ordering::Acquire) {
            let mut read_at = s.read_at.lock();
            if read_at.elapsed() >= REREAD_AFTER {
                s.current.store(Arc::new(netif::all()));
                *read_at = Instant::now();
            }
        }
        s.current.load().contains(ip)
    }
}

/// Re-reads the addresses at each notification, until the `LocalAddrs` is gone.
fn follow(events: AddressEvents, shared: Weak<Shared>) {
    loop {
        let changed = events.wait();
        let Some(s) = shared.upgrade() else { return };
        if let Err(e) = changed {
            tracing::warn!(error = %e, "stopped following this host's address changes: they are re-read at most once a second on lookup");
            s.followed.store(false, Ordering::Release);
            return;
        }
        s.current.store(Arc::new(netif::all()));
    }
}

impl Default for LocalAddrs {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn ip(args: &str) {
        let out = Command::new("ip").args(args.split(' ')).output().expect("run ip");
        assert!(out.status.success(), "ip {args}: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn within(limit: Duration, what: impl Fn() -> bool) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if what() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        what()
    }

    /// In a network namespace of its own (root only): an address added to the host becomes
    /// local, and one removed stops being local at once, even after it was looked up (the
    /// inbound side must not forward to an address that now belongs to another host).
    #[test]
    fn addresses_follow_the_host_as_they_come_and_go() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: needs root for a network namespace");
            return;
        }
        std::thread::spawn(|| {
            // SAFETY: unshare on this thread only; the threads it spawns and the `ip` children
            // it forks inherit the new namespace.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare: {}", std::io::Error::last_os_error());
            ip("link set lo up");
            let local = LocalAddrs::new();
            let extra: IpAddr = [10, 99, 0, 1].into();
            assert!(!local.contains(&extra));
            ip("addr add 10.99.0.1/32 dev lo");
            assert!(within(Duration::from_secs(3), || local.contains(&extra)), "an added address is never seen as local");
            ip("addr del 10.99.0.1/32 dev lo");
            assert!(within(Duration::from_millis(500), || !local.contains(&extra)), "a removed address is still taken for local");
        })
        .join()
        .expect("namespace thread");
    }
}
