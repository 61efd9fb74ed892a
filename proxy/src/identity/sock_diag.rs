//! NETLINK_SOCK_DIAG exact lookup of one TCP socket by its 4-tuple: returns inode and uid.
use crate::sys::netlink;
use std::io;
use std::mem::size_of;
use std::net::{IpAddr, SocketAddr};

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const INET_DIAG_NOCOOKIE: u32 = !0;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct InetDiagSockId {
    sport: u16, // network byte order
    dport: u16,
    src: [u8; 16],
    dst: [u8; 16],
    ifindex: u32,
    cookie: [u32; 2],
}

#[repr(C)]
struct InetDiagReqV2 {
    family: u8,
    protocol: u8,
    ext: u8,
    pad: u8,
    states: u32,
    id: InetDiagSockId,
}

#[repr(C)]
struct Request {
    nlh: libc::nlmsghdr,
    req: InetDiagReqV2,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct InetDiagMsg {
    family: u8,
    state: u8,
    timer: u8,
    retrans: u8,
    id: InetDiagSockId,
    expires: u32,
    rqueue: u32,
    wqueue: u32,
    uid: u32,
    inode: u32,
}

fn put_addr(out: &mut [u8; 16], ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => out[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => out.copy_from_slice(&v6.octets()),
    }
}

/// Finds the TCP socket whose local address is `src` and remote address is `dst`.
/// Returns `(inode, uid)`, or `None` when no such socket exists.
pub fn lookup(src: SocketAddr, dst: SocketAddr) -> io::Result<Option<(u32, u32)>> {
    let mut id = InetDiagSockId { sport: src.port().to_be(), dport: dst.port().to_be(), cookie: [INET_DIAG_NOCOOKIE; 2], ..Default::default() };
    put_addr(&mut id.src, src.ip());
    put_addr(&mut id.dst, dst.ip());
    let family = if src.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 } as u8;
    let req = Request {
        nlh: netlink::header(size_of::<Request>(), SOCK_DIAG_BY_FAMILY, libc::NLM_F_REQUEST as u16),
        req: InetDiagReqV2 { family, protocol: libc::IPPROTO_TCP as u8, ext: 0, pad: 0, states: !0, id },
    };
    // SAFETY: Request is a plain repr(C) value; we send exactly its bytes.
    let bytes = unsafe { std::slice::from_raw_parts(&req as *const Request as *const u8, size_of::<Request>()) };
    let mut buf = [0u8; 1024];
    let n = netlink::exchange(libc::NETLINK_SOCK_DIAG, bytes, &mut buf)?;
    parse_reply(&buf[..n])
}

fn parse_reply(buf: &[u8]) -> io::Result<Option<(u32, u32)>> {
    if let Some(err) = netlink::error_of(buf) {
        return if err.raw_os_error() == Some(libc::ENOENT) { Ok(None) } else { Err(err) };
    }
    if netlink::message_type(buf) != SOCK_DIAG_BY_FAMILY || buf.len() < netlink::HEADER_LEN + size_of::<InetDiagMsg>() {
        return Err(io::Error::other(format!("unexpected sock_diag answer (type {})", netlink::message_type(buf))));
    }
    // SAFETY: length checked above; read_unaligned copes with the byte buffer's alignment.
    let msg: InetDiagMsg = unsafe { std::ptr::read_unaligned(buf[netlink::HEADER_LEN..].as_ptr() as *const _) };
    Ok(Some((msg.inode, msg.uid)))
}
