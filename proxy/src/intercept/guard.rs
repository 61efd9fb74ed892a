//! The table's life beyond one process: which rules a config asks for, the last table idgate
//! installed (kept in the state directory so that a host whose config broke still boots with
//! its flows refused), and installing a refusing table before anything at start-up can fail.
use super::Ruleset;
use crate::config::{Config, InboundMode};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Which redirect rules a ruleset holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redirect {
    /// Destinations by address and port: the userspace identity backend.
    Destinations,
    /// Destinations and flows idgate.ko tagged: the kernel-module backend, and before the
    /// backend is known (boot, early start-up). The destination rules stay with the module: a
    /// flow it did not tag (unloaded while idgate was down, say) is then redirected and
    /// refused by the lookup instead of leaving in plaintext.
    Either,
}

/// The table `config` asks for.
pub fn ruleset(config: &Config, redirect: Redirect) -> Ruleset {
    let destinations = config.outbound.iter().flat_map(|r| r.cidrs.iter().flat_map(|c| r.ports.iter().map(|p| (*c, *p)))).collect();
    let strict = config.mode == InboundMode::Strict;
    let (local, behind): (Vec<_>, Vec<_>) = config.inbound.iter().filter(|_| strict).partition(|r| r.backends.is_empty());
    let protected_ports = local.iter().flat_map(|r| r.ports.iter().copied()).collect();
    let protected_backends = behind.iter().flat_map(|r| r.backends.iter().flat_map(|c| r.ports.iter().map(|p| (*c, *p)))).collect();
    Ruleset {
        table: config.intercept.table.clone(),
        bypass_mark: config.intercept.bypass_mark,
        redirect_port: config.listen.outbound_port,
        destinations,
        tag_mark: (redirect == Redirect::Either).then_some(config.intercept.tag_mark),
        protected_ports,
        guard_cgroup: config.intercept.guard_cgroup.clone(),
        container_networks: config.containers.networks.clone(),
        protected_backends,
        sites: config
            .workloads
            .iter()
            .filter_map(|w| Some((w.interface.as_ref()?, &w.sources)))
            .flat_map(|(iface, sources)| sources.iter().map(move |c| (iface.clone(), *c)))
            .collect(),
    }
}

pub const SNAPSHOT_FILE: &str = "intercept.json";

pub fn snapshot_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SNAPSHOT_FILE)
}

/// Records the table just installed (written atomically: a torn file would lose the guard).
pub fn save_snapshot(state_dir: &Path, rs: &Ruleset) -> Result<()> {
    std::fs::create_dir_all(state_dir).with_context(|| format!("creating {}", state_dir.display()))?;
    let path = snapshot_path(state_dir);
    let tmp = path.with_extension("json.new");
    std::fs::write(&tmp, serde_json::to_vec_pretty(rs)?).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("renaming {} into place", tmp.display()))?;
    Ok(())
}

pub fn load_snapshot(state_dir: &Path) -> Result<Ruleset> {
    let path = snapshot_path(state_dir);
    let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("{}: not an idgate table snapshot", path.display()))
}

/// Installs the standing table `rs` names unless one is already in place (left by a previous
/// run, by `idgate guard` at boot, or by an idgate that is running now, which must not be
/// disturbed by a second one that is about to fail). True if it installed.
pub fn ensure(rs: &Ruleset) -> std::io::Result<bool> {
    if super::exists(rs.standing_name())? {
        return Ok(false);
    }
    super::install_standing(rs)?;
    Ok(true)
}
