//! Admission of unauthenticated connections to the tunnel port. Anyone who can reach the port
//! can open connections, so until a handshake completes a connection is kept cheap (no TLS
//! state or buffers before its first bytes arrive: see `TunnelSocket`) and bounded: at most
//! `max_handshakes` at a time, `max_handshakes_per_source` from one source, each within
//! `handshake_timeout`. A refused one costs a counter, not a log line or a decision record
//! (`HandshakeRefusals` sums them up).
//!
//! A source is an IPv4 address or an IPv6 /64 (one host commonly holds a whole /64, so its
//! addresses are one source). When every place is taken, a source holding fewer handshakes than
//! the heaviest one still gets in: the heaviest source's oldest handshake is evicted for it. So
//! a flood, however many addresses it comes from, cannot lock out a peer that is not flooding
//! while any flooding source holds more than that peer would.
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use tokio::sync::Notify;

pub struct HandshakeGate {
    state: Mutex<Admitted>,
    max_total: usize,
    max_per_source: usize,
}

#[derive(Default)]
struct Admitted {
    total: usize,
    next_id: u64,
    /// Per source, its handshakes in progress, oldest first.
    per_source: HashMap<Source, VecDeque<Held>>,
}

struct Held {
    id: u64,
    evict: Arc<Notify>,
}

/// What the limits count by: an IPv4 address, or the /64 of an IPv6 one.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Source(IpAddr);

impl Source {
    pub fn of(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(_) => Source(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                // A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d.
                Some(v4) => Source(IpAddr::V4(v4)),
                None => Source(IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1)))),
            },
        }
    }
}

/// Why a connection was not admitted to a handshake, or lost its place.
pub const BUSY: &str = "busy";
pub const SOURCE_LIMIT: &str = "source_limit";
pub const EVICTED: &str = "evicted";

/// One admitted handshake; gives its place back when dropped.
pub struct Ticket {
    gate: Arc<HandshakeGate>,
    source: Source,
    id: u64,
    evict: Arc<Notify>,
}

impl Ticket {
    /// Resolves when the place was given to a lighter source: the handshake must end.
    pub async fn evicted(&self) {
        self.evict.notified().await
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut s = self.gate.state.lock();
        let Some(held) = s.per_source.get_mut(&self.source) else { return };
        // An evicted ticket's place was taken from the counts already.
        let Some(at) = held.iter().position(|h| h.id == self.id) else { return };
        held.remove(at);
        if held.is_empty() {
            s.per_source.remove(&self.source);
        }
        s.total -= 1;
    }
}

impl HandshakeGate {
    pub fn new(max_total: usize, max_per_source: usize) -> Arc<Self> {
        Arc::new(HandshakeGate { state: Mutex::new(Admitted::default()), max_total, max_per_source })
    }

    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, &'static str> {
        let source = Source::of(ip);
        let mut s = self.state.lock();
        let own = s.per_source.get(&source).map_or(0, VecDeque::len);
        if own >= self.max_per_source {
            return Err(SOURCE_LIMIT);
        }
        if s.total >= self.max_total {
            // Full: a place goes to this source only if another holds more than it then would.
            let heaviest = s.per_source.iter().max_by_key(|(_, held)| held.len()).map(|(k, held)| (*k, held.len()));
            match heaviest {
                Some((heavy, n)) if n > own + 1 => {
                    let held = s.per_source.get_mut(&heavy).expect("found above");
                    if let Some(oldest) = held.pop_front() {
                        oldest.evict.notify_one();
                        s.total -= 1;
                    }
                    if s.per_source.get(&heavy).is_some_and(VecDeque::is_empty) {
                        s.per_source.remove(&heavy);
                    }
                }
                _ => return Err(BUSY),
            }
        }
        let id = s.next_id;
        s.next_id += 1;
        let evict = Arc::new(Notify::new());
        s.per_source.entry(source).or_default().push_back(Held { id, evict: evict.clone() });
        s.total += 1;
        Ok(Ticket { gate: self.clone(), source, id, evict })
    }

    pub fn in_progress(&self) -> usize {
        self.state.lock().total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    /// Whether the gate took the ticket's place (it no longer counts it).
    fn is_evicted(t: &Ticket) -> bool {
        let s = t.gate.state.lock();
        !s.per_source.get(&t.source).is_some_and(|held| held.iter().any(|h| h.id == t.id))
    }

    #[test]
    fn bounds_total_and_per_source_and_gives_places_back() {
        let gate = HandshakeGate::new(3, 2);
        let (a, b, c): (IpAddr, IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into(), [10, 0, 0, 3].into());
        let t1 = gate.admit(a).unwrap();
        let _t2 = gate.admit(a).unwrap();
        assert_eq!(gate.admit(a).err(), Some(SOURCE_LIMIT));
        let _t3 = gate.admit(b).unwrap();
        drop(t1);
        assert_eq!(gate.in_progress(), 2);
        let _t4 = gate.admit(c).unwrap();
        // Full, and every source holds one: nobody is heavier than a newcomer would be.
        assert_eq!(gate.admit([10, 0, 0, 4].into()).err(), Some(BUSY));
        assert_eq!(gate.admit(a).err(), Some(BUSY));
    }

    #[test]
    fn an_ipv6_64_is_one_source_whatever_its_addresses() {
        let gate = HandshakeGate::new(1024, 64);
        let held: Vec<Ticket> = (0..1000u16).filter_map(|i| gate.admit(Ipv6Addr::new(0x2001, 0xdb8, 7, 1, i, i, 1, 2).into()).ok()).collect();
        assert_eq!(held.len(), 64, "one /64 took more than a source's share");
        assert!(gate.admit(Ipv6Addr::new(0x2001, 0xdb8, 7, 2, 0, 0, 0, 1).into()).is_ok(), "the next /64 is another source");
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(Source::of(mapped), Source::of([10, 0, 0, 1].into()));
    }

    #[test]
    fn a_flood_from_many_sources_leaves_room_for_one_that_is_not_flooding() {
        let gate = HandshakeGate::new(64, 16);
        // Thirty-two flooding addresses, each trying for its limit: twice what the gate holds.
        // Those that came later took places from the heaviest ones.
        let mut flood: Vec<Ticket> = Vec::new();
        for i in 0..32u8 {
            flood.extend((0..16).filter_map(|_| gate.admit([10, 1, 0, i].into()).ok()));
        }
        assert_eq!(gate.in_progress(), 64);
        let evicted = flood.iter().filter(|t| is_evicted(t)).count();
        assert!(evicted > 0);
        // A peer that holds nothing gets a place: a flooder's oldest handshake gives it up, and
        // is told to end.
        let oldest_of_heaviest = {
            let s = gate.state.lock();
            let (_, held) = s.per_source.iter().max_by_key(|(_, held)| held.len()).unwrap();
            held[0].id
        };
        let quiet = gate.admit([10, 9, 9, 9].into()).expect("a source that is not flooding was locked out");
        assert_eq!(flood.iter().filter(|t| is_evicted(t)).count(), evicted + 1);
        {
            let told = flood.iter().find(|t| t.id == oldest_of_heaviest).unwrap();
            let mut ending = std::pin::pin!(told.evicted());
            assert_eq!(ending.as_mut().poll(&mut Context::from_waker(Waker::noop())), Poll::Ready(()));
        }
        assert_eq!(gate.in_progress(), 64);
        assert!(!is_evicted(&quiet));
        // The evicted ticket's end gives nothing back twice.
        flood.retain(|t| !is_evicted(t));
        assert_eq!(gate.in_progress(), 64);
        drop(flood);
        assert_eq!(gate.in_progress(), 1);
        drop(quiet);
        assert_eq!(gate.in_progress(), 0);
    }
}
