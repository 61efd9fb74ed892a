//! `idgate guard` puts the table in place before idgate runs (at boot, from a oneshot unit
//! ordered before the network comes up), so that intercepted flows are refused, never sent in
//! plaintext, until idgate is ready. `idgate uninstall` removes it (package removal, or an
//! operator taking idgate off a host); nothing else does unless `on_stop = "release"`.
use crate::intercept::guard::{self, Redirect};
use crate::intercept::Ruleset;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

const DEFAULT_STATE_DIR: &str = "/var/lib/idgate";

/// The table to guard with: the config's, else (a broken config) the last one idgate
/// installed on this host.
fn ruleset_for(config_path: &Path) -> Result<Ruleset> {
    match crate::config::load(config_path) {
        Ok(config) => Ok(guard::ruleset(&config, Redirect::Either)),
        Err(config_error) => {
            eprintln!("idgate guard: {config_error}");
            let state_dir = state_dir_of(config_path);
            let rs = guard::load_snapshot(&state_dir)
                .with_context(|| format!("the config is unusable and there is no table snapshot to fall back on ({config_error})"))?;
            eprintln!("idgate guard: using the table idgate last installed ({})", guard::snapshot_path(&state_dir).display());
            Ok(rs)
        }
    }
}

/// `state_dir` from a config that may not validate (or parse at all: then its top-level
/// `state_dir = "..."` line), so that `idgate reload` reaches the running idgate to be told
/// what is wrong with the file, and `guard` finds the last table.
pub(super) fn state_dir_of(config_path: &Path) -> PathBuf {
    let Ok(text) = std::fs::read_to_string(config_path) else { return PathBuf::from(DEFAULT_STATE_DIR) };
    if let Ok(table) = text.parse::<toml::Table>() {
        return table.get("state_dir").and_then(|v| v.as_str()).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
    }
    text.lines()
        .take_while(|l| !l.trim_start().starts_with('['))
        .find_map(|l| {
            let (key, value) = l.split_once('=')?;
            let value = value.split('#').next()?.trim();
            (key.trim() == "state_dir").then(|| value.trim_matches('"').to_string()).filter(|v| !v.is_empty())
        })
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
}

pub fn guard(config_path: &Path) -> Result<()> {
    let rs = ruleset_for(config_path)?;
    if guard::ensure(&rs).with_context(|| format!("installing nftables table inet {}", rs.table))? {
        println!("nftables table inet {} installed: intercepted flows are refused until idgate runs", rs.table);
    } else {
        println!("nftables table inet {} already in place; left as it is", rs.table);
    }
    // Not if idgate runs: it keeps the guard itself, from its own (perhaps newer) config.
    if crate::intercept::exists(&crate::intercept::owned_name(&rs.table))? {
        println!("idgate is running (it holds table inet {}): the cgroup guard is its to keep", crate::intercept::owned_name(&rs.table));
        return Ok(());
    }
    match crate::intercept::cgroup_guard::install(&rs)? {
        state @ crate::intercept::cgroup_guard::GuardState::Unavailable { .. } => {
            eprintln!("idgate guard: cgroup guard {state}");
        }
        state => println!("cgroup guard {state}"),
    }
    Ok(())
}

pub fn uninstall(config_path: &Path) -> Result<()> {
    let (table, guard_cgroup) = match crate::config::load(config_path) {
        Ok(config) => (config.intercept.table, config.intercept.guard_cgroup),
        Err(_) => guard::load_snapshot(&state_dir_of(config_path))
            .map(|rs| (rs.table, rs.guard_cgroup))
            .unwrap_or_else(|_| ("idgate".into(), Default::default())),
    };
    let owned = crate::intercept::owned_name(&table);
    if crate::intercept::exists(&owned)? {
        anyhow::bail!("idgate is running (it holds table inet {owned}): stop it first");
    }
    if crate::intercept::cgroup_guard::remove(&guard_cgroup)? {
        println!("removed the cgroup guard");
    }
    if !crate::intercept::exists(&table)? {
        println!("nftables table inet {table} is not installed");
        return Ok(());
    }
    crate::intercept::remove(&table).with_context(|| format!("removing nftables table inet {table}"))?;
    println!("removed nftables table inet {table}: intercepted destinations are now reached directly, without idgate");
    Ok(())
}
