//! The attribution trail: one JSON record per flow when it ends, and one per refusal, saying
//! who (process, SPIFFE ID, certificate serial), what (destination, peer host, credential
//! rules applied by name, never their values), the verdict and why, and how much (bytes each
//! way, duration). Both hosts record a tunnelled flow under the outbound side's flow id, so a
//! flow can be followed from the process that opened it to the caller the server saw. Records
//! go to the log (target `idgate::trail`, so journald keeps them) and, if configured, to a
//! file of JSON lines.
use crate::observe::flows::UsedCredential;
use crate::observe::flows::{FlowFacts, OpenFlow};
use parking_lot::Mutex;
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// The log target of trail records. Its events skip the log's character-by-character
/// sanitizing (the costliest step of a short flow's bookkeeping): a record is JSON with every
/// character a terminal acts on already escaped (`terminal::escape_json`).
pub const TARGET: &str = "idgate::trail";

#[derive(Serialize)]
struct Process<'a> {
    pid: u32,
    start_time: u64,
    exe: &'a str,
    uid: u32,
    gid: u32,
    cgroup: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    container_id: Option<&'a str>,
}

#[derive(Serialize)]
struct Record<'a> {
    unix_ms: u64,
    host: &'a str,
    /// The idgate process that served the flow (two serve during an upgrade's handover).
    idgate_pid: u32,
    flow: &'a str,
    direction: &'a str,
    verdict: crate::observe::Verdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    process: Option<Process<'a>>,
    /// A flow from a machine behind this host: where it came from (it has no process here).
    #[serde(skip_serializing_if = "Option::is_none")]
    routed_from: Option<&'a crate::identity::RoutedFrom>,
    spiffe_id: Option<&'a str>,
    svid_serial: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    rules: &'a [String],
    /// Exchanged credentials its requests carried: source and expiry (never a value).
    #[serde(skip_serializing_if = "<[UsedCredential]>::is_empty")]
    credentials: &'a [UsedCredential],
    peer: Option<&'a str>,
    destination: std::net::SocketAddr,
    bytes_up: u64,
    bytes_down: u64,
    duration_ms: u64,
}

pub struct Trail {
    host: String,
    file: Option<Mutex<BufWriter<File>>>,
}

impl Trail {
    /// Records to the log, and appended to `file` if given (created 0600).
    pub fn open(host: String, file: Option<&Path>) -> anyhow::Result<Self> {
        use anyhow::Context;
        use std::os::unix::fs::OpenOptionsExt;
        let file = match file {
            Some(path) => Some(Mutex::new(BufWriter::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(path)
                    .with_context(|| format!("opening trail file {}", path.display()))?,
            ))),
            None => None,
        };
        Ok(Trail { host, file })
    }

    /// A flow that was let through has ended: with `verdict`, or `closed` when idgate closed it
    /// (a reload or revocation; the reason says which).
    pub fn ended(&self, flow: &OpenFlow, verdict: crate::observe::Verdict) {
        let rules = flow.rules.lock().clone();
        let credentials = flow.credentials.lock().clone();
        let reason = flow.closed_because();
        let verdict = if reason.is_some() { crate::observe::Verdict::Closed } else { verdict };
        let up = flow.up.load(std::sync::atomic::Ordering::Relaxed);
        let down = flow.down.load(std::sync::atomic::Ordering::Relaxed);
        let peer = flow.peer_label();
        let applied = (&rules[..], &credentials[..]);
        self.write(&flow.facts, peer.as_deref(), verdict, reason.as_deref(), applied, (up, down), flow.started.elapsed().as_millis() as u64);
    }

    /// A flow that was refused (nothing crossed), as its decision record tells it.
    pub fn refused(&self, d: &crate::observe::decisions::Decision) {
        let facts = FlowFacts {
            id: d.flow.clone(),
            direction: d.direction,
            process: d.process_info.clone(),
            source: d.source_id.as_deref().and_then(|s| crate::spiffe::SpiffeId::parse(s).ok()),
            serial: None,
            destination: d.destination.parse().unwrap_or_else(|_| std::net::SocketAddr::from(([0, 0, 0, 0], 0))),
            peer: None,
        };
        self.write(&facts, None, d.verdict, d.detail.as_deref(), (&[], &[]), (0, 0), 0);
    }

    #[expect(clippy::too_many_arguments, reason = "one record's fields, from a flow or a decision")]
    fn write(
        &self,
        f: &FlowFacts,
        peer: Option<&str>,
        verdict: crate::observe::Verdict,
        reason: Option<&str>,
        (rules, credentials): (&[String], &[UsedCredential]),
        (up, down): (u64, u64),
        duration_ms: u64,
    ) {
        let record = Record {
            unix_ms: SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64,
            host: &self.host,
            idgate_pid: crate::observe::flows::own_pid(),
            flow: &f.id,
            direction: f.direction,
            verdict,
            reason,
            routed_from: f.process.as_deref().and_then(|p| p.routed_from.as_ref()),
            process: f.process.as_deref().filter(|p| p.routed_from.is_none()).map(|p| Process {
                pid: p.tgid,
                start_time: p.start_time,
                exe: &p.exe,
                uid: p.uid,
                gid: p.gid,
                cgroup: &p.cgroup,
                container_id: p.container_id.as_deref(),
            }),
            spiffe_id: f.source.as_ref().map(|s| s.as_str()),
            svid_serial: f.serial.as_deref(),
            rules,
            credentials,
            peer,
            destination: f.destination,
            bytes_up: up,
            bytes_down: down,
            duration_ms,
        };
        let mut json = Vec::with_capacity(512);
        if serde_json::to_writer(&mut json, &record).is_err() {
            return;
        }
        let Ok(line) = String::from_utf8(json) else { return };
        let line = crate::terminal::escape_json(line);
        // The log prints it as it is (see `TARGET`).
        tracing::info!(target: TARGET, "{line}");
        if let Some(file) = &self.file {
            let mut file = file.lock();
            // A flow's record is complete on disk when its line is: one write per record.
            if writeln!(file, "{line}").and_then(|()| file.flush()).is_err() {
                tracing::warn!("could not append to the trail file");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::ProcessInfo;
    use std::sync::Arc;

    fn facts(exe: &str) -> FlowFacts {
        FlowFacts {
            id: "host-a-1.1".into(),
            direction: "outbound",
            process: Some(Arc::new(ProcessInfo {
                tgid: 7,
                uid: 1001,
                gid: 1001,
                exe: exe.into(),
                comm: "x".into(),
                cgroup: "/".into(),
                start_time: 1,
                exe_unknown: false,
                cgroup_unknown: false,
                exe_id: None,
                root_socket: false,
                container_id: None,
                routed_from: None,
            })),
            source: None,
            serial: None,
            destination: "10.0.0.2:80".parse().unwrap(),
            peer: None,
        }
    }

    #[test]
    fn a_record_carries_no_terminal_controls_and_decodes_to_the_same_text() {
        // A workload chooses its exe path: escape sequences in it must not reach an operator's
        // terminal raw, neither from the trail file nor from the log.
        let exe = "/tmp/\u{1b}[2J\u{7}red\u{7f}\u{9b}31m\u{85}x\u{a9}";
        let dir = std::env::temp_dir().join(format!("idgate-trail-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("trail.jsonl");
        let trail = Trail::open("host-a".into(), Some(&path)).unwrap();
        trail.write(&facts(exe), None, crate::observe::Verdict::Tunneled, None, (&[], &[]), (1, 2), 3);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let controls: Vec<char> = text.trim_end().chars().filter(|c| c.is_control()).collect();
        assert!(controls.is_empty(), "raw controls {controls:?} in {text:?}");
        let record: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(record["process"]["exe"], exe);
        assert!(text.contains('\u{a9}'), "printable non-ASCII stays as it is: {text:?}");
    }
}
