//! The guard on the egress of a forwarding host's interfaces (`program::uplink_egress`): one
//! tcx link per interface but loopback, pinned beside the cgroup's programs as
//! `tcx-<ifindex>`, so that like them it outlives idgate and another program's `nft flush
//! ruleset`. Only a host that forwards containers' or a site's flows gets it: elsewhere every
//! flow has a process, which the cgroup programs see.
use super::bpf;
use super::program;
use super::Ruleset;
use anyhow::{Context, Result};
use std::os::fd::AsFd;
use std::path::Path;

const PIN_PREFIX: &str = "tcx-";

/// The uplink guard's part of `GuardState`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Uplinks {
    /// No containers or sites: nothing is forwarded that the table would redirect.
    NotNeeded,
    Attached {
        interfaces: Vec<String>,
    },
    Unavailable {
        why: String,
    },
}

impl std::fmt::Display for Uplinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Uplinks::NotNeeded => write!(f, "not needed (no [containers] networks or sites)"),
            Uplinks::Attached { interfaces } => write!(f, "on the egress of {}", interfaces.join(", ")),
            Uplinks::Unavailable { why } => write!(f, "unavailable: {why}"),
        }
    }
}

/// Puts the uplink program (on `maps`) on every interface but loopback, or takes it off all
/// of them when `rs` forwards nothing it intercepts. Pins of interfaces that are gone go.
pub fn install(rs: &Ruleset, maps: &program::Maps, dir: &Path) -> Uplinks {
    if rs.container_networks.is_empty() && rs.sites.is_empty() {
        remove(dir);
        return Uplinks::NotNeeded;
    }
    match attach(rs, maps, dir) {
        Ok(interfaces) => Uplinks::Attached { interfaces },
        Err(e) => Uplinks::Unavailable { why: format!("{e:#}") },
    }
}

fn attach(rs: &Ruleset, maps: &program::Maps, dir: &Path) -> Result<Vec<String>> {
    let prog = bpf::prog_load(&program::uplink_egress(maps, rs.bypass_mark), bpf::Hook::TcxEgress, "idgate_uplink")?;
    let interfaces = interfaces().context("listing this host's interfaces")?;
    let mut attached = Vec::new();
    for (name, ifindex) in &interfaces {
        let pin = dir.join(format!("{PIN_PREFIX}{ifindex}"));
        let updated = bpf::get_pinned(&pin).is_ok_and(|link| bpf::link_update(link.as_fd(), prog.as_fd()).is_ok());
        if !updated {
            let _ = std::fs::remove_file(&pin);
            let link = match bpf::tcx_link_create(prog.as_fd(), *ifindex) {
                Ok(link) => link,
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) && attached.is_empty() => {
                    anyhow::bail!("the kernel has no tcx links (Linux 6.6 or later): forwarded flows have only the table")
                }
                Err(e) if e.raw_os_error() == Some(libc::ENODEV) => continue, // gone since listed
                Err(e) => return Err(e).with_context(|| format!("attaching idgate_uplink to the egress of {name}")),
            };
            bpf::pin(link.as_fd(), &pin).with_context(|| format!("pinning {}", pin.display()))?;
        }
        attached.push(name.clone());
    }
    remove_except(dir, &interfaces.iter().map(|(_, i)| *i).collect::<Vec<_>>());
    Ok(attached)
}

/// Takes the program off every interface.
pub fn remove(dir: &Path) {
    remove_except(dir, &[]);
}

fn remove_except(dir: &Path, keep: &[u32]) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(index) = name.to_str().and_then(|n| n.strip_prefix(PIN_PREFIX)).and_then(|i| i.parse::<u32>().ok()) else { continue };
        if !keep.contains(&index) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The interfaces the uplink guard goes on (every one but loopback), by name.
pub fn interface_names() -> Vec<String> {
    interfaces().map(|all| all.into_iter().map(|(name, _)| name).collect()).unwrap_or_default()
}

/// This network namespace's interfaces but loopback, with their indexes.
fn interfaces() -> std::io::Result<Vec<(String, u32)>> {
    // /proc/self/net is this task's network namespace (/sys/class/net is the one sysfs was
    // mounted in).
    let text = std::fs::read_to_string("/proc/self/net/dev")?;
    // AF_UNIX: the guard unit allows no other family but netlink, and the ioctl works on any.
    let socket = rustix::net::socket(rustix::net::AddressFamily::UNIX, rustix::net::SocketType::DGRAM, None)?;
    let mut out = Vec::new();
    for line in text.lines().skip(2) {
        let Some((name, _)) = line.split_once(':') else { continue };
        let name = name.trim();
        if name == "lo" {
            continue;
        }
        if let Ok(index) = rustix::net::netdevice::name_to_index(&socket, name) {
            out.push((name.to_string(), index));
        }
    }
    Ok(out)
}
