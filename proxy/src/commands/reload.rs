//! `idgate reload` asks the running idgate to apply its config file again (what
//! `systemctl reload` runs; it fails, with the file's errors, when the file is refused).
//! `idgate revoke` adds entries to the deny list's file and has the running idgate apply it
//! at once; the file is what survives restarts and what a fleet distributes.
use crate::config::deny_list::{read_file, Entry};
use crate::control::client::request;
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

fn summary(doc: &Value) -> String {
    let n = |k: &str| doc[k].as_u64().unwrap_or(0);
    let mut text = format!(
        "{} open flow(s) closed, {} pooled connection(s) closed, {} SVID(s) dropped; {} deny-list entr{}",
        n("closed_flows"),
        n("closed_connections"),
        n("dropped_svids"),
        n("revoked_entries"),
        if n("revoked_entries") == 1 { "y" } else { "ies" }
    );
    if let Some(later) = doc["restart_needed"].as_array().filter(|l| !l.is_empty()) {
        let names: Vec<&str> = later.iter().filter_map(Value::as_str).collect();
        text.push_str(&format!("\nchanged but applied only at the next restart: {}", names.join(", ")));
    }
    text
}

/// Has the service's main process start the new idgate beside the serving one, then waits
/// until the new one answers on the control socket (it took over) or 30 s pass.
pub fn upgrade(socket: &Path) -> Result<()> {
    let serving =
        || crate::control::client::get(socket, "/status").ok().and_then(|b| serde_json::from_str::<Value>(&b).ok()).and_then(|s| s["pid"].as_u64());
    let body = request(socket, "POST", "/upgrade").context("the running idgate did not start the upgrade")?;
    let doc: Value = serde_json::from_str(&body).context("the upgrade answer is not JSON")?;
    let old = doc["pid"].as_u64().unwrap_or(0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if let Some(new) = serving().filter(|p| *p != old) {
            println!("upgraded: pid {new} takes new flows; pid {old} serves its open flows until they end ([tunnel] upgrade_drain)");
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    bail!("the new idgate did not take over within 30 s; pid {old} goes on serving (see the log)")
}

pub fn reload(socket: &Path) -> Result<()> {
    let body = request(socket, "POST", "/reload").context("reload refused; the config in force stays")?;
    let doc: Value = serde_json::from_str(&body).context("the reload report is not JSON")?;
    println!("reloaded (policy generation {}): {}", doc["generation"], summary(&doc));
    Ok(())
}

/// Appends `entries` to the deny-list file (those not in it yet), replacing the file in one
/// rename so that a reader never sees half of it, then tells the running idgate.
pub fn revoke(file: &Path, socket: &Path, entries: &[String]) -> Result<()> {
    let parsed: Vec<Entry> = entries.iter().map(|e| Ok(Entry::parse(e)?)).collect::<Result<_>>()?;
    let present = read_file(file).map_err(anyhow::Error::msg)?;
    let new: Vec<&Entry> = parsed.iter().filter(|e| !present.contains(e)).collect();
    if !new.is_empty() {
        let mut text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                "# idgate deny list: SPIFFE IDs (or prefixes ending in /*) and certificate serials\n".into()
            }
            Err(e) => bail!("reading {}: {e}", file.display()),
        };
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        let stamp = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        for e in &new {
            text.push_str(&format!("{}  # idgate revoke, {stamp}\n", e.text()));
        }
        let tmp = file.with_extension("idgate-tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(text.as_bytes()).and_then(|()| f.sync_all()).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
        std::fs::rename(&tmp, file).with_context(|| format!("replacing {}", file.display()))?;
    }
    println!("{}: {} new entr{} ({} already there)", file.display(), new.len(), if new.len() == 1 { "y" } else { "ies" }, parsed.len() - new.len());
    match request(socket, "POST", "/revocations") {
        Ok(body) => {
            let doc: Value = serde_json::from_str(&body).context("the revocation report is not JSON")?;
            println!("applied: {}", summary(&doc));
            Ok(())
        }
        Err(e) if !socket.exists() => {
            println!("idgate is not running here ({e:#}); the list applies when it starts");
            Ok(())
        }
        Err(e) => Err(e.context("the running idgate did not apply the deny list")),
    }
}
