//! SO_ORIGINAL_DST: where a redirected connection was headed before NAT rewrote it.
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

const SO_ORIGINAL_DST: libc::c_int = 80; // linux/netfilter_ipv4.h
const IP6T_SO_ORIGINAL_DST: libc::c_int = 80; // linux/netfilter_ipv6/ip6_tables.h

pub fn original_dst(sock: &impl AsRawFd, local: &SocketAddr) -> io::Result<SocketAddr> {
    let fd = sock.as_raw_fd();
    match local {
        SocketAddr::V4(_) => {
            // SAFETY: getsockopt fills at most `len` bytes of a sockaddr_in we own.
            let mut sa: libc::sockaddr_in = unsafe { zeroed() };
            let mut len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            let rc = unsafe { libc::getsockopt(fd, libc::SOL_IP, SO_ORIGINAL_DST, &mut sa as *mut _ as *mut _, &mut len) };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            let ip = Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr));
            Ok(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sa.sin_port))))
        }
        SocketAddr::V6(_) => {
            // SAFETY: as above, for sockaddr_in6.
            let mut sa: libc::sockaddr_in6 = unsafe { zeroed() };
            let mut len = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            let rc = unsafe { libc::getsockopt(fd, libc::SOL_IPV6, IP6T_SO_ORIGINAL_DST, &mut sa as *mut _ as *mut _, &mut len) };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            let ip = Ipv6Addr::from(sa.sin6_addr.s6_addr);
            Ok(SocketAddr::V6(SocketAddrV6::new(ip, u16::from_be(sa.sin6_port), 0, 0)))
        }
    }
}
