//! The userspace identity backend: sock_diag gives the client socket's inode, procfs gives the
//! process holding it. Recent owners are searched first, and within them the fd numbers their
//! last sockets had, so a busy workload costs a few readlinks, not a walk of all of /proc.
use super::procdir::{FdTable, ProcDir};
use super::{sock_diag, FlowIdentity, IdentityError, ProcessInfo};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

const RECENT_OWNERS: usize = 64;
const HOT_FDS: usize = 16;

/// A process that recently owned an intercepted socket, with the fd numbers those sockets had:
/// a process that opens one connection after another usually gets a just-freed fd number back,
/// so probing these few first avoids listing (and reading every link of) its whole fd table.
#[derive(Clone, Copy)]
struct Owner {
    pid: u32,
    hot_fds: [u32; HOT_FDS], // most recent first; u32::MAX = empty
}

#[derive(Default)]
pub struct ProcfsBackend {
    /// Most recent first.
    recent: Mutex<VecDeque<Owner>>,
}

impl FlowIdentity for ProcfsBackend {
    fn name(&self) -> &'static str {
        "procfs"
    }

    fn process_of(&self, client: SocketAddr, dst: SocketAddr) -> Result<Arc<ProcessInfo>, IdentityError> {
        let (inode, uid) = sock_diag::lookup(client, dst)?.ok_or(IdentityError::NoSocket { client, dst })?;
        let pid = self.owner_of(inode, uid).ok_or(IdentityError::NoOwner { inode, client, dst })?;
        // Read fresh for every flow: execve and setuid change exe and uid under the same pid
        // and start time, and the identity must be the one at connect time.
        read_process(pid).map(Arc::new).map_err(|_| IdentityError::NoOwner { inode, client, dst })
    }
}

impl ProcfsBackend {
    fn owner_of(&self, inode: u32, uid: u32) -> Option<u32> {
        let needle = format!("socket:[{inode}]");
        let needle = needle.as_bytes();
        // A copy: the fd-table reads below must not hold the lock other flows need.
        let recent: Vec<Owner> = self.recent.lock().iter().copied().collect();
        let found = recent.iter().find_map(|owner| {
            let table = FdTable::open(owner.pid).ok()?;
            let hot = owner.hot_fds.iter().take_while(|fd| **fd != u32::MAX);
            let fd = hot.copied().find(|fd| table.points_at(*fd, needle)).or_else(|| table.find(needle))?;
            Some((owner.pid, fd))
        });
        // Full walk: first only processes of the socket's uid, then everyone (setuid after connect).
        let (pid, fd) = found.or_else(|| scan(needle, Some(uid))).or_else(|| scan(needle, None))?;
        let mut recent = self.recent.lock();
        let mut owner = match recent.iter().position(|o| o.pid == pid) {
            Some(i) => recent.remove(i).expect("index from position"),
            None => Owner { pid, hot_fds: [u32::MAX; HOT_FDS] },
        };
        if let Some(i) = owner.hot_fds.iter().position(|f| *f == fd) {
            owner.hot_fds[..=i].rotate_right(1);
        } else {
            owner.hot_fds.rotate_right(1);
            owner.hot_fds[0] = fd;
        }
        recent.push_front(owner);
        recent.truncate(RECENT_OWNERS);
        Some(pid)
    }
}

/// (pid, fd) of the process holding `needle`, walking all of /proc. Newest processes first:
/// a workload unknown to the recent-owner list has most likely just started, and its high pid
/// is then found after a handful of entries instead of after every process on the host.
fn scan(needle: &[u8], uid: Option<u32>) -> Option<(u32, u32)> {
    let mut entries: Vec<(u32, std::fs::DirEntry)> = std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e)))
        .collect();
    entries.sort_unstable_by_key(|e| std::cmp::Reverse(e.0));
    entries.into_iter().find_map(|(pid, entry)| {
        if let Some(uid) = uid {
            if entry.metadata().ok()?.uid() != uid {
                return None;
            }
        }
        Some((pid, FdTable::open(pid).ok()?.find(needle)?))
    })
}

fn malformed(what: &str) -> io::Error {
    io::Error::other(format!("malformed /proc/<pid>/{what}"))
}

/// `(comm, start_time)` from /proc/<pid>/stat.
fn parse_stat(stat: &str) -> io::Result<(String, u64)> {
    // comm may contain spaces and parentheses: it ends at the last ')'.
    let open = stat.find('(').ok_or_else(|| malformed("stat"))?;
    let close = stat.rfind(')').ok_or_else(|| malformed("stat"))?;
    let comm = stat[open + 1..close].to_string();
    // Fields after comm start at field 3 (state); starttime is field 22.
    let start = stat[close + 1..]
        .split_whitespace()
        .nth(19)
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| malformed("stat starttime"))?;
    Ok((comm, start))
}

/// The effective id (second column) of a `Uid:`/`Gid:` line of /proc/<pid>/status.
fn effective_id(status: &str, key: &str) -> io::Result<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| io::Error::other(format!("no {key} in /proc/<pid>/status")))
}

/// The cgroup v2 path (`0::/path`), or the first hierarchy's path on a v1-only host.
fn parse_cgroup(cgroup: &str) -> String {
    cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .or_else(|| cgroup.lines().next().and_then(|l| l.splitn(3, ':').nth(2)))
        .unwrap_or("")
        .to_string()
}

/// Reads everything the workload rules can select on, all through one /proc/<pid> handle.
pub fn read_process(pid: u32) -> io::Result<ProcessInfo> {
    let dir = ProcDir::open(pid)?;
    let mut buf = Vec::with_capacity(4096);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let (comm, start_time) = parse_stat(&text(dir.read(c"stat", &mut buf)?))?;
    let status = text(dir.read(c"status", &mut buf)?);
    let mut link = [0u8; 4096];
    // An exiting process has no exe any more; the rules then see an empty path.
    let exe = dir.readlink(c"exe", &mut link).map(text).unwrap_or_default();
    let cgroup = dir.read(c"cgroup", &mut buf).map(|b| parse_cgroup(&text(b))).unwrap_or_default();
    Ok(ProcessInfo {
        tgid: pid,
        uid: effective_id(&status, "Uid:")?,
        gid: effective_id(&status, "Gid:")?,
        exe,
        comm,
        cgroup,
        start_time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let me = read_process(std::process::id()).unwrap();
        assert_eq!(me.tgid, std::process::id());
        assert_eq!(me.uid, unsafe { libc::geteuid() });
        assert_eq!(me.exe, std::env::current_exe().unwrap().to_string_lossy());
        assert!(me.start_time > 0);
    }

    #[test]
    fn finds_owner_of_a_connected_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let backend = ProcfsBackend::default();
        let p = backend.process_of(client.local_addr().unwrap(), client.peer_addr().unwrap()).unwrap();
        assert_eq!(p.tgid, std::process::id());
        // The owner and the socket's fd are remembered, and the second lookup finds it again.
        let front = *backend.recent.lock().front().unwrap();
        assert_eq!(front.pid, std::process::id());
        assert_eq!(front.hot_fds[0], std::os::fd::AsRawFd::as_raw_fd(&client) as u32);
        let again = backend.process_of(client.local_addr().unwrap(), client.peer_addr().unwrap()).unwrap();
        assert_eq!(again.tgid, std::process::id());
        // A second socket of the same process is found behind the remembered one.
        let other = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        assert_eq!(backend.process_of(other.local_addr().unwrap(), other.peer_addr().unwrap()).unwrap().tgid, std::process::id());
        let front = *backend.recent.lock().front().unwrap();
        assert_eq!(front.hot_fds[..2], [std::os::fd::AsRawFd::as_raw_fd(&other) as u32, std::os::fd::AsRawFd::as_raw_fd(&client) as u32]);
        assert_eq!(backend.recent.lock().len(), 1);
        let missing = backend.process_of("127.0.0.1:1".parse().unwrap(), "127.0.0.1:2".parse().unwrap());
        assert!(matches!(missing, Err(IdentityError::NoSocket { .. })), "{missing:?}");
    }
}
