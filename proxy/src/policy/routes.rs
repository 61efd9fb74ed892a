//! Which `[[outbound]]` rule a destination falls under: the first in file order whose CIDRs
//! hold the address and whose ports hold the port. Asked for every new flow, so it costs one
//! hash lookup per distinct prefix length in the file and a binary search of that prefix's
//! ports, whatever the number of rules (a scan of 10,000 rules is tens of microseconds).
use crate::config::OutboundRule;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

/// The rules' destinations, indexed by (family, prefix length, network).
pub struct RouteIndex {
    v4: Family,
    v6: Family,
}

#[derive(Default)]
struct Family {
    /// One entry per prefix length in use; the answer is the lowest rule index over all of them.
    lengths: Vec<Prefixes>,
}

struct Prefixes {
    mask: u128,
    networks: HashMap<u128, Ports>,
}

/// (first port, last port, rule index).
type PortSpan = (u16, u16, usize);

/// One network's port ranges as disjoint stretches, each with the first rule covering it.
struct Ports {
    /// Sorted by first port, not overlapping.
    stretches: Vec<PortSpan>,
}

impl RouteIndex {
    pub fn new(rules: &[OutboundRule]) -> RouteIndex {
        // (family is v6, prefix length) → network → its rules' port ranges
        let mut by_prefix: BTreeMap<(bool, u8), HashMap<u128, Vec<PortSpan>>> = BTreeMap::new();
        for (i, rule) in rules.iter().enumerate() {
            for cidr in &rule.cidrs {
                let (v6, bits, len) = match cidr.0 {
                    ipnet::IpNet::V4(n) => (false, u32::from(n.network()) as u128, n.prefix_len()),
                    ipnet::IpNet::V6(n) => (true, u128::from(n.network()), n.prefix_len()),
                };
                let ranges = by_prefix.entry((v6, len)).or_default().entry(bits).or_default();
                ranges.extend(rule.ports.iter().map(|p| (p.min, p.max, i)));
            }
        }
        let mut index = RouteIndex { v4: Family::default(), v6: Family::default() };
        for ((v6, len), networks) in by_prefix {
            let width = if v6 { 128 } else { 32 };
            let prefixes =
                Prefixes { mask: mask(width, len), networks: networks.into_iter().map(|(net, ranges)| (net, Ports::new(ranges))).collect() };
            if v6 { &mut index.v6 } else { &mut index.v4 }.lengths.push(prefixes);
        }
        index
    }

    /// The index of the first rule covering `ip`:`port`.
    pub fn find(&self, ip: IpAddr, port: u16) -> Option<usize> {
        let (family, bits) = match ip {
            IpAddr::V4(a) => (&self.v4, u32::from(a) as u128),
            IpAddr::V6(a) => (&self.v6, u128::from(a)),
        };
        family.lengths.iter().filter_map(|p| p.networks.get(&(bits & p.mask))?.find(port)).min()
    }

    /// Prefix lengths in use (each costs one hash lookup per flow).
    #[cfg(test)]
    fn lengths(&self) -> usize {
        self.v4.lengths.len() + self.v6.lengths.len()
    }
}

fn mask(width: u32, len: u8) -> u128 {
    let all = if width == 128 { u128::MAX } else { (1u128 << width) - 1 };
    if len == 0 {
        0
    } else {
        all & !((1u128 << (width - len as u32)) - 1)
    }
}

impl Ports {
    /// Sweeps the port axis: in each stretch between range boundaries the same ranges are
    /// active, and the lowest rule index among them answers.
    fn new(ranges: Vec<PortSpan>) -> Ports {
        let mut events: Vec<(u32, bool, usize)> = Vec::with_capacity(ranges.len() * 2);
        for (lo, hi, rule) in ranges {
            events.push((lo as u32, true, rule));
            events.push((hi as u32 + 1, false, rule));
        }
        events.sort_unstable();
        let mut active: BTreeMap<usize, usize> = BTreeMap::new();
        let mut stretches: Vec<PortSpan> = Vec::new();
        let mut at = 0;
        while at < events.len() {
            let point = events[at].0;
            while at < events.len() && events[at].0 == point {
                let (_, start, rule) = events[at];
                if start {
                    *active.entry(rule).or_default() += 1;
                } else if let Some(n) = active.get_mut(&rule) {
                    *n -= 1;
                    if *n == 0 {
                        active.remove(&rule);
                    }
                }
                at += 1;
            }
            let Some(&first) = active.keys().next() else { continue };
            let end = events.get(at).map_or(u16::MAX as u32, |e| e.0 - 1) as u16;
            match stretches.last_mut() {
                Some(last) if last.2 == first && last.1 as u32 + 1 == point => last.1 = end,
                _ => stretches.push((point as u16, end, first)),
            }
        }
        Ports { stretches }
    }

    fn find(&self, port: u16) -> Option<usize> {
        let i = self.stretches.partition_point(|s| s.0 <= port).checked_sub(1)?;
        let (_, hi, rule) = self.stretches[i];
        (port <= hi).then_some(rule)
    }
}

#[cfg(test)]
#[path = "routes_tests.rs"]
mod tests;
