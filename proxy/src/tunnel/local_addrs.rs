//! Is an address one of this host's own? The inbound side forwards only to local destinations,
//! so a peer cannot use idgate to reach third hosts.
use parking_lot::Mutex;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

pub struct LocalAddrs {
    cached: Mutex<(BTreeSet<IpAddr>, Instant)>,
}

const REFRESH_AT_MOST_EVERY: Duration = Duration::from_secs(1);

impl LocalAddrs {
    pub fn new() -> Self {
        LocalAddrs { cached: Mutex::new((crate::netif::all(), Instant::now())) }
    }

    pub fn contains(&self, ip: &IpAddr) -> bool {
        if ip.is_loopback() {
            return true;
        }
        let mut cached = self.cached.lock();
        if cached.0.contains(ip) {
            return true;
        }
        // Addresses come and go (DHCP, new interfaces): re-read on a miss, rate limited.
        if cached.1.elapsed() >= REFRESH_AT_MOST_EVERY {
            *cached = (crate::netif::all(), Instant::now());
            return cached.0.contains(ip);
        }
        false
    }
}

impl Default for LocalAddrs {
    fn default() -> Self {
        Self::new()
    }
}
