//! Flow → process → SPIFFE ID. A `FlowIdentity` backend answers "which process opened this
//! flow?"; the selector turns the process into a SPIFFE ID; results are cached per process
//! and reused only while every selected attribute is unchanged (a reused pid, an execve or a
//! setuid never inherits an identity).
mod container;
mod exe_file;
mod kmod;
pub mod kmod_envelope;
mod kmod_uapi;
mod netns;
mod proc_events;
mod procdir;
mod procfs;
mod runtime_api;
mod selector;
mod sock_diag;

pub use kmod::{kmod_device, KmodBackend, KMOD_DEVICE};
pub use netns::containers_have_own_tcp_tables;
pub use proc_events::{ProcEvent, ProcEvents};
pub use procfs::{read_process, ProcfsBackend};
pub use selector::Selector;

use crate::spiffe::SpiffeId;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The process that opened a flow, as the identity rules see it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProcessInfo {
    pub tgid: u32,
    pub uid: u32,
    pub gid: u32,
    pub exe: String,
    pub comm: String,
    /// cgroup v2 path (`/system.slice/foo.service`).
    pub cgroup: String,
    /// Start time in clock ticks since boot (procfs) or nanoseconds (kmod): identity of a pid.
    pub start_time: u64,
    /// `exe` is truncated or could not be read: no `exe` selector matches it.
    pub exe_unknown: bool,
    /// `cgroup` is truncated or could not be read: no `cgroup` selector matches it.
    pub cgroup_unknown: bool,
    /// The file the process runs; `None` when it is not known (the process is gone, or the
    /// backend could not tell): no `exe` or `sha256` selector matches such a process.
    pub exe_id: Option<ExeId>,
    /// The flow's socket was created by root and is held only by processes of this one's uid,
    /// which is not root (procfs backend): only rules with `root_socket = true` match it.
    pub root_socket: bool,
    /// The container the process runs in (from its cgroup), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// For a flow routed through this host from a machine behind it (a site), where it came
    /// from: there is no process here, and every other field is empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routed_from: Option<RoutedFrom>,
}

/// The interface and source address of a flow routed through this host.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RoutedFrom {
    pub interface: String,
    pub address: std::net::IpAddr,
}

impl ProcessInfo {
    /// The stand-in for the process of a flow from a machine behind this host.
    pub fn routed(interface: String, address: std::net::IpAddr) -> Self {
        ProcessInfo {
            tgid: 0,
            uid: u32::MAX,
            gid: u32::MAX,
            exe: String::new(),
            comm: String::new(),
            cgroup: String::new(),
            start_time: 0,
            exe_unknown: true,
            cgroup_unknown: true,
            exe_id: None,
            root_socket: false,
            container_id: None,
            routed_from: Some(RoutedFrom { interface, address }),
        }
    }
}

/// Which file a process runs: device (userspace `st_dev` encoding, as
/// `std::os::unix::fs::MetadataExt::dev` gives it) and inode of `/proc/<pid>/exe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ExeId {
    pub dev: u64,
    pub ino: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("no socket matches flow {client} -> {dst}")]
    NoSocket { client: SocketAddr, dst: SocketAddr },
    #[error("socket inode {inode} of flow {client} -> {dst} has no live owner process")]
    NoOwner { inode: u32, client: SocketAddr, dst: SocketAddr },
    #[error("identity backend: {0}")]
    Io(#[from] std::io::Error),
}

/// Answers "who opened this flow?" for an accepted, redirected connection.
pub trait FlowIdentity: Send + Sync {
    /// Short name shown in logs and status: "procfs" or "kmod".
    fn name(&self) -> &'static str;
    /// `client` is the workload socket's address, `dst` the flow's original destination.
    fn process_of(&self, client: SocketAddr, dst: SocketAddr) -> Result<Arc<ProcessInfo>, IdentityError>;
    /// The flow from `client` that `process_of` answered for has closed (a hint for the next
    /// lookup; backends that keep nothing per flow ignore it).
    fn flow_closed(&self, _client: SocketAddr) {}
    /// A reload changed the intercepted destinations (backends that see flows only once they
    /// are redirected ignore it).
    fn reconfigure(&self, _routes: &[crate::config::OutboundRule], _intercept: &crate::config::Intercept) -> anyhow::Result<()> {
        Ok(())
    }
    /// Process `pid` just exec'd into a workload: its first flow is likely soon.
    fn process_started(&self, _pid: u32) {}
    /// Process `pid` exited: nothing kept for it is of use any more.
    fn process_exited(&self, _pid: u32) {}
}

/// The kernel module records the sockets of its own network namespace: flows routed here from
/// containers' addresses that it does not know are looked for in the containers' namespaces.
pub struct WithContainers {
    pub host: Box<dyn FlowIdentity>,
    pub containers: ProcfsBackend,
}

impl FlowIdentity for WithContainers {
    fn name(&self) -> &'static str {
        self.host.name()
    }

    fn process_of(&self, client: SocketAddr, dst: SocketAddr) -> Result<Arc<ProcessInfo>, IdentityError> {
        match self.host.process_of(client, dst) {
            Err(IdentityError::NoSocket { .. }) if self.containers.covers(&client.ip()) => self.containers.container_process_of(client, dst),
            other => other,
        }
    }

    fn flow_closed(&self, client: SocketAddr) {
        self.host.flow_closed(client);
        self.containers.flow_closed(client);
    }

    fn reconfigure(&self, routes: &[crate::config::OutboundRule], intercept: &crate::config::Intercept) -> anyhow::Result<()> {
        self.host.reconfigure(routes, intercept)
    }

    fn process_started(&self, pid: u32) {
        self.host.process_started(pid);
    }

    fn process_exited(&self, pid: u32) {
        self.host.process_exited(pid);
        self.containers.process_exited(pid);
    }
}

/// A process with its resolved identity and the pre-rendered header telling the peer about it.
#[derive(Debug)]
pub struct Workload {
    pub process: Arc<ProcessInfo>,
    pub spiffe_id: Option<SpiffeId>,
    /// `pid=…;uid=…;exe=…`, sent to the peer for its decision log (informational only).
    pub process_header: http::HeaderValue,
}

const CACHE_LIMIT: usize = 8192;

/// The identity backend, and each process's workload as the selectors of one policy
/// generation made it (a reload's new selectors re-decide every process).
pub struct Identities {
    backend: Box<dyn FlowIdentity>,
    /// By pid; an entry counts only for the process with its start time (pids are reused).
    cache: RwLock<HashMap<u32, (u64, Arc<Workload>)>>,
}

impl Identities {
    pub fn new(backend: Box<dyn FlowIdentity>) -> Self {
        Identities { backend, cache: RwLock::new(HashMap::new()) }
    }

    pub fn backend(&self) -> &dyn FlowIdentity {
        self.backend.as_ref()
    }

    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// The process that opened the flow, and the SPIFFE ID `selector` (of policy
    /// `generation`) gives it.
    pub fn resolve(&self, client: SocketAddr, dst: SocketAddr, selector: &Selector, generation: u64) -> Result<Arc<Workload>, IdentityError> {
        let process = self.backend.process_of(client, dst)?;
        if let Some((g, w)) = self.cache.read().get(&process.tgid) {
            // Same pid and start time is not enough: execve and setuid change the process.
            if *g == generation && *w.process == *process {
                return Ok(w.clone());
            }
        }
        let workload = Arc::new(Workload { spiffe_id: selector.select(&process), process_header: process_header(&process), process });
        let mut cache = self.cache.write();
        if cache.len() >= CACHE_LIMIT {
            cache.clear(); // rare; recomputing is cheap and keeps memory bounded
        }
        cache.insert(workload.process.tgid, (generation, workload.clone()));
        Ok(workload)
    }

    /// A hint from the process events: `pid` exec'd into a workload.
    pub fn process_started(&self, pid: u32) {
        self.backend.process_started(pid);
    }

    /// A hint from the process events: `pid` is gone, and so is what was cached for it.
    pub fn process_exited(&self, pid: u32) {
        self.cache.write().remove(&pid);
        self.backend.process_exited(pid);
    }

    /// Held while the flow from `client` runs: its drop tells the backend that the flow is
    /// over (see `FlowIdentity::flow_closed`).
    pub fn open_flow(&self, client: SocketAddr) -> OpenFlow<'_> {
        OpenFlow { identities: self, client, told: AtomicBool::new(false) }
    }
}

pub struct OpenFlow<'a> {
    identities: &'a Identities,
    client: SocketAddr,
    told: AtomicBool,
}

impl OpenFlow<'_> {
    /// The workload closed its end: as good as over for the backend, and the sooner it knows
    /// the better (the workload's next connection may follow at once). Told once per flow.
    pub fn client_done(&self) {
        if !self.told.swap(true, Ordering::Relaxed) {
            self.identities.backend.flow_closed(self.client);
        }
    }
}

impl Drop for OpenFlow<'_> {
    fn drop(&mut self) {
        self.client_done();
    }
}

impl Workload {
    /// The workload of a flow from a machine behind this host, which a site rule named.
    pub fn routed(interface: String, address: std::net::IpAddr, id: SpiffeId) -> Self {
        let process = Arc::new(ProcessInfo::routed(interface, address));
        Workload { spiffe_id: Some(id), process_header: process_header(&process), process }
    }
}

fn process_header(p: &ProcessInfo) -> http::HeaderValue {
    // Field values as visible ASCII without the separator.
    let safe = |v: &str| -> String { v.chars().map(|c| if c.is_ascii_graphic() && c != ';' { c } else { '_' }).collect() };
    let text = match &p.routed_from {
        Some(r) => format!("routed={};iface={}", r.address, safe(&r.interface)),
        None => format!("pid={};uid={};gid={};exe={}", p.tgid, p.uid, p.gid, safe(&p.exe)),
    };
    http::HeaderValue::from_str(&text).unwrap_or_else(|_| http::HeaderValue::from_static("unknown"))
}
