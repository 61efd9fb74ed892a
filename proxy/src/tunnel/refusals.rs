//! Refused tunnel connections (failed, timed out or unadmitted handshakes), counted by reason
//! in a metric and summed up in one log line per interval: a flood of them must neither flood
//! the log nor push real decisions out of the decision ring. /status shows the counts and the
//! last few refused sources.
use crate::metrics::Metrics;
use parking_lot::Mutex;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

const RECENT: usize = 16;

#[derive(Clone, serde::Serialize)]
pub struct Refused {
    pub unix_ms: u64,
    pub remote: SocketAddr,
    pub reason: &'static str,
    pub detail: String,
}

pub struct HandshakeRefusals {
    metrics: Arc<Metrics>,
    since_summary: Mutex<BTreeMap<&'static str, u64>>,
    recent: Mutex<VecDeque<Refused>>,
}

impl HandshakeRefusals {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        HandshakeRefusals { metrics, since_summary: Mutex::default(), recent: Mutex::default() }
    }

    pub fn record(&self, remote: SocketAddr, reason: &'static str, detail: String) {
        self.metrics.handshake_refused(reason);
        tracing::debug!(%remote, reason, %detail, "tunnel connection refused");
        *self.since_summary.lock().entry(reason).or_default() += 1;
        let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
        let mut recent = self.recent.lock();
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(Refused { unix_ms, remote, reason, detail });
    }

    /// Logs what was refused since the last call, if anything, in one line; returns how many.
    pub fn log_summary(&self, interval_s: u64) -> u64 {
        let counts = std::mem::take(&mut *self.since_summary.lock());
        if counts.is_empty() {
            return 0;
        }
        let total: u64 = counts.values().sum();
        let by_reason = counts.iter().map(|(r, n)| format!("{r} {n}")).collect::<Vec<_>>().join(", ");
        let last = self.recent.lock().back().map(|r| format!("; last from {}: {}", r.remote, r.detail)).unwrap_or_default();
        tracing::warn!(refused = total, "refused {total} tunnel connections in the last {interval_s}s ({by_reason}){last}");
        total
    }

    pub fn recent(&self) -> Vec<Refused> {
        self.recent.lock().iter().cloned().collect()
    }
}
