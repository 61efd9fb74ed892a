//! Admission of unauthenticated connections to the tunnel port. Anyone who can reach the port
//! can open connections, so until a handshake completes a connection is kept cheap (no TLS
//! state or buffers before its first bytes arrive: see `TunnelSocket`) and bounded: at most
//! `max_handshakes` at a time, `max_handshakes_per_source` from one address, each within
//! `handshake_timeout`. A refused one costs a counter, not a log line or a decision record
//! (`HandshakeRefusals` sums them up).
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

pub struct HandshakeGate {
    state: Mutex<Admitted>,
    max_total: usize,
    max_per_source: usize,
}

#[derive(Default)]
struct Admitted {
    total: usize,
    per_source: HashMap<IpAddr, usize>,
}

/// Why a connection was not admitted to a handshake.
pub const BUSY: &str = "busy";
pub const SOURCE_LIMIT: &str = "source_limit";

/// One admitted handshake; gives its places back when dropped.
pub struct Ticket {
    gate: Arc<HandshakeGate>,
    source: IpAddr,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut s = self.gate.state.lock();
        s.total -= 1;
        if let Some(n) = s.per_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                s.per_source.remove(&self.source);
            }
        }
    }
}

impl HandshakeGate {
    pub fn new(max_total: usize, max_per_source: usize) -> Arc<Self> {
        Arc::new(HandshakeGate { state: Mutex::new(Admitted::default()), max_total, max_per_source })
    }

    pub fn admit(self: &Arc<Self>, source: IpAddr) -> Result<Ticket, &'static str> {
        let mut s = self.state.lock();
        if s.total >= self.max_total {
            return Err(BUSY);
        }
        let from_source = s.per_source.entry(source).or_default();
        if *from_source >= self.max_per_source {
            return Err(SOURCE_LIMIT);
        }
        *from_source += 1;
        s.total += 1;
        Ok(Ticket { gate: self.clone(), source })
    }

    pub fn in_progress(&self) -> usize {
        self.state.lock().total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_total_and_per_source_and_gives_places_back() {
        let gate = HandshakeGate::new(3, 2);
        let (a, b, c): (IpAddr, IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into(), [10, 0, 0, 3].into());
        let t1 = gate.admit(a).unwrap();
        let _t2 = gate.admit(a).unwrap();
        assert_eq!(gate.admit(a).err(), Some(SOURCE_LIMIT));
        let _t3 = gate.admit(b).unwrap();
        assert_eq!(gate.admit(c).err(), Some(BUSY));
        drop(t1);
        assert_eq!(gate.in_progress(), 2);
        let _t4 = gate.admit(c).unwrap();
        assert_eq!(gate.admit(a).err(), Some(BUSY));
    }
}
