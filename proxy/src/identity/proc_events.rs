//! The kernel's process events (the proc connector, `NETLINK_CONNECTOR` / cn_proc): exec, id
//! changes and exits, as they happen. idgate uses them to get ready for a workload before its
//! first `connect()`; identity decisions never depend on them (an event can be lost; each flow
//! is still resolved when it arrives). The connector answers only in the initial network
//! namespace (not in containers): elsewhere `subscribe` fails and idgate says why.
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
const PROC_CN_MCAST_LISTEN: u32 = 1;
/// Sizes of `struct cn_msg` and the fixed head of `struct proc_event` (what, cpu, timestamp).
const CN_MSG_LEN: usize = 20;
const EVENT_HEAD_LEN: usize = 16;

const PROC_EVENT_NONE: u32 = 0;
const PROC_EVENT_EXEC: u32 = 0x2;
const PROC_EVENT_UID: u32 = 0x4;
const PROC_EVENT_GID: u32 = 0x40;
const PROC_EVENT_EXIT: u32 = 0x8000_0000;

/// One event about process `pid` (a thread group id: events about other threads are dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcEvent {
    /// It ran execve: new exe, maybe new ids.
    Exec(u32),
    /// Its uid or gid changed.
    Ids(u32),
    Exit(u32),
}

/// A subscribed connector socket.
pub struct ProcEvents {
    fd: OwnedFd,
    buf: Vec<u8>,
}

impl ProcEvents {
    /// Subscribes to process events; fails where the connector is not available (another
    /// network or user namespace, no CAP_NET_ADMIN, a kernel without CONFIG_PROC_EVENTS).
    pub fn subscribe() -> io::Result<Self> {
        let fd = crate::sys::netlink::subscribe(libc::SOCK_DGRAM, libc::NETLINK_CONNECTOR, CN_IDX_PROC)?;
        // Bursts of forks must not overflow the queue while the reader is busy.
        let size: libc::c_int = 4 << 20;
        // SAFETY: setsockopt with an int of the declared size; failure only leaves the default.
        unsafe {
            libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &size as *const _ as *const _, size_of::<libc::c_int>() as u32)
        };
        let mut events = ProcEvents { fd, buf: vec![0u8; 64 * 1024] };
        events.listen()?;
        Ok(events)
    }

    fn listen(&mut self) -> io::Result<()> {
        let total = crate::sys::netlink::HEADER_LEN + CN_MSG_LEN + 4;
        let mut msg = Vec::with_capacity(total);
        msg.extend_from_slice(&crate::sys::netlink::header_bytes(total, libc::NLMSG_DONE as u16, 0));
        for word in [CN_IDX_PROC, CN_VAL_PROC, 0, 0] {
            msg.extend_from_slice(&word.to_ne_bytes());
        }
        msg.extend_from_slice(&4u16.to_ne_bytes()); // len
        msg.extend_from_slice(&0u16.to_ne_bytes()); // flags
        msg.extend_from_slice(&PROC_CN_MCAST_LISTEN.to_ne_bytes());
        // SAFETY: the kernel address is zeroed (pid 0); the buffer is ours.
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: sendto with our buffer and a sockaddr_nl of the declared size.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr() as *const _,
                msg.len(),
                0,
                &kernel as *const _ as *const _,
                size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if sent < 0 {
            let e = io::Error::last_os_error();
            return Err(if e.raw_os_error() == Some(libc::ECONNREFUSED) {
                io::Error::new(e.kind(), "the proc connector answers only in the initial network namespace")
            } else {
                e
            });
        }
        // The kernel acknowledges with a PROC_EVENT_NONE carrying an error code. Older kernels
        // do not: events then simply start.
        self.set_timeout(Some(Duration::from_secs(1)));
        let mut ack = None;
        for _ in 0..64 {
            match self.recv() {
                Ok(n) => {
                    if let Some(err) = ack_error(&self.buf[..n]) {
                        ack = Some(err);
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut => break,
                Err(e) => return Err(e),
            }
        }
        self.set_timeout(None);
        match ack {
            Some(0) | None => Ok(()),
            Some(err) => Err(io::Error::from_raw_os_error(err as i32)),
        }
    }

    fn set_timeout(&self, timeout: Option<Duration>) {
        let tv =
            timeout.map_or(libc::timeval { tv_sec: 0, tv_usec: 0 }, |t| libc::timeval { tv_sec: t.as_secs() as _, tv_usec: t.subsec_micros() as _ });
        // SAFETY: setsockopt with a timeval of the declared size.
        unsafe {
            libc::setsockopt(self.fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv as *const _ as *const _, size_of::<libc::timeval>() as u32)
        };
    }

    fn recv(&mut self) -> io::Result<usize> {
        // SAFETY: recv into our own buffer of the given length.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), self.buf.as_mut_ptr() as *mut _, self.buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Blocks until events arrive and appends them to `out`. `Ok(false)` means events were
    /// lost (the queue overflowed); the socket stays usable.
    pub fn next(&mut self, out: &mut Vec<ProcEvent>) -> io::Result<bool> {
        match self.recv() {
            Ok(n) => {
                parse(&self.buf[..n], out);
                Ok(true)
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(e) => Err(e),
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The error code of the connector's answer to LISTEN, if `datagram` is that answer.
fn ack_error(datagram: &[u8]) -> Option<u32> {
    let event = crate::sys::netlink::HEADER_LEN + CN_MSG_LEN;
    (u32_at(datagram, event)? == PROC_EVENT_NONE).then(|| u32_at(datagram, event + EVENT_HEAD_LEN)).flatten()
}

/// Appends the events of one datagram (netlink messages, each a cn_msg with one proc_event).
pub fn parse(datagram: &[u8], out: &mut Vec<ProcEvent>) {
    let mut at = 0;
    while let Some(len) = u32_at(datagram, at) {
        let len = len as usize;
        if len < crate::sys::netlink::HEADER_LEN || at + len > datagram.len() {
            return;
        }
        let msg = &datagram[at..at + len];
        at += (len + 3) & !3;
        let cn = crate::sys::netlink::HEADER_LEN;
        if u32_at(msg, cn) != Some(CN_IDX_PROC) || u32_at(msg, cn + 4) != Some(CN_VAL_PROC) {
            continue;
        }
        let event = cn + CN_MSG_LEN;
        let (Some(what), Some(pid), Some(tgid)) = (u32_at(msg, event), u32_at(msg, event + EVENT_HEAD_LEN), u32_at(msg, event + EVENT_HEAD_LEN + 4))
        else {
            continue;
        };
        if pid != tgid {
            continue; // a thread, not a process
        }
        match what {
            PROC_EVENT_EXEC => out.push(ProcEvent::Exec(tgid)),
            PROC_EVENT_UID | PROC_EVENT_GID => out.push(ProcEvent::Ids(tgid)),
            PROC_EVENT_EXIT => out.push(ProcEvent::Exit(tgid)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(what: u32, pid: u32, tgid: u32) -> Vec<u8> {
        let total = crate::sys::netlink::HEADER_LEN + CN_MSG_LEN + EVENT_HEAD_LEN + 24;
        let mut m = Vec::new();
        m.extend_from_slice(&(total as u32).to_ne_bytes());
        m.extend_from_slice(&[0u8; 12]); // rest of nlmsghdr
        for word in [CN_IDX_PROC, CN_VAL_PROC, 0, 0] {
            m.extend_from_slice(&word.to_ne_bytes());
        }
        m.extend_from_slice(&[0u8; 4]); // len, flags
        m.extend_from_slice(&what.to_ne_bytes());
        m.extend_from_slice(&[0u8; 12]); // cpu, timestamp
        m.extend_from_slice(&pid.to_ne_bytes());
        m.extend_from_slice(&tgid.to_ne_bytes());
        m.extend_from_slice(&[0u8; 16]);
        assert_eq!(m.len(), total);
        m
    }

    #[test]
    fn events_about_processes_are_kept_and_threads_and_forks_dropped() {
        let mut datagram = message(PROC_EVENT_EXEC, 42, 42);
        datagram.extend(message(PROC_EVENT_EXIT, 43, 42)); // a thread of 42 exiting
        datagram.extend(message(0x1, 44, 44)); // fork
        datagram.extend(message(PROC_EVENT_UID, 45, 45));
        datagram.extend(message(PROC_EVENT_EXIT, 42, 42));
        let mut out = Vec::new();
        parse(&datagram, &mut out);
        assert_eq!(out, vec![ProcEvent::Exec(42), ProcEvent::Ids(45), ProcEvent::Exit(42)]);
    }

    #[test]
    fn truncated_input_is_ignored_not_misread() {
        let full = message(PROC_EVENT_EXEC, 7, 7);
        for cut in 0..full.len() {
            let mut out = Vec::new();
            parse(&full[..cut], &mut out);
            assert!(out.is_empty(), "cut at {cut}: {out:?}");
        }
        assert_eq!(ack_error(&message(PROC_EVENT_NONE, 0, 0)), Some(0));
    }

    /// Where the connector is reachable (the initial namespaces, as root), an exec is seen.
    #[test]
    fn an_exec_is_reported_when_the_connector_is_available() {
        let Ok(mut events) = ProcEvents::subscribe() else {
            eprintln!("proc connector unavailable here; nothing to check");
            return;
        };
        let mut child = std::process::Command::new("/bin/true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        events.set_timeout(Some(Duration::from_millis(200)));
        let mut seen = Vec::new();
        while !seen.contains(&ProcEvent::Exec(pid)) && std::time::Instant::now() < deadline {
            let _ = events.next(&mut seen);
        }
        assert!(seen.contains(&ProcEvent::Exec(pid)), "no exec event for {pid}");
    }
}
