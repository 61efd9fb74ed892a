//! Is an address one of this host's own? The inbound side forwards only to local destinations,
//! so a peer cannot use idgate to reach third hosts.
use parking_lot::Mutex;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

pub struct LocalAddrs {
    cached: Mutex<(HashSet<IpAddr>, Instant)>,
}

const REFRESH_AT_MOST_EVERY: Duration = Duration::from_secs(1);

impl LocalAddrs {
    pub fn new() -> Self {
        LocalAddrs { cached: Mutex::new((read(), Instant::now())) }
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
            *cached = (read(), Instant::now());
            return cached.0.contains(ip);
        }
        false
    }
}

fn read() -> HashSet<IpAddr> {
    let mut out = HashSet::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a list we walk read-only and free with freeifaddrs.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return out;
        }
        let mut cur = head;
        while !cur.is_null() {
            let sa = (*cur).ifa_addr;
            if !sa.is_null() {
                match (*sa).sa_family as i32 {
                    libc::AF_INET => {
                        let sin = &*(sa as *const libc::sockaddr_in);
                        out.insert(IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(sa as *const libc::sockaddr_in6);
                        out.insert(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
                    }
                    _ => {}
                }
            }
            cur = (*cur).ifa_next;
        }
        libc::freeifaddrs(head);
    }
    out
}
