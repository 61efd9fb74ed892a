//! The second line of defence, outside the nftables ruleset: cgroup (v2) programs on the
//! host's cgroup that drop what the table should have redirected but did not (see
//! `program`), and on a host that forwards containers' or a site's flows, a tc program on its
//! interfaces' egress for the forwarded ones (see `uplinks`). Anyone who can run `nft flush ruleset` can delete a table, but not these; they
//! are pinned links in the BPF filesystem (`/sys/fs/bpf/idgate/<cgroup id>/`), so they outlive
//! idgate like the table does, until `idgate uninstall` (or a reboot, after which `idgate
//! guard` puts them back with the table). Each install swaps the programs in one step.
mod asm;
mod bpf;
mod maps;
mod program;
mod uplinks;

pub use uplinks::{interface_names as uplink_interfaces, Uplinks};

use super::Ruleset;
use crate::config::GuardCgroup;
use anyhow::{bail, Context, Result};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const BPFFS: &str = "/sys/fs/bpf";
const BPF_FS_MAGIC: i64 = 0xcafe4a11;
const CGROUP2_SUPER_MAGIC: i64 = 0x63677270;

/// What the guard is doing, for `status` and the log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum GuardState {
    Attached { cgroup: PathBuf, prefixes: usize, port_sets: usize, uplinks: Uplinks },
    Off,
    Unavailable { why: String },
}

impl std::fmt::Display for GuardState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GuardState::Attached { cgroup, prefixes, port_sets, uplinks } => {
                write!(
                    f,
                    "attached to cgroup {} ({prefixes} destination prefix(es), {port_sets} port list(s)); uplink guard {uplinks}",
                    cgroup.display()
                )
            }
            GuardState::Off => write!(f, "off (guard_cgroup = \"off\")"),
            GuardState::Unavailable { why } => write!(f, "unavailable: {why}"),
        }
    }
}

/// Attaches (or updates) the guard for `rs`. With `guard_cgroup = "auto"` a host that cannot
/// have it gets `Unavailable` and the reason; with a path, that is an error.
pub fn install(rs: &Ruleset) -> Result<GuardState> {
    let cgroup = match &rs.guard_cgroup {
        GuardCgroup::Off => return Ok(GuardState::Off),
        GuardCgroup::Path(p) => p.clone(),
        GuardCgroup::Auto => match cgroup2_root() {
            Some(p) => p,
            None => return Ok(GuardState::Unavailable { why: "no cgroup v2 hierarchy is mounted".into() }),
        },
    };
    let explicit = matches!(rs.guard_cgroup, GuardCgroup::Path(_));
    match attach(rs, &cgroup) {
        Ok(state) => Ok(state),
        Err(e) if !explicit => Ok(GuardState::Unavailable { why: format!("{e:#}") }),
        Err(e) => Err(e.context(format!("guard_cgroup = \"{}\"", cgroup.display()))),
    }
}

/// Takes the guard off the cgroup `setting` names (true if there was one).
pub fn remove(setting: &GuardCgroup) -> Result<bool> {
    let cgroup = match setting {
        GuardCgroup::Off => return Ok(false),
        GuardCgroup::Path(p) => p.clone(),
        GuardCgroup::Auto => match cgroup2_root() {
            Some(p) => p,
            None => return Ok(false),
        },
    };
    let Ok(dir) = pin_dir(&cgroup) else { return Ok(false) };
    let mut removed = false;
    for hook in ["egress", "ingress"] {
        match std::fs::remove_file(dir.join(hook)) {
            Ok(()) => removed = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", dir.join(hook).display())),
        }
    }
    uplinks::remove(&dir);
    let _ = std::fs::remove_dir(&dir);
    Ok(removed)
}

fn attach(rs: &Ruleset, cgroup: &Path) -> Result<GuardState> {
    if filesystem(cgroup).with_context(|| format!("cgroup {}", cgroup.display()))? != CGROUP2_SUPER_MAGIC {
        bail!("{} is not a cgroup v2 directory", cgroup.display());
    }
    if filesystem(Path::new(BPFFS)).ok() != Some(BPF_FS_MAGIC) {
        bail!("the BPF filesystem is not mounted at {BPFFS}");
    }
    let dir = pin_dir(cgroup)?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let maps = maps::build(rs).context("building the guard's maps")?;
    let fds = program::Maps { dests: maps.dests.as_raw_fd(), ports: maps.ports.as_raw_fd(), sources: maps.sources.as_raw_fd() };
    let cg = std::fs::File::open(cgroup).with_context(|| format!("opening {}", cgroup.display()))?;
    for (hook, name, insns) in
        [(bpf::Hook::Egress, "idgate_egress", program::egress(&fds, rs.bypass_mark)), (bpf::Hook::Ingress, "idgate_ingress", program::ingress(&fds))]
    {
        let prog = bpf::prog_load(&insns, hook, name)?;
        let pin = dir.join(if hook == bpf::Hook::Egress { "egress" } else { "ingress" });
        let updated = match bpf::get_pinned(&pin) {
            Ok(link) => bpf::link_update(link.as_fd(), prog.as_fd()).is_ok(),
            Err(_) => false,
        };
        if !updated {
            // No link yet, or one whose cgroup is gone: a new one in its place.
            let _ = std::fs::remove_file(&pin);
            let link = bpf::link_create(prog.as_fd(), cg.as_fd(), hook).with_context(|| format!("attaching {name} to {}", cgroup.display()))?;
            bpf::pin(link.as_fd(), &pin).with_context(|| format!("pinning {}", pin.display()))?;
        }
    }
    let uplinks = uplinks::install(rs, &fds, &dir);
    Ok(GuardState::Attached { cgroup: cgroup.to_path_buf(), prefixes: maps.prefixes, port_sets: maps.port_sets, uplinks })
}

/// The guard's pins for one cgroup, named by the cgroup's id (its inode): hosts that are
/// network namespaces on one machine (tests) each have a cgroup and a guard of their own.
fn pin_dir(cgroup: &Path) -> Result<PathBuf> {
    let id = std::fs::metadata(cgroup).with_context(|| format!("cgroup {}", cgroup.display()))?.ino();
    Ok(Path::new(BPFFS).join("idgate").join(id.to_string()))
}

fn filesystem(path: &Path) -> std::io::Result<i64> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    // SAFETY: a zeroed statfs is valid output space for statfs(2).
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: statfs with a NUL-terminated path and a statfs of the right type.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st.f_type)
}

/// Where the unified (v2) hierarchy is mounted: /sys/fs/cgroup on a unified system,
/// /sys/fs/cgroup/unified on a hybrid one.
pub fn cgroup2_root() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        left.split_whitespace().nth(4).map(PathBuf::from)
    })
}
