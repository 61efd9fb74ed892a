//! The fleet's one JWT issuer: `idgate ca issue` gives each host a JWT key of its own and
//! records its public half (with the host's grants) in the root's directory; `idgate ca jwks`
//! writes the JWKS and the OpenID discovery document of every recorded key, to be served from
//! any static HTTPS location at the issuer URL. `--for ID` keeps only the keys of hosts granted
//! that workload ID: an authorization server that registers the workload as a client then
//! trusts no other host to speak for it.
use super::jwt_key::{discovery, public_jwk_of_pem, JWT_KEY_FILE};
use crate::config::AllowPattern;
use crate::spiffe::SpiffeId;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};

/// Where the root's directory keeps the hosts' public JWT keys.
const KEYS_DIR: &str = "jwks";

/// Records the public key of the host's `jwt-key.pem` in `out` under the root's directory.
pub fn record_host_key(root_dir: &Path, host: &str, host_id: &SpiffeId, grants: &[String], out: &Path) -> Result<PathBuf> {
    let pem = fs::read(out.join(JWT_KEY_FILE)).with_context(|| format!("reading {}", out.join(JWT_KEY_FILE).display()))?;
    let jwk = public_jwk_of_pem(&pem).context("the host's JWT key is not a P-256 key")?;
    let kid = jwk["kid"].as_str().unwrap_or_default().to_string();
    let dir = root_dir.join(KEYS_DIR);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // One file per key: a host's new key (a re-issue) is published beside its old one until
    // the operator removes the old file.
    let path = dir.join(format!("{host}.{}.json", &kid[..kid.len().min(16)]));
    let record = json!({"host": host, "host_id": host_id.as_str(), "grants": grants, "jwk": jwk});
    fs::write(&path, serde_json::to_string_pretty(&record)? + "\n").with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Writes `out/jwks.json` and `out/.well-known/openid-configuration` for `issuer`, with every
/// recorded host key (or, with `for_id`, those of hosts granted it). Returns the number of keys.
pub fn publish(root_dir: &Path, issuer: &str, out: &Path, for_id: Option<&SpiffeId>) -> Result<usize> {
    if !issuer.starts_with("https://") {
        bail!("--issuer `{issuer}` must be the https:// URL the documents are served at (cloud providers fetch them there)");
    }
    let dir = root_dir.join(KEYS_DIR);
    let mut keys = Vec::new();
    let entries = fs::read_dir(&dir).with_context(|| format!("reading {} (written by `idgate ca issue`)", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "json")).collect();
    paths.sort();
    for path in paths {
        let record: Value = serde_json::from_slice(&fs::read(&path)?).with_context(|| format!("{}: not JSON", path.display()))?;
        let jwk = record.get("jwk").filter(|j| j["kty"] == "EC").with_context(|| format!("{}: no EC key under \"jwk\"", path.display()))?;
        if let Some(id) = for_id {
            let granted = record["grants"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .any(|g| AllowPattern::try_from(g.to_string()).is_ok_and(|p| p.matches(id)));
            if !granted {
                continue;
            }
        }
        keys.push(jwk.clone());
    }
    fs::create_dir_all(out.join(".well-known")).with_context(|| format!("creating {}", out.display()))?;
    fs::write(out.join("jwks.json"), serde_json::to_string_pretty(&json!({ "keys": keys }))? + "\n")?;
    fs::write(out.join(".well-known/openid-configuration"), serde_json::to_string_pretty(&discovery(issuer))? + "\n")?;
    Ok(keys.len())
}
