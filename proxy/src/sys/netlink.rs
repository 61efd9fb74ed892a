//! One request, one answer, over a per-thread kernel netlink socket: the plumbing shared by
//! the sock_diag and ctnetlink lookups on the per-flow path (microseconds; the kernel answers
//! within the sendmsg call).
use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

thread_local! {
    static SOCKETS: RefCell<HashMap<i32, OwnedFd>> = RefCell::new(HashMap::new());
}

pub const HEADER_LEN: usize = size_of::<libc::nlmsghdr>();

/// A netlink socket of `kind` (SOCK_RAW, SOCK_DGRAM) for `protocol`, subscribed to the
/// multicast `groups`: how the kernel's notices (process events, address changes) are read.
pub fn subscribe(kind: i32, protocol: i32, groups: u32) -> io::Result<OwnedFd> {
    let fd = socket(kind, protocol)?;
    // SAFETY: a zeroed sockaddr_nl is valid; fields set below.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as u16;
    addr.nl_groups = groups;
    // SAFETY: bind with a sockaddr_nl of the declared size.
    if unsafe { libc::bind(fd.as_raw_fd(), &addr as *const _ as *const libc::sockaddr, size_of::<libc::sockaddr_nl>() as u32) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

fn socket(kind: i32, protocol: i32) -> io::Result<OwnedFd> {
    // SAFETY: socket(2); ownership goes to OwnedFd.
    let raw = unsafe { libc::socket(libc::AF_NETLINK, kind | libc::SOCK_CLOEXEC, protocol) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// This thread's socket for request/answer exchanges with `protocol`.
fn open(protocol: i32) -> io::Result<OwnedFd> {
    let fd = socket(libc::SOCK_RAW, protocol)?;
    let tv = libc::timeval { tv_sec: 1, tv_usec: 0 };
    // SAFETY: setsockopt with a timeval of the declared size.
    unsafe { libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv as *const _ as *const _, size_of::<libc::timeval>() as u32) };
    Ok(fd)
}

/// Sends `request` (a complete netlink message) to the kernel on this thread's socket for
/// `protocol` and returns the length of the answer in `answer`. A socket that failed is
/// replaced next time rather than reused in an unknown state.
pub fn exchange(protocol: i32, request: &[u8], answer: &mut [u8]) -> io::Result<usize> {
    SOCKETS.with(|cell| {
        let mut sockets = cell.borrow_mut();
        let fd = match sockets.entry(protocol) {
            std::collections::hash_map::Entry::Occupied(e) => e.get().as_raw_fd(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(open(protocol)?).as_raw_fd(),
        };
        let result = send_recv(fd, request, answer);
        if result.is_err() {
            sockets.remove(&protocol);
        }
        result
    })
}

fn send_recv(fd: i32, request: &[u8], answer: &mut [u8]) -> io::Result<usize> {
    // SAFETY: the kernel address is zeroed (pid 0); both buffers are ours.
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: `request` and `kernel` are valid for the lengths given, for the whole call.
    let sent = unsafe {
        libc::sendto(fd, request.as_ptr() as *const _, request.len(), 0, &kernel as *const _ as *const _, size_of::<libc::sockaddr_nl>() as u32)
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `answer` is writable for its whole length, for the whole call.
    let n = unsafe { libc::recv(fd, answer.as_mut_ptr() as *mut _, answer.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if (n as usize) < HEADER_LEN {
        return Err(io::Error::other("short netlink answer"));
    }
    Ok(n as usize)
}

/// The message type of an answer.
pub fn message_type(answer: &[u8]) -> u16 {
    u16::from_ne_bytes([answer[4], answer[5]])
}

/// For an NLMSG_ERROR answer, the (positive) errno it carries; `None` for any other answer.
/// ENOENT becomes `ErrorKind::NotFound`, which callers treat as "no such flow".
pub fn error_of(answer: &[u8]) -> Option<io::Error> {
    if message_type(answer) as i32 != libc::NLMSG_ERROR || answer.len() < HEADER_LEN + 4 {
        return None;
    }
    let errno = -i32::from_ne_bytes(answer[HEADER_LEN..HEADER_LEN + 4].try_into().expect("4 bytes"));
    Some(io::Error::from_raw_os_error(errno))
}

/// A netlink header for a request of `total` bytes.
pub fn header(total: usize, kind: u16, flags: u16) -> libc::nlmsghdr {
    libc::nlmsghdr { nlmsg_len: total as u32, nlmsg_type: kind, nlmsg_flags: flags, nlmsg_seq: 1, nlmsg_pid: 0 }
}

/// The same header as bytes, for a request built in a byte buffer.
pub fn header_bytes(total: usize, kind: u16, flags: u16) -> [u8; HEADER_LEN] {
    let h = header(total, kind, flags);
    let mut out = [0u8; HEADER_LEN];
    out[0..4].copy_from_slice(&h.nlmsg_len.to_ne_bytes());
    out[4..6].copy_from_slice(&h.nlmsg_type.to_ne_bytes());
    out[6..8].copy_from_slice(&h.nlmsg_flags.to_ne_bytes());
    out[8..12].copy_from_slice(&h.nlmsg_seq.to_ne_bytes());
    out[12..16].copy_from_slice(&h.nlmsg_pid.to_ne_bytes());
    out
}
