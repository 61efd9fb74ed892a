//! A small nf_tables client over netlink, in Rust: batches (one transaction, sent in one
//! `sendmsg` whatever their size, with socket buffers sized for them and every message's
//! answer read), table listings, and ruleset notifications (`watch`). It speaks only what
//! idgate's tables need.
pub mod expr;
pub mod msg;
pub mod watch;

use msg::{Kind, Writer};
use std::ffi::CStr;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

pub const NFPROTO_INET: u8 = libc::NFPROTO_INET as u8;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_TABLE_FLAGS: u16 = 2;
const NFTA_TABLE_OWNER: u16 = 7;
/// Only the socket that made the table may change or delete it, and `flush ruleset` from
/// any other skips it; the kernel deletes it when that socket closes.
pub const NFT_TABLE_F_OWNER: u32 = 2;
/// Room for one answer (an ACK or an error quoting the request's header) as the kernel
/// accounts it in the receive buffer.
const ANSWER_ROOM: usize = 2048;
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// A netlink socket for nf_tables requests. The port id it was given identifies it to the
/// kernel: a table created through it with `NFT_TABLE_F_OWNER` is its own.
pub struct Socket {
    fd: OwnedFd,
    portid: u32,
}

impl Socket {
    pub fn open() -> io::Result<Socket> {
        // SAFETY: socket(2); ownership goes to OwnedFd.
        let raw = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_NETFILTER) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: a zeroed sockaddr_nl (port 0: the kernel picks one) of the declared size.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: bind with a sockaddr_nl of the declared size.
        if unsafe { libc::bind(fd.as_raw_fd(), &addr as *const _ as *const libc::sockaddr, size_of::<libc::sockaddr_nl>() as u32) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Self::from_fd(fd)
    }

    /// A socket handed over by another process (an upgrade's predecessor): it must be a netlink
    /// socket for netfilter.
    pub fn from_fd(fd: OwnedFd) -> io::Result<Socket> {
        let protocol = getsockopt_int(fd.as_raw_fd(), libc::SO_PROTOCOL)?;
        let domain = getsockopt_int(fd.as_raw_fd(), libc::SO_DOMAIN)?;
        if domain != libc::AF_NETLINK || protocol != libc::NETLINK_NETFILTER {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a netlink netfilter socket"));
        }
        // SAFETY: a zeroed sockaddr_nl to be filled by getsockname.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        let mut len = size_of::<libc::sockaddr_nl>() as u32;
        // SAFETY: getsockname into a sockaddr_nl of the declared size.
        if unsafe { libc::getsockname(fd.as_raw_fd(), &mut addr as *mut _ as *mut libc::sockaddr, &mut len) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let tv = libc::timeval { tv_sec: ANSWER_TIMEOUT.as_secs() as i64, tv_usec: 0 };
        setsockopt(fd.as_raw_fd(), libc::SO_RCVTIMEO, &tv)?;
        Ok(Socket { fd, portid: addr.nl_pid })
    }

    pub fn into_raw_fd(self) -> RawFd {
        std::os::fd::IntoRawFd::into_raw_fd(self.fd)
    }

    pub fn portid(&self) -> u32 {
        self.portid
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Runs `batch` as one transaction: all of it applies or none does. The error names the
    /// first message the kernel refused and why.
    pub fn run(&self, batch: Batch) -> io::Result<()> {
        let (bytes, expected) = batch.finish();
        self.discard_stale_answers();
        // Both buffers sized for this batch (CAP_NET_ADMIN may exceed the system's defaults):
        // the kernel takes a batch from one sendmsg only, and queues every answer before we read.
        let sndbuf = (bytes.len() * 2).max(1 << 16) as i32;
        let rcvbuf = (expected.len() * ANSWER_ROOM).max(1 << 16) as i32;
        setsockopt(self.raw_fd(), libc::SO_SNDBUFFORCE, &sndbuf).or_else(|_| setsockopt(self.raw_fd(), libc::SO_SNDBUF, &sndbuf))?;
        setsockopt(self.raw_fd(), libc::SO_RCVBUFFORCE, &rcvbuf).or_else(|_| setsockopt(self.raw_fd(), libc::SO_RCVBUF, &rcvbuf))?;
        send_to_kernel(self.raw_fd(), &bytes)?;
        let mut pending: std::collections::HashMap<u32, &str> = expected.iter().map(|(s, w)| (*s, w.as_str())).collect();
        let mut first_error: Option<io::Error> = None;
        let mut buf = vec![0u8; 1 << 16];
        while !pending.is_empty() {
            let n = recv(self.raw_fd(), &mut buf, 0).map_err(|e| {
                if e.kind() == io::ErrorKind::WouldBlock {
                    io::Error::new(io::ErrorKind::TimedOut, "nftables did not answer")
                } else {
                    e
                }
            })?;
            for m in msg::messages(&buf[..n]) {
                if m.nlmsg_type != NLMSG_ERROR || m.payload.len() < 4 {
                    continue;
                }
                let errno = -i32::from_ne_bytes(m.payload[0..4].try_into().expect("4 bytes"));
                let what = pending.remove(&m.seq);
                if errno != 0 && first_error.is_none() {
                    let e = io::Error::from_raw_os_error(errno);
                    first_error = Some(match what {
                        Some(what) => io::Error::new(e.kind(), format!("nftables refused {what}: {e}")),
                        None => io::Error::new(e.kind(), format!("nftables refused the transaction: {e}")),
                    });
                }
                if errno != 0 && what.is_none() {
                    // An error about the batch itself: no other answer follows.
                    pending.clear();
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The tables of `family`, with their flags and owner.
    pub fn tables(&self, family: u8) -> io::Result<Vec<TableInfo>> {
        self.discard_stale_answers();
        let mut w = Writer::default();
        w.request(Kind::GetTable, msg::NLM_F_DUMP | msg::NLM_F_ACK, 1, family);
        w.end_message();
        send_to_kernel(self.raw_fd(), w.bytes())?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = recv(self.raw_fd(), &mut buf, 0)?;
            for m in msg::messages(&buf[..n]) {
                match m.nlmsg_type {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        let errno = -i32::from_ne_bytes(m.payload.get(0..4).and_then(|b| b.try_into().ok()).unwrap_or_default());
                        if errno != 0 {
                            return Err(io::Error::from_raw_os_error(errno));
                        }
                    }
                    t if Kind::from_type(t) == Some(Kind::NewTable) => {
                        let mut t = TableInfo { family: msg::family(m.payload).unwrap_or(0), ..TableInfo::default() };
                        for (kind, value) in msg::attributes(m.payload) {
                            match kind {
                                NFTA_TABLE_NAME => t.name = String::from_utf8_lossy(msg::attr_string(value)).into_owned(),
                                NFTA_TABLE_FLAGS => t.flags = be32(value),
                                NFTA_TABLE_OWNER => t.owner = Some(be32(value)),
                                _ => {}
                            }
                        }
                        out.push(t);
                    }
                    _ => {}
                }
            }
        }
    }

    /// Answers of an exchange that timed out or failed midway would be taken for the next one's.
    fn discard_stale_answers(&self) {
        let mut buf = [0u8; 4096];
        while recv(self.raw_fd(), &mut buf, libc::MSG_DONTWAIT).is_ok_and(|n| n > 0) {}
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TableInfo {
    pub family: u8,
    pub name: String,
    pub flags: u32,
    /// The port id of the socket that owns it (`NFT_TABLE_F_OWNER`).
    pub owner: Option<u32>,
}

/// Messages that apply as one transaction. Every message asks for an answer, so the one the
/// kernel refused can be named.
pub struct Batch {
    w: Writer,
    seq: u32,
    expected: Vec<(u32, String)>,
}

impl Default for Batch {
    fn default() -> Self {
        let mut w = Writer::with_capacity(4096);
        w.batch_begin(0);
        Batch { w, seq: 1, expected: Vec::new() }
    }
}

impl Batch {
    /// Adds one request: `attrs` writes its attributes, `what` names it in an error.
    pub fn add(&mut self, kind: Kind, flags: u16, family: u8, what: impl FnOnce() -> String, attrs: impl FnOnce(&mut Writer)) {
        let seq = self.seq;
        self.seq += 1;
        self.w.request(kind, flags | msg::NLM_F_ACK, seq, family);
        attrs(&mut self.w);
        self.w.end_message();
        self.expected.push((seq, what()));
    }

    fn finish(mut self) -> (Vec<u8>, Vec<(u32, String)>) {
        self.w.batch_end(self.seq);
        (self.w.bytes().to_vec(), self.expected)
    }
}

/// A table's name as netlink carries it.
pub fn table_name(name: &str) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "table name has a NUL byte"))
}

pub fn be32(value: &[u8]) -> u32 {
    value.get(0..4).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes).unwrap_or(0)
}

pub fn table_attr(w: &mut Writer, name: &CStr) {
    w.attr_str(NFTA_TABLE_NAME, name);
}

pub fn table_flags_attr(w: &mut Writer, flags: u32) {
    w.attr_be32(NFTA_TABLE_FLAGS, flags);
}

fn send_to_kernel(fd: RawFd, bytes: &[u8]) -> io::Result<()> {
    // SAFETY: the kernel's address (port 0) in a zeroed sockaddr_nl.
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: sendto with our buffer and a sockaddr_nl of the declared size.
    let sent = unsafe {
        libc::sendto(fd, bytes.as_ptr() as *const _, bytes.len(), 0, &kernel as *const _ as *const _, size_of::<libc::sockaddr_nl>() as u32)
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    if sent as usize != bytes.len() {
        return Err(io::Error::other("nftables batch sent in part"));
    }
    Ok(())
}

fn recv(fd: RawFd, buf: &mut [u8], flags: i32) -> io::Result<usize> {
    // SAFETY: recv into our buffer of the given length.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr() as *mut _, buf.len(), flags) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

fn setsockopt<T>(fd: RawFd, option: i32, value: &T) -> io::Result<()> {
    // SAFETY: setsockopt with a value of the declared size.
    if unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, option, value as *const T as *const _, size_of::<T>() as u32) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn getsockopt_int(fd: RawFd, option: i32) -> io::Result<i32> {
    let mut value = 0i32;
    let mut len = size_of::<i32>() as u32;
    // SAFETY: getsockopt into an int of the declared size.
    if unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, option, &mut value as *mut i32 as *mut _, &mut len) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}
