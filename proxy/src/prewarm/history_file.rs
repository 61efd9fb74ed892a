//! The target history (see `prewarm::History`) kept in `<state_dir>/peer-history.json`, so that
//! after a restart or an upgrade a workload's first flow finds its tunnel connection dialled
//! ahead of it as before. The file only says where to dial early: every connection dialled
//! from it is verified like any other, and a file that is missing, unreadable or not ours
//! means starting with no history, never failing to start.
use crate::prewarm::{History, Snapshot, Target};
use crate::spiffe::SpiffeId;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub const FILE_NAME: &str = "peer-history.json";
const VERSION: u32 = 1;
/// Far above what the history's own bounds let it reach; anything larger is not ours.
const MAX_BYTES: u64 = 8 << 20;
/// How often a changed history is written out.
const SAVE_EVERY: Duration = Duration::from_secs(2);

#[derive(Serialize, Deserialize)]
struct Saved {
    version: u32,
    identities: Vec<SavedIdentity>,
    any: Vec<SavedTarget>,
}

#[derive(Serialize, Deserialize)]
struct SavedIdentity {
    spiffe_id: String,
    targets: Vec<SavedTarget>,
}

#[derive(Serialize, Deserialize)]
struct SavedTarget {
    peer: SocketAddr,
    destination: IpAddr,
}

fn targets(list: &[Target]) -> Vec<SavedTarget> {
    list.iter().map(|&(peer, destination)| SavedTarget { peer, destination }).collect()
}

fn parse(text: &str) -> Result<Snapshot> {
    let saved: Saved = serde_json::from_str(text)?;
    if saved.version != VERSION {
        bail!("version {} (this idgate reads version {VERSION})", saved.version);
    }
    let unsaved = |list: Vec<SavedTarget>| list.into_iter().map(|t| (t.peer, t.destination)).collect();
    let mut by_identity = Vec::new();
    for entry in saved.identities {
        let id = SpiffeId::parse(&entry.spiffe_id).with_context(|| format!("SPIFFE ID {:?}", entry.spiffe_id))?;
        by_identity.push((id, unsaved(entry.targets)));
    }
    Ok(Snapshot { by_identity, any: unsaved(saved.any) })
}

/// Fills `history` from the file in `state_dir`, if there is one; says what it did.
pub fn load(history: &History, state_dir: &Path) -> Result<String> {
    let path = state_dir.join(FILE_NAME);
    let text = match std::fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok("no target history yet".into()),
        Err(e) => return Err(e).with_context(|| path.display().to_string()),
        Ok(meta) if meta.len() > MAX_BYTES => bail!("{}: {} bytes, more than a history can take", path.display(), meta.len()),
        Ok(_) => std::fs::read_to_string(&path).with_context(|| path.display().to_string())?,
    };
    let snapshot = parse(&text).with_context(|| path.display().to_string())?;
    let identities = snapshot.by_identity.len();
    history.restore(snapshot);
    Ok(format!("target history of {identities} identities read from {}", path.display()))
}

/// Writes `history` to the file in `state_dir` (owner-only, replaced whole).
pub fn save(history: &History, state_dir: &Path) -> Result<()> {
    let snapshot = history.snapshot();
    let saved = Saved {
        version: VERSION,
        identities: snapshot.by_identity.iter().map(|(id, list)| SavedIdentity { spiffe_id: id.to_string(), targets: targets(list) }).collect(),
        any: targets(&snapshot.any),
    };
    let path = state_dir.join(FILE_NAME);
    let staging = state_dir.join(format!("{FILE_NAME}.{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&staging)?;
        file.write_all(&serde_json::to_vec(&saved).map_err(std::io::Error::other)?)?;
        file.sync_data()?;
        std::fs::rename(&staging, &path)
    };
    write()
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&staging);
        })
        .with_context(|| format!("writing {}", path.display()))
}

/// Saves the history whenever it changed, every `SAVE_EVERY`, for as long as idgate runs.
pub async fn keep(history: Arc<History>, state_dir: PathBuf) {
    let mut every = tokio::time::interval(SAVE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        save_if_changed(&history, &state_dir).await;
    }
}

/// Saves the history if it changed since the last save; errors are logged, not fatal.
pub async fn save_if_changed(history: &Arc<History>, state_dir: &Path) {
    if !history.take_changed() {
        return;
    }
    let (history, dir) = (history.clone(), state_dir.to_path_buf());
    match tokio::task::spawn_blocking(move || save(&history, &dir)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %format!("{e:#}"), "saving the target history failed; the next restart starts without it"),
        Err(e) => tracing::warn!(error = %e, "saving the target history failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(i: u8) -> Target {
        (SocketAddr::from(([10, 0, 0, i], 15008)), IpAddr::from([10, 0, 0, i]))
    }

    #[test]
    fn a_saved_history_reads_back_and_a_foreign_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let alice = SpiffeId::parse("spiffe://td/app/alice").unwrap();
        let h = History::default();
        assert_eq!(load(&h, dir.path()).unwrap(), "no target history yet");
        h.used(&alice, target(1));
        h.used(&alice, target(2));
        assert!(h.take_changed());
        save(&h, dir.path()).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(dir.path().join(FILE_NAME)).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
        let back = History::default();
        load(&back, dir.path()).unwrap();
        assert_eq!(back.snapshot(), h.snapshot());
        assert_eq!(back.targets(&alice), vec![target(2), target(1)]);
        assert!(!back.take_changed(), "a restored history is not a change to save");

        for (text, why) in [
            ("not json", "expected"),
            (r#"{"version":2,"identities":[],"any":[]}"#, "version 2"),
            (r#"{"version":1,"identities":[{"spiffe_id":"http://x","targets":[]}],"any":[]}"#, "SPIFFE ID"),
            (r#"{"version":1,"identities":[],"any":[{"peer":"nowhere","destination":"10.0.0.1"}]}"#, "invalid"),
        ] {
            std::fs::write(dir.path().join(FILE_NAME), text).unwrap();
            let fresh = History::default();
            let e = format!("{:#}", load(&fresh, dir.path()).unwrap_err());
            assert!(e.contains(FILE_NAME) && e.contains(why), "{text}: {e}");
            assert_eq!(fresh.snapshot(), Snapshot::default(), "a refused file leaves nothing behind");
        }
    }
}
