//! This host's interface addresses (getifaddrs), and the kernel's notice when they change.
use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::OwnedFd;

/// Every address on every interface, loopback included.
pub fn all() -> BTreeSet<IpAddr> {
    let mut out = BTreeSet::new();
    for_each_address(|_, ip| {
        out.insert(ip);
    });
    out
}

/// The interfaces holding address `ip` (a flow redirected in prerouting ends at the address
/// of the interface it came in on).
pub fn holders_of(ip: IpAddr) -> Vec<String> {
    let mut out = Vec::new();
    for_each_address(|name, addr| {
        if addr == ip {
            out.push(name.to_string_lossy().into_owned());
        }
    });
    out
}

fn for_each_address(mut f: impl FnMut(&std::ffi::CStr, IpAddr)) {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a list we walk read-only and free with freeifaddrs; each
    // entry's name is a NUL-terminated string that lives as long as the list.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return;
        }
        let mut cur = head;
        while !cur.is_null() {
            let sa = (*cur).ifa_addr;
            if !sa.is_null() {
                let name = std::ffi::CStr::from_ptr((*cur).ifa_name);
                match (*sa).sa_family as i32 {
                    libc::AF_INET => {
                        let sin = &*(sa as *const libc::sockaddr_in);
                        f(name, IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(sa as *const libc::sockaddr_in6);
                        f(name, IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
                    }
                    _ => {}
                }
            }
            cur = (*cur).ifa_next;
        }
        libc::freeifaddrs(head);
    }
}

/// The addresses peers can reach this host on: all but loopback and IPv6 link-local (whose
/// meaning depends on the link, so a certificate naming one would prove nothing).
pub fn reachable() -> Vec<IpAddr> {
    all().into_iter().filter(|ip| !ip.is_loopback() && !is_link_local(ip)).collect()
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// A subscription to the kernel's IPv4 and IPv6 address notifications (rtnetlink), in the
/// network namespace of the thread that subscribes.
pub struct AddressEvents(OwnedFd);

impl AddressEvents {
    pub fn subscribe() -> io::Result<Self> {
        let groups = (libc::RTMGRP_IPV4_IFADDR | libc::RTMGRP_IPV6_IFADDR) as u32;
        Ok(AddressEvents(crate::sys::netlink::subscribe(libc::SOCK_RAW, libc::NETLINK_ROUTE, groups)?))
    }

    /// Blocks until an address was added or removed, then takes every notification already
    /// queued. Lost notifications (the socket's buffer overflowed) count as a change.
    pub fn wait(&self) -> io::Result<()> {
        let mut buf = [0u8; 8192];
        use rustix::io::Errno;
        use rustix::net::RecvFlags;
        let mut flags = RecvFlags::empty();
        loop {
            match rustix::net::recv(&self.0, &mut buf[..], flags) {
                Ok(_) => flags = RecvFlags::DONTWAIT,
                Err(Errno::INTR) => {}
                Err(Errno::NOBUFS) => flags = RecvFlags::DONTWAIT,
                Err(Errno::AGAIN) if !flags.is_empty() => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    }
}
