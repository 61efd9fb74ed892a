//! The userspace identity backend: sock_diag gives the client socket's inode, procfs gives the
//! process holding it. Recent owners are searched first, through procfs handles kept open for
//! them, and within them the fd numbers their sockets had, so a busy workload costs a few
//! syscalls per flow, not a walk of all of /proc.
use super::netns::OtherNamespaces;
use super::procdir::{read_whole, FdTable, ProcDir};
use super::{sock_diag, FlowIdentity, IdentityError, ProcessInfo};
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

const RECENT_OWNERS: usize = 64;
/// The most recent owners keep their procfs files open (4 fds each).
const OWNERS_WITH_FILES: usize = 16;
const HOT_FDS: usize = 16;
/// Open flows whose fd is remembered for `flow_closed`; only a hint, so simply forgotten when full.
const OPEN_FLOWS: usize = 65_536;
/// Processes announced by exec events, searched before walking all of /proc.
const EXPECTED: usize = 16;

/// One process's procfs files, kept open: a flow then costs one pread per file instead of
/// open + read + close. They cannot show another process: a /proc handle pins the pid it was
/// opened for and fails (ESRCH) once that process is gone, even if the number is reused.
struct OwnerFiles {
    dir: ProcDir,
    comm: OwnedFd,
    status: OwnedFd,
    cgroup: OwnedFd,
    /// When the process started (it never changes, so /proc/<pid>/stat is read once: it is
    /// also the costliest file to render).
    start_time: u64,
}

impl OwnerFiles {
    fn open(pid: u32) -> io::Result<Self> {
        Self::in_dir(ProcDir::open(pid)?)
    }

    fn in_dir(dir: ProcDir) -> io::Result<Self> {
        let stat = dir.open_file(c"stat")?;
        let start_time = parse_start_time(&String::from_utf8_lossy(read_whole(&stat, &mut Vec::with_capacity(1024))?))?;
        Ok(OwnerFiles { comm: dir.open_file(c"comm")?, status: dir.open_file(c"status")?, cgroup: dir.open_file(c"cgroup")?, start_time, dir })
    }
}

const NO_FD: u32 = u32::MAX;

/// A process that recently owned an intercepted socket, with the fd numbers those sockets had:
/// a process that opens one connection after another usually gets a just-freed fd number back,
/// so probing these few first avoids listing (and reading every link of) its whole fd table.
#[derive(Clone)]
struct Owner {
    pid: u32,
    /// Numbers its intercepted sockets had, most recently found first.
    hot_fds: [u32; HOT_FDS],
    /// Numbers of its flows that closed since, oldest first: Linux hands out the lowest free
    /// number, and a client closing a batch of connections reopens them in the same order.
    freed: [u32; HOT_FDS],
    files: Option<Arc<OwnerFiles>>,
}

fn used(fds: &[u32]) -> impl Iterator<Item = u32> + '_ {
    fds.iter().copied().take_while(|fd| *fd != NO_FD)
}

impl Owner {
    fn new(pid: u32) -> Self {
        Owner { pid, hot_fds: [NO_FD; HOT_FDS], freed: [NO_FD; HOT_FDS], files: None }
    }

    /// The fd numbers to try, the most likely first: freed numbers, then those of its recent
    /// sockets, then the two after the newest of them: a process that keeps its connections
    /// open gets the next numbers up for new ones, and without these its whole fd table would
    /// be read for every new flow (a cost growing with the flows it holds).
    fn probe_order(&self) -> impl Iterator<Item = u32> + '_ {
        let known = |fd: &u32| self.freed.contains(fd) || self.hot_fds.contains(fd);
        let next = used(&self.hot_fds[..1]).flat_map(|fd| [fd.saturating_add(1), fd.saturating_add(2)]).filter(move |fd| !known(fd));
        used(&self.freed).chain(used(&self.hot_fds).filter(|fd| !self.freed.contains(fd))).chain(next)
    }

    /// `fd` holds a new socket of this process now.
    fn found(&mut self, fd: u32) {
        if let Some(i) = self.hot_fds.iter().position(|f| *f == fd) {
            self.hot_fds[..=i].rotate_right(1);
        } else {
            self.hot_fds.rotate_right(1);
        }
        self.hot_fds[0] = fd;
        if let Some(i) = self.freed.iter().position(|f| *f == fd) {
            self.freed[i..].rotate_left(1);
            self.freed[HOT_FDS - 1] = NO_FD;
        }
    }

    /// The flow that `fd` held has closed.
    fn released(&mut self, fd: u32) {
        if self.freed.contains(&fd) {
            return;
        }
        let len = used(&self.freed).count();
        if len == HOT_FDS {
            self.freed.rotate_left(1); // forget the oldest
            self.freed[HOT_FDS - 1] = fd;
        } else {
            self.freed[len] = fd;
        }
    }
}

#[derive(Default)]
pub struct ProcfsBackend {
    /// Most recent first.
    recent: Mutex<VecDeque<Owner>>,
    /// Flow (workload socket address) → (pid, fd) that opened it, until the flow closes.
    open_flows: Mutex<HashMap<SocketAddr, (u32, u32)>>,
    /// Workloads that just started (process events), newest first: a flow no recent owner
    /// holds is most likely theirs.
    expected: Mutex<VecDeque<u32>>,
    /// Where flows from containers' addresses are looked for (`[containers] networks`).
    others: Option<OtherNamespaces>,
}

impl FlowIdentity for ProcfsBackend {
    fn name(&self) -> &'static str {
        "procfs"
    }

    fn process_of(&self, client: SocketAddr, dst: SocketAddr) -> Result<Arc<ProcessInfo>, IdentityError> {
        match sock_diag::lookup(client, dst)? {
            Some((inode, uid)) => self.holder(inode, uid, client, dst),
            None => self.container_process_of(client, dst),
        }
    }

    /// The fd of a closed flow is what its process most likely gets back for its next socket:
    /// probe it first next time.
    fn flow_closed(&self, client: SocketAddr) {
        let Some((pid, fd)) = self.open_flows.lock().remove(&client) else { return };
        if let Some(owner) = self.recent.lock().iter_mut().find(|o| o.pid == pid) {
            owner.released(fd);
        }
    }

    fn process_started(&self, pid: u32) {
        let mut expected = self.expected.lock();
        expected.retain(|p| *p != pid);
        expected.push_front(pid);
        expected.truncate(EXPECTED);
    }

    fn process_exited(&self, pid: u32) {
        self.expected.lock().retain(|p| *p != pid);
        self.forget(&[pid]);
    }
}

impl ProcfsBackend {
    /// A backend that also finds the processes of flows routed here from `networks`, in the
    /// network namespaces of this host's containers.
    pub fn with_containers(networks: Vec<crate::config::Cidr>) -> io::Result<Self> {
        let others = (!networks.is_empty()).then(|| OtherNamespaces::new(networks)).transpose()?;
        Ok(ProcfsBackend { others, ..Default::default() })
    }

    /// The process of a flow from a container: its socket looked for in the other network
    /// namespaces only (the caller found none in this one).
    pub fn container_process_of(&self, client: SocketAddr, dst: SocketAddr) -> Result<Arc<ProcessInfo>, IdentityError> {
        let found = match &self.others {
            Some(others) => others.lookup(client, dst)?,
            None => None,
        };
        let (inode, uid) = found.ok_or(IdentityError::NoSocket { client, dst })?;
        self.holder(inode, uid, client, dst)
    }

    /// The process holding socket `inode` of the flow from `client`, remembered until it closes.
    fn holder(&self, inode: u32, uid: u32, client: SocketAddr, dst: SocketAddr) -> Result<Arc<ProcessInfo>, IdentityError> {
        let (pid, fd, process) = self.owner_of(inode, uid).ok_or(IdentityError::NoOwner { inode, client, dst })?;
        let mut open = self.open_flows.lock();
        if open.len() >= OPEN_FLOWS {
            open.clear();
        }
        open.insert(client, (pid, fd));
        Ok(Arc::new(process))
    }

    /// Whether flows from `ip` may be containers' (see `with_containers`).
    pub fn covers(&self, ip: &std::net::IpAddr) -> bool {
        self.others.as_ref().is_some_and(|o| o.covers(ip))
    }

    /// The process holding socket `inode` (created by `socket_uid`) and the fd it holds it as.
    ///
    /// Only a process whose effective uid is the socket's is the answer: a socket is passed on
    /// (inherited by a setuid program or `sudo -u`, sent over a Unix socket) to processes of
    /// other users, and the flow must not take their identity. The socket's uid is the fsuid
    /// of the process that created it, which follows the effective uid (the one the rules
    /// select on); the real uid would not do, since a setuid program keeps its caller's.
    fn owner_of(&self, inode: u32, socket_uid: u32) -> Option<(u32, u32, ProcessInfo)> {
        let mut needle_buf = [0u8; 32];
        let needle = {
            let mut w = &mut needle_buf[..];
            std::io::Write::write_fmt(&mut w, format_args!("socket:[{inode}]")).expect("fits in 32 bytes");
            let len = 32 - w.len();
            &needle_buf[..len]
        };
        // Recent owners first; then workloads that just started; then the full walk of the
        // socket uid's processes; and for root's sockets, what `root_socket_holder` allows.
        let (pid, fd, files, process) = match self.among_recent(needle, socket_uid) {
            Some(found) => found,
            None => {
                let expected: Vec<u32> = self.expected.lock().iter().copied().collect();
                let found = expected
                    .into_iter()
                    .find_map(|pid| holder_of_uid(pid, FdTable::open(pid).ok()?.find(needle)?, socket_uid))
                    .or_else(|| holders(needle, Some(socket_uid)).find_map(|(pid, fd)| holder_of_uid(pid, fd, socket_uid)))
                    .or_else(|| if socket_uid == 0 { root_socket_holder(needle) } else { None })?;
                self.expected.lock().retain(|p| *p != found.0);
                found
            }
        };
        self.remember(pid, fd, files);
        Some((pid, fd, process))
    }

    /// The recent owner holding the socket `needle` names, under `socket_uid`. Owners found
    /// gone on the way are forgotten.
    fn among_recent(&self, needle: &[u8], socket_uid: u32) -> Option<Found> {
        let mut link = [0u8; 64];
        let mut gone = Vec::new();
        // One owner copied out at a time: the procfs reads must not hold the lock other flows
        // need, and the first owner usually is the one. (A concurrent reorder may skip one;
        // the full walk still finds it.)
        let nth = |i: usize| self.recent.lock().get(i).cloned();
        let found = (0..RECENT_OWNERS).map_while(nth).find_map(|owner| {
            // Older owners have no kept files: their directory is opened for this search only.
            let mut opened = None;
            let dir = match &owner.files {
                Some(files) => &files.dir,
                None => match ProcDir::open(owner.pid) {
                    Ok(dir) => opened.insert(dir),
                    Err(_) => {
                        gone.push(owner.pid);
                        return None;
                    }
                },
            };
            let fd = match owner.probe_order().find(|fd| dir.fd_target(*fd, &mut link).is_ok_and(|t| t == needle)) {
                Some(fd) => fd,
                None => match dir.fd_table() {
                    Ok(table) => table.find(needle)?,
                    Err(_) => {
                        gone.push(owner.pid); // exited: searched in vain once, never again
                        return None;
                    }
                },
            };
            let files = match (&owner.files, opened) {
                (Some(files), _) => files.clone(),
                (None, Some(dir)) => Arc::new(OwnerFiles::in_dir(dir).ok()?),
                (None, None) => unreachable!("an owner without kept files had its directory opened"),
            };
            // Read fresh for every flow: execve and setuid change exe and uid under the same
            // pid and start time, and the identity must be the one at connect time.
            match read_process_from(owner.pid, &files) {
                Ok(p) if p.uid == socket_uid => Some((owner.pid, fd, files, p)),
                Ok(_) => None, // holds another user's socket: someone else may hold it too
                Err(_) => {
                    gone.push(owner.pid); // gone: its kept files would only fail again
                    None
                }
            }
        });
        if !gone.is_empty() {
            self.forget(&gone);
        }
        found
    }

    /// `pid` goes first among the recent owners, with its files kept and `fd` probed first.
    fn remember(&self, pid: u32, fd: u32, files: Arc<OwnerFiles>) {
        let mut recent = self.recent.lock();
        let mut owner = match recent.iter().position(|o| o.pid == pid) {
            Some(i) => recent.remove(i).expect("index from position"),
            None => Owner::new(pid),
        };
        owner.found(fd);
        owner.files = Some(files);
        recent.push_front(owner);
        recent.truncate(RECENT_OWNERS);
        for older in recent.iter_mut().skip(OWNERS_WITH_FILES) {
            older.files = None;
        }
    }

    fn forget(&self, pids: &[u32]) {
        self.recent.lock().retain(|o| !pids.contains(&o.pid));
    }
}

/// A process holding the socket: pid, the fd it holds it as, its kept files, what it is.
type Found = (u32, u32, Arc<OwnerFiles>, ProcessInfo);

/// Process `pid`, which holds the socket as `fd`, if its effective uid is `uid`.
fn holder_of_uid(pid: u32, fd: u32, uid: u32) -> Option<Found> {
    let files = OwnerFiles::open(pid).ok()?;
    let p = read_process_from(pid, &files).ok()?;
    (p.uid == uid).then(|| (pid, fd, Arc::new(files), p))
}

/// A socket root created that no root process holds (a daemon that connected before it
/// dropped privileges): its holder, only if every process holding it has the same uid, and
/// marked so that only a rule allowing it (`root_socket = true`) matches. Two users holding
/// it is nobody's flow. It walks all of /proc: such flows are rare and known to be slow.
fn root_socket_holder(needle: &[u8]) -> Option<Found> {
    let mut first: Option<Found> = None;
    for (pid, fd) in holders(needle, None) {
        let Ok(files) = OwnerFiles::open(pid) else { continue };
        let Ok(mut p) = read_process_from(pid, &files) else { continue }; // gone meanwhile
        match &first {
            None => {
                p.root_socket = p.uid != 0;
                first = Some((pid, fd, Arc::new(files), p));
            }
            Some(held) if held.3.uid == p.uid => {}
            Some(_) => return None,
        }
    }
    first
}

/// (pid, fd) of the processes holding `needle` (of effective uid `uid`, if given), walking
/// all of /proc. Newest processes first: a workload unknown to the recent-owner list has most
/// likely just started, and its high pid is then found after a handful of entries instead of
/// after every process on the host.
fn holders(needle: &[u8], uid: Option<u32>) -> impl Iterator<Item = (u32, u32)> + '_ {
    let mut entries: Vec<(u32, std::fs::DirEntry)> =
        std::fs::read_dir("/proc").into_iter().flatten().flatten().filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e))).collect();
    entries.sort_unstable_by_key(|e| std::cmp::Reverse(e.0));
    entries.into_iter().filter_map(move |(pid, entry)| {
        // The directory's owner is the process's effective uid (a cheap first filter; the
        // holder's ids are read in full before it is taken).
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

/// The start time (field 22) of /proc/<pid>/stat.
pub(super) fn parse_start_time(stat: &str) -> io::Result<u64> {
    // comm may contain spaces and parentheses: it ends at the last ')'.
    let close = stat.rfind(')').ok_or_else(|| malformed("stat"))?;
    // Fields after comm start at field 3 (state); starttime is field 22.
    stat[close + 1..].split_whitespace().nth(19).and_then(|f| f.parse().ok()).ok_or_else(|| malformed("stat starttime"))
}

/// /proc/<pid>/comm is the name and one newline (the name itself may hold newlines).
fn parse_comm(comm: &[u8]) -> String {
    String::from_utf8_lossy(comm.strip_suffix(b"\n").unwrap_or(comm)).into_owned()
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
    read_process_from(pid, &OwnerFiles::open(pid)?)
}

fn read_process_from(pid: u32, files: &OwnerFiles) -> io::Result<ProcessInfo> {
    // One buffer for the files; each is parsed before the next read reuses it.
    let mut buf = Vec::with_capacity(4096);
    let text = String::from_utf8_lossy;
    let comm = parse_comm(read_whole(&files.comm, &mut buf)?);
    // The directory's owner is the cheap answer (a stat, where status is rendered in full);
    // root, a kernel thread and a gone process all show uid 0 there, so those read status.
    let (uid, gid) = match files.dir.effective_ids() {
        Some(ids) => ids,
        None => {
            let status = text(read_whole(&files.status, &mut buf)?);
            (effective_id(&status, "Uid:")?, effective_id(&status, "Gid:")?)
        }
    };
    let mut link = [0u8; 4096];
    // An exiting process has no exe any more: unknown, so no exe selector matches it.
    let exe = files.dir.readlink(c"exe", &mut link).map(|b| text(b).into_owned()).ok();
    // The path above is as the process's mount namespace shows it, which its user may control:
    // the file's identity says which file it is (see `Selector`).
    let exe_id = files.dir.exe_id().ok();
    let cgroup = read_whole(&files.cgroup, &mut buf).map(|b| parse_cgroup(&text(b))).ok();
    let container_id = cgroup.as_deref().and_then(super::container::id_from_cgroup).map(str::to_string);
    Ok(ProcessInfo {
        tgid: pid,
        uid,
        gid,
        exe_unknown: exe.is_none(),
        cgroup_unknown: cgroup.is_none(),
        exe: exe.unwrap_or_default(),
        comm,
        cgroup: cgroup.unwrap_or_default(),
        start_time: files.start_time,
        exe_id,
        root_socket: false,
        container_id,
        routed_from: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let me = read_process(std::process::id()).unwrap();
        assert_eq!(me.tgid, std::process::id());
        assert_eq!(me.uid, rustix::process::geteuid().as_raw());
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
        let front = backend.recent.lock().front().unwrap().clone();
        assert_eq!(front.pid, std::process::id());
        assert_eq!(front.hot_fds[0], std::os::fd::AsRawFd::as_raw_fd(&client) as u32);
        let again = backend.process_of(client.local_addr().unwrap(), client.peer_addr().unwrap()).unwrap();
        assert_eq!(again.tgid, std::process::id());
        // A second socket of the same process is found behind the remembered one.
        let other = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        assert_eq!(backend.process_of(other.local_addr().unwrap(), other.peer_addr().unwrap()).unwrap().tgid, std::process::id());
        let front = backend.recent.lock().front().unwrap().clone();
        assert_eq!(front.hot_fds[..2], [std::os::fd::AsRawFd::as_raw_fd(&other) as u32, std::os::fd::AsRawFd::as_raw_fd(&client) as u32]);
        assert_eq!(backend.recent.lock().len(), 1);
        let missing = backend.process_of("127.0.0.1:1".parse().unwrap(), "127.0.0.1:2".parse().unwrap());
        assert!(matches!(missing, Err(IdentityError::NoSocket { .. })), "{missing:?}");
        assert!(front.files.is_some(), "the most recent owner keeps its procfs files open");
    }

    #[test]
    fn closed_flows_fds_are_probed_first_oldest_first() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let backend = ProcfsBackend::default();
        let socks: Vec<_> = (0..3).map(|_| std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap()).collect();
        for s in &socks {
            backend.process_of(s.local_addr().unwrap(), s.peer_addr().unwrap()).unwrap();
        }
        let fd = |i: usize| std::os::fd::AsRawFd::as_raw_fd(&socks[i]) as u32;
        let order = |backend: &ProcfsBackend| backend.recent.lock().front().unwrap().probe_order().collect::<Vec<_>>();
        let order = |backend: &ProcfsBackend| order(backend)[..3].to_vec();
        assert_eq!(order(&backend), [fd(2), fd(1), fd(0)], "most recently found first");
        // Flows 1 and then 0 end: a client reconnecting reuses their numbers in that order.
        backend.flow_closed(socks[1].local_addr().unwrap());
        backend.flow_closed(socks[0].local_addr().unwrap());
        backend.flow_closed(socks[0].local_addr().unwrap()); // a second report changes nothing
        backend.flow_closed("127.0.0.1:9".parse().unwrap()); // nor does an unknown flow
        assert_eq!(order(&backend), [fd(1), fd(0), fd(2)]);
        // Found again (as a new socket would be): no longer freed, and first among the found.
        backend.process_of(socks[1].local_addr().unwrap(), socks[1].peer_addr().unwrap()).unwrap();
        assert_eq!(order(&backend), [fd(0), fd(1), fd(2)]);
    }

    #[test]
    fn the_numbers_after_the_newest_socket_are_probed_last() {
        let mut owner = Owner::new(1);
        assert_eq!(owner.probe_order().count(), 0, "nothing known, nothing probed");
        owner.found(40);
        owner.found(41);
        assert_eq!(owner.probe_order().collect::<Vec<_>>(), [41, 40, 42, 43]);
        owner.released(40);
        owner.found(42);
        assert_eq!(owner.probe_order().collect::<Vec<_>>(), [40, 42, 41, 43, 44]);
    }

    #[test]
    fn freed_fds_keep_the_newest_when_full() {
        let mut owner = Owner::new(1);
        for fd in 0..(HOT_FDS as u32 + 2) {
            owner.released(fd);
        }
        let order: Vec<u32> = owner.probe_order().collect();
        assert_eq!(order, (2..HOT_FDS as u32 + 2).collect::<Vec<_>>());
    }

    #[test]
    fn an_exited_owner_is_dropped_after_one_vain_search() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // Another process holding a socket: bash's /dev/tcp.
        let mut child =
            std::process::Command::new("bash").args(["-c", &format!("exec 3<>/dev/tcp/127.0.0.1/{port}; exec sleep 30")]).spawn().unwrap();
        let (_conn, child_addr) = listener.accept().unwrap();
        let backend = ProcfsBackend::default();
        let theirs = backend.process_of(child_addr, listener.local_addr().unwrap()).unwrap();
        assert_eq!(theirs.tgid, child.id());
        child.kill().unwrap();
        child.wait().unwrap();
        let ours = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let me = backend.process_of(ours.local_addr().unwrap(), ours.peer_addr().unwrap()).unwrap();
        assert_eq!(me.tgid, std::process::id());
        let pids: Vec<u32> = backend.recent.lock().iter().map(|o| o.pid).collect();
        assert_eq!(pids, [std::process::id()], "the exited owner is no longer searched");
    }

    #[test]
    fn cheap_reads_agree_with_stat_and_status() {
        let me = read_process(std::process::id()).unwrap();
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let comm = &stat[stat.find('(').unwrap() + 1..stat.rfind(')').unwrap()];
        assert_eq!(me.comm, comm);
        assert_eq!(me.start_time, parse_start_time(&stat).unwrap());
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        assert_eq!((me.uid, me.gid), (effective_id(&status, "Uid:").unwrap(), effective_id(&status, "Gid:").unwrap()));
        assert_eq!(parse_comm(b"a\nb\n"), "a\nb", "only the closing newline goes");
    }

    #[test]
    fn a_process_that_is_not_dumpable_shows_its_effective_ids() {
        // Real and effective uids differ: the kernel makes it non-dumpable, so its status and
        // other files belong to root, and only its directory (or status' text) has its ids.
        let mut child = std::process::Command::new("setpriv")
            .args(["--ruid=65533", "--euid=65534", "--rgid=65533", "--egid=65532", "--clear-groups", "sleep", "30"])
            .spawn()
            .expect("setpriv (util-linux)");
        let pid = child.id();
        let status = (0..200)
            .find_map(|_| {
                let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
                let exec_done = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()? == "sleep\n";
                exec_done.then_some(s).or_else(|| {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    None
                })
            })
            .expect("the child runs sleep");
        let files_owner = std::fs::metadata(format!("/proc/{pid}/status")).unwrap();
        let p = read_process(pid).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::uid(&files_owner), 0, "not dumpable: its files are root's");
        assert_eq!((effective_id(&status, "Uid:").unwrap(), effective_id(&status, "Gid:").unwrap()), (65534, 65532));
        assert_eq!((p.uid, p.gid), (65534, 65532));
    }

    /// `f` run with this thread's fsuid set to `uid`: sockets it creates are that user's.
    fn as_fsuid<T>(uid: u32, f: impl FnOnce() -> T) -> T {
        // SAFETY: setfsuid changes this thread's file-system uid only; it is set back below.
        let before = unsafe { libc::setfsuid(uid) };
        let out = f();
        // SAFETY: as above; this puts back the uid the thread had.
        unsafe { libc::setfsuid(before as u32) };
        out
    }

    /// A process of `uid` that holds `sock` (as its fd 3), as a program the socket's creator
    /// started or sent it to does. Killed on drop.
    struct Holder(std::process::Child);

    impl Holder {
        fn new(sock: &std::net::TcpStream, uid: u32) -> Self {
            use std::os::unix::process::CommandExt;
            let fd = std::os::fd::AsRawFd::as_raw_fd(sock);
            let id = uid.to_string();
            let mut cmd = std::process::Command::new("setpriv");
            cmd.args([&format!("--reuid={id}"), &format!("--regid={id}"), "--clear-groups", "sleep", "30"]);
            // SAFETY: dup2 and fcntl are async-signal-safe; the copy without close-on-exec is
            // the child's only.
            unsafe {
                cmd.pre_exec(move || {
                    let r = if fd == 3 { libc::fcntl(3, libc::F_SETFD, 0) } else { libc::dup2(fd, 3) };
                    if r < 0 {
                        Err(io::Error::last_os_error())
                    } else {
                        Ok(())
                    }
                })
            };
            let child = cmd.spawn().expect("setpriv (util-linux)");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while std::fs::read_to_string(format!("/proc/{}/comm", child.id())).ok().as_deref() != Some("sleep\n") {
                assert!(std::time::Instant::now() < deadline, "the holder did not start");
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Holder(child)
        }
    }

    impl Drop for Holder {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn a_socket_is_attributed_only_to_a_process_of_its_uid() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let sock = as_fsuid(65534, || std::net::TcpStream::connect(listener.local_addr().unwrap())).unwrap();
        let (src, dst) = (sock.local_addr().unwrap(), sock.peer_addr().unwrap());
        let backend = ProcfsBackend::default();
        // This (root) process holds uid 65534's socket, as a setuid-root program that inherited
        // it would: not the answer.
        let got = backend.process_of(src, dst);
        assert!(matches!(got, Err(IdentityError::NoOwner { .. })), "{got:?}");
        // Nor is another user's process holding it too.
        let _other = Holder::new(&sock, 65533);
        let got = backend.process_of(src, dst);
        assert!(matches!(got, Err(IdentityError::NoOwner { .. })), "{got:?}");
        // Its own user's process is, even behind the others.
        let own = Holder::new(&sock, 65534);
        let _newer = Holder::new(&sock, 65532);
        let p = backend.process_of(src, dst).unwrap();
        assert_eq!((p.tgid, p.uid, p.root_socket), (own.0.id(), 65534, false));
        // Found again among the recent owners.
        assert_eq!(backend.process_of(src, dst).unwrap().tgid, own.0.id());
    }

    #[test]
    fn a_root_socket_passed_to_one_other_user_is_theirs_if_rules_allow() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let sock = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (src, dst) = (sock.local_addr().unwrap(), sock.peer_addr().unwrap());
        let backend = ProcfsBackend::default();
        let user = Holder::new(&sock, 65534);
        // While root holds it, it is root's.
        let p = backend.process_of(src, dst).unwrap();
        assert_eq!((p.tgid, p.uid, p.root_socket), (std::process::id(), 0, false));
        drop(sock);
        // Then only the user's process holds it: the answer, marked for the rules.
        let p = backend.process_of(src, dst).unwrap();
        assert_eq!((p.tgid, p.uid, p.root_socket), (user.0.id(), 65534, true));
        // Another root socket that two users hold: nobody's.
        let sock = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (src, dst) = (sock.local_addr().unwrap(), sock.peer_addr().unwrap());
        let (_a, _b) = (Holder::new(&sock, 65534), Holder::new(&sock, 65533));
        drop(sock);
        let got = backend.process_of(src, dst);
        assert!(matches!(got, Err(IdentityError::NoOwner { .. })), "{got:?}");
    }

    #[test]
    fn a_gone_owner_is_not_answered_from_its_kept_files() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let backend = ProcfsBackend::default();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        backend.process_of(client.local_addr().unwrap(), client.peer_addr().unwrap()).unwrap();
        // A child process that has exited and been reaped: its files fail, nothing is read.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let files = OwnerFiles::open(pid).unwrap();
        child.wait().unwrap();
        let err = read_process_from(pid, &files).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ESRCH), "{err}");
    }
}
