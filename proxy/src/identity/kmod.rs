//! The kernel-module identity backend: idgate.ko recorded the connecting process at SYN time
//! (so even a process that already exited is known); we configure it and look flows up
//! through /dev/idgate.
use super::kmod_uapi as uapi;
use super::{ExeId, FlowIdentity, IdentityError, ProcessInfo};
use crate::config::{Intercept, OutboundRule};
use anyhow::{bail, Context, Result};
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
        Ok(KmodBackend { device: file })
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
                // The file the module saw run at connect() (device and inode as stat(2) gives
                // them), whatever its path shows now or in the process's mount namespace.
                exe_id: (q.result_flags & uapi::RESULT_EXE_ID != 0).then_some(ExeId { dev: q.exe_dev, ino: q.exe_ino }),
                root_socket: false,
                container_id: super::container::id_from_cgroup(&uapi::c_string(&q.cgroup)).map(str::to_string),
                routed_from: None,
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
    config.rules = rules.as_ptr() as u64; // read by the ioctl, while `rules` lives
    ioctl(file, uapi::IOC_CONFIG, &mut config).context("configuring idgate.ko")?;
    Ok(rules.len())
}
