//! The userspace identity backend: sock_diag gives the client socket's inode, procfs gives the
//! process holding it. Recent owners are searched first, so a busy workload costs one fd-table
//! scan of its own process, not a walk of all of /proc.
use super::{sock_diag, FlowIdentity, IdentityError, ProcessInfo};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

const RECENT_OWNERS: usize = 64;

#[derive(Default)]
pub struct ProcfsBackend {
    /// Pids that recently owned intercepted sockets, most recent first.
    recent: Mutex<VecDeque<u32>>,
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
        let recent: Vec<u32> = self.recent.lock().iter().copied().collect();
        if let Some(pid) = recent.into_iter().find(|pid| holds(*pid, &needle)) {
            return Some(pid);
        }
        // Full walk: first only processes of the socket's uid, then everyone (setuid after connect).
        let pid = scan(&needle, Some(uid)).or_else(|| scan(&needle, None))?;
        let mut recent = self.recent.lock();
        recent.retain(|p| *p != pid);
        recent.push_front(pid);
        recent.truncate(RECENT_OWNERS);
        Some(pid)
    }
}

fn scan(needle: &str, uid: Option<u32>) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        if let Some(uid) = uid {
            if entry.metadata().ok()?.uid() != uid {
                return None;
            }
        }
        holds(pid, needle).then_some(pid)
    })
}

/// Does process `pid` have an fd pointing at `needle` (`socket:[inode]`)?
fn holds(pid: u32, needle: &str) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    fds.flatten().any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target.as_os_str() == needle))
}

/// `(comm, start_time)` from /proc/<pid>/stat.
fn read_stat(pid: u32) -> io::Result<(String, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // comm may contain spaces and parentheses: it ends at the last ')'.
    let open = stat.find('(').ok_or_else(|| io::Error::other("malformed stat"))?;
    let close = stat.rfind(')').ok_or_else(|| io::Error::other("malformed stat"))?;
    let comm = stat[open + 1..close].to_string();
    // Fields after comm start at field 3 (state); starttime is field 22.
    let start = stat[close + 1..]
        .split_whitespace()
        .nth(19)
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| io::Error::other("malformed stat starttime"))?;
    Ok((comm, start))
}

/// Reads everything the workload rules can select on.
pub fn read_process(pid: u32) -> io::Result<ProcessInfo> {
    let (comm, start_time) = read_stat(pid)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let effective = |key: &str| -> io::Result<u32> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| io::Error::other(format!("no {key} in /proc/{pid}/status")))
    };
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let cgroup = cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .or_else(|| cgroup.lines().next().and_then(|l| l.splitn(3, ':').nth(2)))
        .unwrap_or("")
        .to_string();
    Ok(ProcessInfo { tgid: pid, uid: effective("Uid:")?, gid: effective("Gid:")?, exe, comm, cgroup, start_time })
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
        // Second lookup hits the recent-owner list.
        assert_eq!(backend.recent.lock().front(), Some(&std::process::id()));
        let missing = backend.process_of("127.0.0.1:1".parse().unwrap(), "127.0.0.1:2".parse().unwrap());
        assert!(matches!(missing, Err(IdentityError::NoSocket { .. })), "{missing:?}");
    }
}
