//! `idgate status`: what the running idgate reports on its control socket, as a summary with
//! tables, or the JSON document itself (`--json`) for scripts.
use crate::control::client::get;
use anyhow::{Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The control socket a config names (its state_dir's when the file does not validate).
pub fn control_socket(config_path: &Path) -> PathBuf {
    match crate::config::load(config_path) {
        Ok(config) => config.control_socket(),
        Err(_) => super::guard::state_dir_of(config_path).join("control.sock"),
    }
}

pub fn status(socket: &Path, json: bool) -> Result<()> {
    let body = get(socket, "/status")?;
    if json {
        println!("{body}"); // escaped by idgate (`terminal::escape_json`)
        return Ok(());
    }
    let st: Value = serde_json::from_str(&body).context("the status document is not JSON")?;
    print!("{}", render(&st));
    Ok(())
}

/// A value as a table cell; text a workload or a peer chose shows its controls escaped.
fn s(v: &Value) -> String {
    match v {
        Value::String(s) => crate::terminal::escape_text(s),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// Rows under a header, each column as wide as its widest cell.
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        format!("  {}\n", padded.join("  ").trim_end())
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

pub fn flows(socket: &Path, json: bool) -> Result<()> {
    let body = get(socket, "/flows")?;
    if json {
        println!("{body}"); // escaped by idgate (`terminal::escape_json`)
        return Ok(());
    }
    let flows: Vec<Value> = serde_json::from_str(&body).context("the flow list is not JSON")?;
    let mut rows: Vec<Vec<String>> = flows
        .iter()
        .map(|f| {
            let age = f["age_ms"].as_u64().unwrap_or(0) / 1000;
            vec![
                s(&f["flow"]),
                s(&f["direction"]),
                s(&f["pid"]),
                s(&f["exe"]),
                s(&f["uid"]),
                s(&f["spiffe_id"]),
                s(&f["destination"]),
                s(&f["peer"]),
                s(&f["bytes_up"]),
                s(&f["bytes_down"]),
                format!("{}m{:02}s", age / 60, age % 60),
            ]
        })
        .collect();
    rows.sort();
    print!(
        "{} open flows\n{}",
        rows.len(),
        table(&["FLOW", "DIR", "PID", "EXE", "UID", "SPIFFE ID", "DESTINATION", "PEER", "UP", "DOWN", "AGE"], rows)
    );
    Ok(())
}

/// The tables, the cgroup guard, and whether another program removed or changed the table.
fn interception(i: &Value) -> String {
    let guard = match s(&i["guard"]["state"]).as_str() {
        "attached" => format!("cgroup guard on {}", s(&i["guard"]["cgroup"])),
        "off" => "cgroup guard off".to_string(),
        _ => format!("cgroup guard UNAVAILABLE ({})", s(&i["guard"]["why"])),
    };
    let mut out = format!("tables inet {} and inet {} (held), {guard}", s(&i["standing_table"]), s(&i["owned_table"]));
    if i["put_back"].as_u64().unwrap_or(0) > 0 {
        out.push_str(&format!(
            "; the table was put back {} time(s) after another program changed it, last by {} ({} us)",
            s(&i["put_back"]),
            s(&i["last_changed_by"]),
            s(&i["last_put_back_us"])
        ));
    }
    out
}

/// "in 89d 23h" or "EXPIRED 2d 1h ago".
fn remaining(not_after: u64, now: u64) -> String {
    let (left, past) = if not_after >= now { (not_after - now, false) } else { (now - not_after, true) };
    let text = format!("{}d {}h", left / 86400, left % 86400 / 3600);
    if past {
        format!("EXPIRED {text} ago")
    } else {
        format!("in {text}")
    }
}

/// The host CA's expiry and the trust bundle's earliest, each on a line of its own.
fn expiry_lines(st: &Value, now: u64) -> String {
    let mut out = String::new();
    if let Some(at) = st["ca_expiry"]["not_after_unix"].as_u64() {
        out.push_str(&format!("CA expires {} ({})\n", remaining(at, now), s(&st["ca_expiry"]["subject"])));
    }
    let bundle = st["trust_bundle_expiry"].as_array().cloned().unwrap_or_default();
    if let Some(first) = bundle.iter().min_by_key(|c| c["not_after_unix"].as_u64().unwrap_or(0)) {
        let at = first["not_after_unix"].as_u64().unwrap_or(0);
        out.push_str(&format!(
            "trust bundle: {} certificate(s), the first expires {} ({})\n",
            bundle.len(),
            remaining(at, now),
            s(&first["subject"])
        ));
    }
    out
}

pub fn render(st: &Value) -> String {
    let mut out = format!(
        "idgate on {} ({}), mode {}\nidentity backend: {} ({})\ninterception: {}\nprocess events: {} ({} workloads prepared before their first flow, {} events dropped)\nflows {}, tunnel connections {} ({} dialled), handshakes in progress {}\n",
        s(&st["host"]),
        s(&st["server_id"]),
        s(&st["mode"]),
        s(&st["identity_backend"]),
        s(&st["identity_backend_reason"]),
        interception(&st["intercept"]),
        s(&st["process_events"]["reason"]),
        s(&st["process_events"]["workloads_prepared"]),
        s(&st["process_events"]["dropped"]),
        s(&st["active_flows"]),
        s(&st["tunnel_connections"]),
        s(&st["tunnel_dials"]),
        s(&st["handshakes_in_progress"]),
    );
    let exchanges = &st["credential_exchanges"];
    if exchanges["exchanges"].as_u64().is_some_and(|n| n > 0) {
        out.push_str(&format!(
            "credential exchanges {} ({} failed), cache hits {}, cached {}\n",
            s(&exchanges["exchanges"]),
            s(&exchanges["failures"]),
            s(&exchanges["cache_hits"]),
            s(&exchanges["cached"]),
        ));
    }
    let now = now_unix();
    out.push_str(&expiry_lines(st, now));
    let svids = st["svids"].as_array().cloned().unwrap_or_default();
    out.push_str(&format!("\nSVIDs ({}):\n", svids.len()));
    out.push_str(&table(
        &["SPIFFE ID", "SERIAL", "EXPIRES IN", "ADDRESSES"],
        svids
            .iter()
            .map(|v| {
                let left = v["not_after_unix"].as_u64().unwrap_or(0).saturating_sub(now);
                let addrs = v["addresses"].as_array().map(|a| a.iter().map(s).collect::<Vec<_>>().join(",")).unwrap_or_default();
                vec![s(&v["spiffe_id"]), s(&v["serial"]), format!("{}m{:02}s", left / 60, left % 60), addrs]
            })
            .collect(),
    ));
    let decisions = st["decisions"].as_array().cloned().unwrap_or_default();
    let shown: Vec<&Value> = decisions.iter().rev().take(10).collect();
    out.push_str(&format!("\nrecent decisions ({} of {}, newest first):\n", shown.len(), decisions.len()));
    out.push_str(&table(
        &["FLOW", "DIRECTION", "VERDICT", "SOURCE", "PROCESS", "DESTINATION"],
        shown
            .iter()
            .map(|d| vec![s(&d["flow"]), s(&d["direction"]), s(&d["verdict"]), s(&d["source_id"]), s(&d["process"]), s(&d["destination"])])
            .collect(),
    ));
    let refused = st["refused_connections"].as_array().cloned().unwrap_or_default();
    if !refused.is_empty() {
        out.push_str(&format!("\nrefused tunnel connections (last {}):\n", refused.len()));
        out.push_str(&table(
            &["REMOTE", "REASON", "DETAIL"],
            refused.iter().rev().map(|r| vec![s(&r["remote"]), s(&r["reason"]), s(&r["detail"])]).collect(),
        ));
    }
    out
}
