//! Sockets in the other network namespaces on this host (containers): a flow routed through
//! this host from a container's address was opened by a socket in the container's namespace,
//! which sock_diag in idgate's own namespace cannot see. Each namespace's TCP table is read
//! through `/proc/<pid>/net/tcp{,6}` of a process in it: no namespace is entered, so the
//! sandbox of idgate's unit (no CAP_SYS_ADMIN, `RestrictNamespaces=yes`) allows it. The
//! namespace a source address was last found in is read first; only a miss walks the
//! namespaces of /proc.
use super::procdir::ProcDir;
use crate::config::Cidr;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

/// Source addresses remembered with the namespace they were found in.
const SOURCES: usize = 65_536;

/// A namespace, seen through a process in it: the `/proc/<pid>` handle fails once that process
/// is gone (whoever reuses the pid), so it never shows another namespace.
struct Space {
    dir: ProcDir,
}

impl Space {
    /// (inode, uid) of the TCP socket from `src` to `dst` in this namespace. An IPv4 flow may
    /// also come from an IPv6 socket (an IPv4-mapped address), listed in tcp6.
    fn lookup(&self, src: SocketAddr, dst: SocketAddr) -> io::Result<Option<(u32, u32)>> {
        if let (IpAddr::V4(s), IpAddr::V4(d)) = (src.ip(), dst.ip()) {
            if let Some(found) = self.search(c"net/tcp", &tcp_entry(s, src.port()), &tcp_entry(d, dst.port()))? {
                return Ok(Some(found));
            }
        }
        self.search(c"net/tcp6", &tcp6_entry(src), &tcp6_entry(dst))
    }

    fn search(&self, table: &std::ffi::CStr, local: &str, remote: &str) -> io::Result<Option<(u32, u32)>> {
        let file = std::fs::File::from(self.dir.open_file(table)?);
        TABLE_BUFFER.with_borrow_mut(|buf| search_table(file, buf, |lines| find(lines, local, remote)))
    }
}

thread_local! {
    /// Each worker thread's buffer for TCP tables, kept between lookups.
    static TABLE_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Searches a TCP table as it is read, with as few reads as its size allows, and stops at the
/// entry: each read of `/proc/net/tcp` goes back into the kernel's socket hash (every
/// namespace's sockets are in it) to find where the last one stopped, so every read saved
/// counts. `search` sees whole lines only (the header line too). `buf` only grows.
fn search_table<T>(mut file: std::fs::File, buf: &mut Vec<u8>, search: impl Fn(&str) -> Option<T>) -> io::Result<Option<T>> {
    if buf.len() < TABLE_READ {
        buf.resize(TABLE_READ, 0);
    }
    let (mut len, mut searched) = (0, 0);
    loop {
        if len == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let n = match file.read(&mut buf[len..]) {
            Ok(0) => return Ok(None),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        len += n;
        // Lines end where the last newline is; what follows waits for the next read.
        let Some(end) = buf[searched..len].iter().rposition(|b| *b == b'\n').map(|p| searched + p + 1) else { continue };
        let lines = std::str::from_utf8(&buf[searched..end]).map_err(|_| io::Error::other("a TCP table that is not text"))?;
        if let Some(found) = search(lines) {
            return Ok(Some(found));
        }
        searched = end;
    }
}

/// The first read's size: room for several hundred sockets (it doubles for more).
const TABLE_READ: usize = 128 << 10;

/// How `/proc/net/tcp{,6}` write an address and port: each 32-bit word of the address as the
/// kernel holds it (network order) printed as a native number, in hex, then the port.
fn tcp_entry(ip: std::net::Ipv4Addr, port: u16) -> String {
    format!("{:08X}:{:04X}", u32::from_ne_bytes(ip.octets()), port)
}

/// The same in tcp6, where an IPv4 address is IPv4-mapped.
fn tcp6_entry(a: SocketAddr) -> String {
    let octets = match a.ip() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    };
    let w = |i: usize| u32::from_ne_bytes(octets[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
    format!("{:08X}{:08X}{:08X}{:08X}:{:04X}", w(0), w(1), w(2), w(3), a.port())
}

/// The (inode, uid) of the entry from `local` to `remote`: fields 2 and 3 are the addresses,
/// 8 the uid (as idgate's user namespace sees it: the host's view of a user-namespaced
/// container's uid), 10 the inode.
fn find(table: &str, local: &str, remote: &str) -> Option<(u32, u32)> {
    // The header line names the columns: its fields never equal two addresses.
    table.lines().find_map(|line| {
        let mut f = line.split_ascii_whitespace();
        let (l, r) = (f.nth(1)?, f.next()?);
        if l != local || r != remote {
            return None;
        }
        let uid = f.nth(4)?.parse().ok()?;
        let inode = f.nth(1)?.parse().ok()?;
        Some((inode, uid))
    })
}

#[derive(Default)]
struct State {
    /// By the namespace's inode.
    spaces: HashMap<u64, Arc<Space>>,
    by_source: HashMap<IpAddr, u64>,
}

/// The namespaces flows from `networks` may come from.
pub struct OtherNamespaces {
    networks: Vec<Cidr>,
    /// idgate's own namespace, which sock_diag has answered for already.
    own: u64,
    state: Mutex<State>,
}

impl OtherNamespaces {
    pub fn new(networks: Vec<Cidr>) -> io::Result<Self> {
        let own = std::fs::metadata("/proc/self/ns/net")?.ino();
        Ok(OtherNamespaces { networks, own, state: Mutex::new(State::default()) })
    }

    /// Whether flows from `ip` are looked for here.
    pub fn covers(&self, ip: &IpAddr) -> bool {
        self.networks.iter().any(|n| n.contains(ip))
    }

    /// The socket whose local address is `src` and remote address `dst`, in whichever
    /// namespace on this host holds it: its inode and uid.
    pub fn lookup(&self, src: SocketAddr, dst: SocketAddr) -> io::Result<Option<(u32, u32)>> {
        if !self.covers(&src.ip()) {
            return Ok(None);
        }
        let last = {
            let state = self.state.lock();
            state.by_source.get(&src.ip()).and_then(|ns| state.spaces.get(ns).cloned())
        };
        // A namespace whose process went away answers with an error: walk them all then.
        if let Some(Ok(Some(found))) = last.map(|space| space.lookup(src, dst)) {
            return Ok(Some(found));
        }
        for (ns, space) in self.refresh() {
            if let Ok(Some(found)) = space.lookup(src, dst) {
                let mut state = self.state.lock();
                if state.by_source.len() >= SOURCES {
                    state.by_source.clear();
                }
                state.by_source.insert(src.ip(), ns);
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// Every namespace processes on this host are in now (but ours), each with a process of
    /// it; the gone ones forgotten.
    fn refresh(&self) -> Vec<(u64, Arc<Space>)> {
        let mut seen = HashSet::new();
        let mut opened = Vec::new();
        let known: HashMap<u64, Arc<Space>> = self.state.lock().spaces.clone();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            let Ok(meta) = std::fs::metadata(entry.path().join("ns/net")) else { continue }; // gone, or a kernel thread
            let ns = meta.ino();
            if ns == self.own || !seen.insert(ns) {
                continue;
            }
            // A known namespace keeps its process while that one lives.
            if known.get(&ns).is_some_and(|s| s.dir.open_file(c"net/tcp").is_ok()) {
                continue;
            }
            match ProcDir::open(pid) {
                Ok(dir) => opened.push((ns, Arc::new(Space { dir }))),
                Err(e) => tracing::debug!(pid, netns = ns, error = %e, "cannot look into network namespace"),
            }
        }
        let mut state = self.state.lock();
        state.spaces.retain(|ns, _| seen.contains(ns));
        state.spaces.extend(opened);
        state.by_source.retain(|_, ns| seen.contains(ns));
        state.spaces.iter().map(|(ns, s)| (*ns, s.clone())).collect()
    }
}

/// Whether network namespaces created from now on get TCP tables of their own
/// (`net.ipv4.tcp_child_ehash_entries`, Linux 6.1 and later), so that reading a container's
/// `/proc/<pid>/net/tcp` walks its own sockets, not every socket on the host.
pub fn containers_have_own_tcp_tables() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_child_ehash_entries").is_ok_and(|v| v.trim().parse::<u32>().is_ok_and(|n| n > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_socket_in_the_tcp_table_as_proc_writes_it() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (src, dst) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
        let space = Space { dir: ProcDir::open(std::process::id()).unwrap() };
        let (inode, uid) = space.lookup(src, dst).unwrap().expect("our own socket is in our namespace's table");
        let want = super::super::sock_diag::lookup(src, dst).unwrap().unwrap();
        assert_eq!((inode, uid), want, "the same inode and uid as sock_diag gives");
        assert_eq!(space.lookup(dst, src).unwrap().map(|f| f.0 == inode), Some(false), "the other end is another socket");
        assert!(space.lookup(src, "127.0.0.1:1".parse().unwrap()).unwrap().is_none());
        let v6 = std::net::TcpListener::bind("[::1]:0");
        if let Ok(v6) = v6 {
            let c6 = std::net::TcpStream::connect(v6.local_addr().unwrap()).unwrap();
            let found = space.lookup(c6.local_addr().unwrap(), c6.peer_addr().unwrap()).unwrap();
            assert_eq!(found, super::super::sock_diag::lookup(c6.local_addr().unwrap(), c6.peer_addr().unwrap()).unwrap());
        }
    }
}
