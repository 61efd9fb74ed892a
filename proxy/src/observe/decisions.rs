//! The per-flow decision record: kept in a short ring for /status, and logged at debug level
//! when it is made. The log's record of every flow at info level is the attribution trail's,
//! written once when the flow ends or is refused (one line per flow, as ztunnel logs a
//! connection when it completes: a second line per flow would double the log's volume and
//! its cost on the connection path).
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Clone, Debug, serde::Serialize)]
pub struct Decision {
    pub unix_ms: u64,
    pub direction: &'static str,
    pub flow: String,
    pub source_id: Option<String>,
    pub process: Option<String>,
    pub destination: String,
    pub verdict: crate::observe::Verdict,
    pub detail: Option<String>,
    /// The process behind an outbound or local flow, for the attribution trail.
    #[serde(skip)]
    pub process_info: Option<std::sync::Arc<crate::identity::ProcessInfo>>,
}

impl Decision {
    pub fn new(direction: &'static str, flow: String) -> Self {
        Decision {
            unix_ms: 0,
            direction,
            flow,
            source_id: None,
            process: None,
            destination: String::new(),
            verdict: crate::observe::Verdict::Undecided,
            detail: None,
            process_info: None,
        }
    }
}

pub struct DecisionLog {
    ring: Mutex<VecDeque<Decision>>,
}

const KEEP: usize = 512;

impl DecisionLog {
    pub fn new() -> Self {
        DecisionLog { ring: Mutex::new(VecDeque::with_capacity(KEEP)) }
    }

    pub fn record(&self, mut d: Decision) {
        d.unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
        // The target operators filter on (`RUST_LOG=idgate::decisions=debug`) stays put.
        tracing::debug!(
            target: "idgate::decisions",
            direction = d.direction,
            flow = %d.flow,
            source_id = d.source_id.as_deref().unwrap_or("-"),
            process = d.process.as_deref().unwrap_or("-"),
            destination = %d.destination,
            verdict = d.verdict.as_str(),
            detail = d.detail.as_deref().unwrap_or(""),
            "flow decision"
        );
        let mut ring = self.ring.lock();
        if ring.len() == KEEP {
            ring.pop_front();
        }
        ring.push_back(d);
    }

    pub fn recent(&self) -> Vec<Decision> {
        self.ring.lock().iter().cloned().collect()
    }
}

impl Default for DecisionLog {
    fn default() -> Self {
        Self::new()
    }
}
