//! The kernel-module identity backend: idgate.ko recorded the connecting process at SYN time
//! (so even a process that already exited is known); we configure it and look flows up
//! through /dev/idgate.
use super::kmod_uapi as uapi;
use super::procdir::{read_whole, ProcDir};
use super::{ExeId, FlowIdentity, IdentityError, ProcessInfo};
use crate::config::{Intercept, OutboundRule};
use anyhow::{bail, Context, Result};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;

pub const KMOD_DEVICE: &str = "/dev/idgate";

/// The module's device: `/dev/idgate`, or `IDGATE_KMOD_DEVICE` where devtmpfs is elsewhere
/// (containers) and in tests.
pub fn kmod_device() -> std::path::PathBuf {
    std::env::var_os("IDGATE_KMOD_DEVICE").map(Into::into).unwrap_or_else(|| KMOD_DEVICE.into())
}

pub struct KmodBackend {
    device: File,
    exes: RecordedExes,
}

/// Recorded processes kept open for their executable's identity.
const KEPT_PROCESSES: usize = 256;

/// The file a recorded process runs. The module records its exe path at SYN time but not the
/// file's identity, so that is read from `/proc/<pid>/exe`, and only while the recorded process
/// itself (the pid with the recorded start time) still lives: a process that is gone (or whose
/// pid another one has now) has no known file, and no `exe` or `sha256` selector matches it.
struct RecordedExes {
    /// Each process's /proc directory (a handle that fails once that process is gone, whatever
    /// takes its pid), by pid, with the start time it was found to have.
    kept: Mutex<HashMap<u32, (u64, Arc<ProcDir>)>>,
    /// Clock ticks (as /proc/<pid>/stat counts start times) in nanoseconds.
    ns_per_tick: u64,
}

impl RecordedExes {
    fn new() -> Self {
        // SAFETY: sysconf only reads a configuration value.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let hz = if hz > 0 { hz as u64 } else { 100 };
        RecordedExes { kept: Mutex::new(HashMap::new()), ns_per_tick: 1_000_000_000 / hz }
    }

    /// The file process `tgid`, started at `start_ns` (CLOCK_BOOTTIME), runs now.
    fn exe_id(&self, tgid: u32, start_ns: u64) -> Option<ExeId> {
        let kept = self.kept.lock().get(&tgid).filter(|(start, _)| *start == start_ns).map(|(_, dir)| dir.clone());
        let dir = match kept {
            Some(dir) => dir,
            None => {
                let dir = ProcDir::open(tgid).ok()?;
                let stat = dir.open_file(c"stat").ok()?;
                let started =
                    super::procfs::parse_start_time(&String::from_utf8_lossy(read_whole(&stat, &mut Vec::with_capacity(1024)).ok()?)).ok()?;
                // /proc counts the same start time in clock ticks, rounded down.
                if started != start_ns / self.ns_per_tick {
                    return None;
                }
                let dir = Arc::new(dir);
                let mut kept = self.kept.lock();
                if kept.len() >= KEPT_PROCESSES {
                    kept.clear();
                }
                kept.insert(tgid, (start_ns, dir.clone()));
                dir
            }
        };
        let id = dir.exe_id().ok();
        if id.is_none() {
            self.kept.lock().remove(&tgid); // gone
        }
        id
    }

    fn forget(&self, tgid: u32) {
        self.kept.lock().remove(&tgid);
    }
}

fn ioctl<T>(file: &File, request: u64, arg: &mut T) -> std::io::Result<()> {
    // SAFETY: `arg` is the repr(C) struct whose size the request number encodes.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), request as _, arg as *mut T) };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn put_addr(out: &mut [u8; 16], ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(v4) => {
            out[..4].copy_from_slice(&v4.octets());
            libc::AF_INET as u8
        }
        IpAddr::V6(v6) => {
            out.copy_from_slice(&v6.octets());
            libc::AF_INET6 as u8
        }
    }
}

impl KmodBackend {
    /// Opens the device, checks the API version and installs the intercept set for this
    /// network namespace, tagging with `intercept.tag_mark` within `intercept.tag_mask` (the
    /// module leaves the socket's other mark bits alone) and exempting this process.
    pub fn open(device: &Path, routes: &[OutboundRule], intercept: &Intercept) -> Result<Self> {
        let file = File::options().read(true).write(true).open(device).with_context(|| format!("opening {}", device.display()))?;
        let mut version: uapi::Version = uapi::zeroed();
        ioctl(&file, uapi::IOC_VERSION, &mut version).context("idgate.ko version query")?;
        if version.api_version != uapi::API_VERSION {
            bail!("idgate.ko speaks API version {}, this idgate needs {}", version.api_version, uapi::API_VERSION);
        }
        let rules = configure(&file, routes, intercept)?;
        tracing::info!(module_version = %uapi::c_string(&version.module_version), rules, "idgate.ko configured");
        Ok(KmodBackend { device: file, exes: RecordedExes::new() })
    }

    pub fn stats(&self) -> std::io::Result<uapi::Stats> {
        let mut stats = uapi::Stats::default();
        ioctl(&self.device, uapi::IOC_STATS, &mut stats)?;
        Ok(stats)
    }
}

impl FlowIdentity for KmodBackend {
    fn name(&self) -> &'static str {
        "kmod"
    }

    fn reconfigure(&self, routes: &[OutboundRule], intercept: &Intercept) -> Result<()> {
        let rules = configure(&self.device, routes, intercept)?;
        tracing::info!(rules, "idgate.ko reconfigured");
        Ok(())
    }

    fn process_exited(&self, pid: u32) {
        self.exes.forget(pid);
    }

    fn process_of(&self, client: SocketAddr, dst: SocketAddr) -> Result<Arc<ProcessInfo>, IdentityError> {
        let mut q: uapi::Lookup = uapi::zeroed();
        q.family = put_addr(&mut q.src_addr, client.ip());
        put_addr(&mut q.dst_addr, dst.ip());
        q.src_port = client.port();
        q.dst_port = dst.port();
        match ioctl(&self.device, uapi::IOC_LOOKUP, &mut q) {
            Ok(()) => Ok(Arc::new(ProcessInfo {
                tgid: q.tgid,
                uid: q.uid,
                gid: q.gid,
                exe: uapi::c_string(&q.exe),
                comm: uapi::c_string(&q.comm),
                cgroup: uapi::c_string(&q.cgroup),
                start_time: q.start_time_ns,
                exe_unknown: q.result_flags & uapi::RESULT_EXE_TRUNC != 0,
                cgroup_unknown: q.result_flags & uapi::RESULT_CG_TRUNC != 0,
                exe_id: self.exes.exe_id(q.tgid, q.start_time_ns),
                root_socket: false,
            })),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Err(IdentityError::NoSocket { client, dst }),
            Err(e) => Err(e.into()),
        }
    }
}

/// Gives the module this network namespace's intercept set (replacing the last one at once)
/// and the tag to set; returns how many (cidr, ports) pairs it holds.
fn configure(file: &File, routes: &[OutboundRule], intercept: &Intercept) -> Result<usize> {
    let mut config: uapi::Config = uapi::zeroed();
    config.mark = intercept.tag_mark;
    config.mark_mask = intercept.tag_mask;
    config.proxy_tgid = std::process::id();
    let rules: Vec<uapi::Rule> = routes
        .iter()
        .flat_map(|r| {
            r.cidrs.iter().flat_map(move |c| {
                r.ports.iter().map(move |p| {
                    let mut rule = uapi::Rule { prefix_len: c.0.prefix_len(), port_min: p.min, port_max: p.max, ..Default::default() };
                    rule.family = put_addr(&mut rule.addr, c.0.network());
                    rule
                })
            })
        })
        .collect();
    if rules.len() > uapi::MAX_RULES {
        bail!("[[outbound]] rules expand to {} (cidr, ports) pairs; idgate.ko holds at most {}", rules.len(), uapi::MAX_RULES);
    }
    config.rule_count = rules.len() as u32;
    config.rules[..rules.len()].copy_from_slice(&rules);
    ioctl(file, uapi::IOC_CONFIG, &mut config).context("configuring idgate.ko")?;
    Ok(rules.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn start_ticks(pid: u32) -> u64 {
        super::super::procfs::parse_start_time(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap()).unwrap()
    }

    #[test]
    fn a_recorded_process_has_its_file_only_while_it_lives() {
        let exes = RecordedExes::new();
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        let sleep = std::fs::metadata(format!("/proc/{pid}/exe")).unwrap();
        // The module's start time is in nanoseconds, somewhere within /proc's tick.
        let start_ns = start_ticks(pid) * exes.ns_per_tick + exes.ns_per_tick / 2;
        assert_eq!(exes.exe_id(pid, start_ns), Some(ExeId { dev: sleep.dev(), ino: sleep.ino() }));
        assert_eq!(exes.exe_id(pid, start_ns), Some(ExeId { dev: sleep.dev(), ino: sleep.ino() }), "kept: the same again");
        // Another start time is another process that had the pid: its file is not known.
        assert_eq!(exes.exe_id(pid, start_ns + exes.ns_per_tick), None);
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(exes.exe_id(pid, start_ns), None, "gone: unknown");
        assert!(exes.kept.lock().get(&pid).is_none(), "and not kept");
    }
}
