//! Refused tunnel connections (failed, timed out or unadmitted handshakes), counted by reason
//! in a metric and summed up in one log line per interval: a flood of them must neither flood
//! the log nor push real decisions out of the decision ring. /status shows the counts and the
//! last few refused sources. Streams an authenticated peer opens and is refused (denied, not a
//! CONNECT, unreachable) each leave a trail record only up to a budget per interval; beyond it
//! they are counted and summed up in the same line.
use crate::observe::metrics::Metrics;
use crate::observe::Verdict;
use parking_lot::Mutex;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

const RECENT: usize = 16;
/// Trail records of refused tunnel streams per summary interval.
pub const STREAM_TRAIL_BUDGET: u64 = 100;

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
    streams: Mutex<StreamRecords>,
}

/// Refused streams' trail records since the last summary: how many were written, and the
/// verdicts of those left out.
#[derive(Default)]
struct StreamRecords {
    written: u64,
    left_out: BTreeMap<&'static str, u64>,
}

impl HandshakeRefusals {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        HandshakeRefusals { metrics, since_summary: Mutex::default(), recent: Mutex::default(), streams: Mutex::default() }
    }

    /// Whether a refused stream (`verdict`) gets its trail record: within the budget of this
    /// interval; otherwise it is counted for the summary.
    pub fn stream_trail(&self, verdict: Verdict) -> bool {
        let mut s = self.streams.lock();
        if s.written < STREAM_TRAIL_BUDGET {
            s.written += 1;
            return true;
        }
        *s.left_out.entry(verdict.as_str()).or_default() += 1;
        false
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

    /// Logs what was refused since the last call, if anything, in one line; returns how many
    /// connections.
    pub fn log_summary(&self, interval_s: u64) -> u64 {
        let streams = std::mem::take(&mut *self.streams.lock());
        if !streams.left_out.is_empty() {
            let total: u64 = streams.left_out.values().sum();
            let by_verdict = streams.left_out.iter().map(|(v, n)| format!("{v} {n}")).collect::<Vec<_>>().join(", ");
            tracing::warn!(
                refused_streams = total,
                "{total} more refused tunnel streams in the last {interval_s}s than the trail records ({STREAM_TRAIL_BUDGET}): {by_verdict}"
            );
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_streams_beyond_the_budget_leave_no_trail_record_until_the_next_interval() {
        let refusals = HandshakeRefusals::new(Arc::new(Metrics::new()));
        let written = (0..STREAM_TRAIL_BUDGET * 10).filter(|_| refusals.stream_trail(Verdict::Denied)).count() as u64;
        assert_eq!(written, STREAM_TRAIL_BUDGET);
        assert_eq!(refusals.streams.lock().left_out.get("denied"), Some(&(STREAM_TRAIL_BUDGET * 9)));
        refusals.log_summary(10);
        assert!(refusals.stream_trail(Verdict::BadRequest), "a new interval, a new budget");
    }
}
