//! NETLINK_SOCK_DIAG exact lookup of one TCP socket by its 4-tuple: returns inode and uid.
//! One netlink socket per thread, reused; the kernel answers within the sendmsg call.
use std::cell::RefCell;
use std::io;
use std::mem::size_of;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

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

thread_local! {
    static SOCKET: RefCell<Option<OwnedFd>> = const { RefCell::new(None) };
}

fn open() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned by the returned OwnedFd.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, libc::NETLINK_SOCK_DIAG) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let tv = libc::timeval { tv_sec: 1, tv_usec: 0 };
    // SAFETY: setsockopt with a timeval of the declared size.
    unsafe {
        libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv as *const _ as *const _, size_of::<libc::timeval>() as u32);
    }
    Ok(fd)
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
    SOCKET.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(open()?);
        }
        let fd = slot.as_ref().expect("just opened").as_raw_fd();
        let result = query(fd, src, dst);
        if result.is_err() {
            *slot = None; // reopen next time rather than reuse a socket in an unknown state
        }
        result
    })
}

fn query(fd: i32, src: SocketAddr, dst: SocketAddr) -> io::Result<Option<(u32, u32)>> {
    let mut id = InetDiagSockId { sport: src.port().to_be(), dport: dst.port().to_be(), cookie: [INET_DIAG_NOCOOKIE; 2], ..Default::default() };
    put_addr(&mut id.src, src.ip());
    put_addr(&mut id.dst, dst.ip());
    let family = if src.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 } as u8;
    let req = Request {
        nlh: libc::nlmsghdr {
            nlmsg_len: size_of::<Request>() as u32,
            nlmsg_type: SOCK_DIAG_BY_FAMILY,
            nlmsg_flags: libc::NLM_F_REQUEST as u16,
            nlmsg_seq: 1,
            nlmsg_pid: 0,
        },
        req: InetDiagReqV2 { family, protocol: libc::IPPROTO_TCP as u8, ext: 0, pad: 0, states: !0, id },
    };
    // SAFETY: the kernel address is zeroed (pid 0); the request is a plain repr(C) value.
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as u16;
    let sent = unsafe {
        libc::sendto(fd, &req as *const _ as *const _, size_of::<Request>(), 0, &kernel as *const _ as *const _, size_of::<libc::sockaddr_nl>() as u32)
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = [0u8; 1024];
    // SAFETY: recv into our own buffer.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr() as *mut _, buf.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    parse_reply(&buf[..n as usize])
}

fn parse_reply(buf: &[u8]) -> io::Result<Option<(u32, u32)>> {
    let hdr_len = size_of::<libc::nlmsghdr>();
    if buf.len() < hdr_len {
        return Err(io::Error::other("short sock_diag reply"));
    }
    // SAFETY: length checked; read_unaligned copes with the byte buffer's alignment.
    let nlh: libc::nlmsghdr = unsafe { std::ptr::read_unaligned(buf.as_ptr() as *const _) };
    match nlh.nlmsg_type as i32 {
        libc::NLMSG_ERROR => {
            let errno = i32::from_ne_bytes(buf[hdr_len..hdr_len + 4].try_into().unwrap_or([0; 4]));
            if errno == -libc::ENOENT {
                Ok(None)
            } else {
                Err(io::Error::from_raw_os_error(-errno))
            }
        }
        t if t == SOCK_DIAG_BY_FAMILY as i32 => {
            if buf.len() < hdr_len + size_of::<InetDiagMsg>() {
                return Err(io::Error::other("short inet_diag_msg"));
            }
            // SAFETY: length checked above.
            let msg: InetDiagMsg = unsafe { std::ptr::read_unaligned(buf[hdr_len..].as_ptr() as *const _) };
            Ok(Some((msg.inode, msg.uid)))
        }
        t => Err(io::Error::other(format!("unexpected sock_diag message type {t}"))),
    }
}
