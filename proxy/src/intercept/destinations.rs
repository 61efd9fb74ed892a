//! The intercepted destinations, (CIDR, port range) pairs as the config lists them, in the two
//! shapes the kernel looks them up in: disjoint (address range × port range) boxes for the
//! nftables concatenated interval sets, which refuse overlapping elements; and, for the cgroup
//! guard, each configured prefix with every port any prefix containing it takes, for a
//! longest-prefix-match lookup. Both cost one lookup per new connection, whatever their size.
use crate::config::{Cidr, PortRange};
use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

/// One set element: every address in `addrs` with every port in `ports` (both inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Element<A> {
    pub addrs: (A, A),
    pub ports: (u16, u16),
}

/// The destinations of one address family as disjoint boxes: IPv4 then IPv6.
pub fn boxes(destinations: &[(Cidr, PortRange)]) -> (Vec<Element<u32>>, Vec<Element<u128>>) {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for (cidr, ports) in destinations {
        match (cidr.0.network(), cidr.0.broadcast()) {
            (IpAddr::V4(lo), IpAddr::V4(hi)) => v4.push(((u32::from(lo), u32::from(hi)), *ports)),
            (IpAddr::V6(lo), IpAddr::V6(hi)) => v6.push(((u128::from(lo), u128::from(hi)), *ports)),
            _ => unreachable!("network and broadcast share a family"),
        }
    }
    (disjoint(&v4), disjoint(&v6))
}

/// Merged address ranges over a stretch of ports (first, last).
type Stretch<A> = (Vec<(A, A)>, u32, u32);

/// Sweeps the port axis: between two consecutive port boundaries the same entries are active,
/// and their address ranges merge into disjoint ones; stretches whose merged addresses are the
/// same join into one port range.
fn disjoint<A: Copy + Ord + Into<u128> + TryFrom<u128>>(entries: &[((A, A), PortRange)]) -> Vec<Element<A>> {
    let mut bounds = BTreeSet::new();
    for (_, p) in entries {
        bounds.insert(p.min as u32);
        bounds.insert(p.max as u32 + 1);
    }
    let bounds: Vec<u32> = bounds.into_iter().collect();
    let mut out: Vec<Element<A>> = Vec::new();
    let mut previous: Option<Stretch<A>> = None;
    for pair in bounds.windows(2) {
        let (lo, hi) = (pair[0], pair[1] - 1);
        let mut active: Vec<(A, A)> = entries.iter().filter(|(_, p)| p.min as u32 <= lo && hi <= p.max as u32).map(|(a, _)| *a).collect();
        let merged = merge(&mut active);
        match &mut previous {
            Some((addrs, _, end)) if *addrs == merged && *end + 1 == lo => *end = hi,
            _ => {
                flush(&mut out, previous.take());
                previous = Some((merged, lo, hi));
            }
        }
    }
    flush(&mut out, previous);
    out
}

fn flush<A: Copy>(out: &mut Vec<Element<A>>, stretch: Option<Stretch<A>>) {
    if let Some((addrs, lo, hi)) = stretch {
        out.extend(addrs.into_iter().map(|a| Element { addrs: a, ports: (lo as u16, hi as u16) }));
    }
}

/// Overlapping and adjacent ranges joined, sorted.
fn merge<A: Copy + Ord + Into<u128> + TryFrom<u128>>(ranges: &mut [(A, A)]) -> Vec<(A, A)> {
    ranges.sort();
    let mut out: Vec<(A, A)> = Vec::new();
    for &(lo, hi) in ranges.iter() {
        match out.last_mut() {
            Some((_, end)) if (*end).into().saturating_add(1) >= lo.into() => {
                if hi > *end {
                    *end = hi;
                }
            }
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// A configured prefix and the port ranges (merged, sorted) of every configured prefix that
/// contains it, itself included: what a longest-prefix match on it must answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefix {
    pub net: ipnet::IpNet,
    pub ports: Vec<(u16, u16)>,
}

pub fn prefixes(destinations: &[(Cidr, PortRange)]) -> Vec<Prefix> {
    let mut own: HashMap<ipnet::IpNet, Vec<(u16, u16)>> = HashMap::new();
    for (cidr, p) in destinations {
        own.entry(cidr.0).or_default().push((p.min, p.max));
    }
    let mut out: Vec<Prefix> = own
        .keys()
        .map(|net| {
            let mut ports: Vec<(u16, u16)> = (0..=net.prefix_len())
                .filter_map(|len| ipnet::IpNet::new(net.addr(), len).ok().map(|n| n.trunc()))
                .filter_map(|ancestor| own.get(&ancestor))
                .flatten()
                .copied()
                .collect();
            Prefix { net: *net, ports: merge_ports(&mut ports) }
        })
        .collect();
    out.sort_by_key(|p| (p.net.addr(), p.net.prefix_len()));
    out
}

fn merge_ports(ports: &mut [(u16, u16)]) -> Vec<(u16, u16)> {
    ports.sort();
    let mut out: Vec<(u16, u16)> = Vec::new();
    for &(lo, hi) in ports.iter() {
        match out.last_mut() {
            Some((_, end)) if (*end as u32) + 1 >= lo as u32 => *end = (*end).max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// Port ranges merged (for the protected-ports set, whose elements must not overlap either).
/// Inclusive address ranges of one family.
pub type Ranges<A> = Vec<(A, A)>;

/// Address prefixes as disjoint, merged ranges: IPv4 then IPv6 (an interval set's elements).
pub fn merged_addresses(cidrs: &[Cidr]) -> (Ranges<u32>, Ranges<u128>) {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for cidr in cidrs {
        match (cidr.0.network(), cidr.0.broadcast()) {
            (IpAddr::V4(lo), IpAddr::V4(hi)) => v4.push((u32::from(lo), u32::from(hi))),
            (IpAddr::V6(lo), IpAddr::V6(hi)) => v6.push((u128::from(lo), u128::from(hi))),
            _ => unreachable!("network and broadcast share a family"),
        }
    }
    (merge(&mut v4), merge(&mut v6))
}

pub fn merged_ports(ranges: &[PortRange]) -> Vec<(u16, u16)> {
    merge_ports(&mut ranges.iter().map(|p| (p.min, p.max)).collect::<Vec<_>>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(cidr: &str, lo: u16, hi: u16) -> (Cidr, PortRange) {
        (Cidr::try_from(cidr.to_string()).unwrap(), PortRange { min: lo, max: hi })
    }

    /// Every (address, port) of a small universe is in exactly as many boxes as it is covered
    /// by the config: one if covered, none if not.
    fn check_exact(destinations: &[(Cidr, PortRange)], addrs: impl Iterator<Item = IpAddr> + Clone, ports: std::ops::RangeInclusive<u16>) {
        let (v4, v6) = boxes(destinations);
        for addr in addrs {
            for port in ports.clone() {
                let covered = destinations.iter().any(|(c, p)| c.0.contains(&addr) && p.min <= port && port <= p.max);
                let hits = match addr {
                    IpAddr::V4(a) => {
                        let a = u32::from(a);
                        v4.iter().filter(|b| b.addrs.0 <= a && a <= b.addrs.1 && b.ports.0 <= port && port <= b.ports.1).count()
                    }
                    IpAddr::V6(a) => {
                        let a = u128::from(a);
                        v6.iter().filter(|b| b.addrs.0 <= a && a <= b.addrs.1 && b.ports.0 <= port && port <= b.ports.1).count()
                    }
                };
                assert_eq!(hits, covered as usize, "{addr} port {port}: {hits} boxes, covered {covered}");
            }
        }
    }

    #[test]
    fn address_ranges_merge_when_they_touch_or_overlap() {
        let c = |s: &str| Cidr::try_from(s.to_string()).unwrap();
        let (v4, v6) =
            merged_addresses(&[c("10.0.1.0/24"), c("10.0.0.0/24"), c("10.0.0.128/25"), c("10.9.0.0/16"), c("fd00::/64"), c("255.255.255.255")]);
        assert_eq!(v4, vec![(0x0a00_0000, 0x0a00_01ff), (0x0a09_0000, 0x0a09_ffff), (u32::MAX, u32::MAX)]);
        assert_eq!(v6.len(), 1);
    }

    #[test]
    fn overlapping_entries_become_disjoint_boxes_that_cover_exactly_the_same() {
        let d = [
            dest("10.0.0.0/30", 80, 82),
            dest("10.0.0.2/31", 81, 90),
            dest("10.0.0.3", 85, 85),
            dest("10.0.0.8/31", 80, 80),
            dest("10.0.0.4/31", 88, 92),
            dest("fd00::/127", 80, 81),
            dest("fd00::1", 81, 84),
        ];
        let v4 = (0u32..12).map(|i| IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i)));
        check_exact(&d, v4, 78..=94);
        let v6 = (0u128..4).map(|i| IpAddr::from(std::net::Ipv6Addr::from(0xfd00u128 << 112 | i)));
        check_exact(&d, v6, 78..=86);
    }

    #[test]
    fn ten_thousand_hosts_on_one_port_merge_into_ranges() {
        let d: Vec<_> = (0u32..10_000).map(|i| dest(&std::net::Ipv4Addr::from(0x0a4e_0000 + i).to_string(), 7000, 7000)).collect();
        let (v4, v6) = boxes(&d);
        assert!(v6.is_empty());
        assert_eq!(v4, [Element { addrs: (0x0a4e_0000, 0x0a4e_0000 + 9_999), ports: (7000, 7000) }]);
    }

    #[test]
    fn the_whole_port_range_and_address_space_do_not_overflow() {
        let d = [dest("0.0.0.0/0", 0, 65535), dest("::/0", 1, 65535)];
        let (v4, v6) = boxes(&d);
        assert_eq!(v4, [Element { addrs: (0, u32::MAX), ports: (0, 65535) }]);
        assert_eq!(v6, [Element { addrs: (0, u128::MAX), ports: (1, 65535) }]);
    }

    #[test]
    fn a_prefix_answers_the_ports_of_every_prefix_containing_it() {
        let d = [dest("10.0.0.0/8", 80, 80), dest("10.1.0.0/16", 443, 443), dest("10.1.2.3", 81, 90), dest("10.2.0.0/16", 22, 22)];
        let p = prefixes(&d);
        let of = |s: &str| p.iter().find(|x| x.net == s.parse::<ipnet::IpNet>().unwrap()).unwrap().ports.clone();
        assert_eq!(of("10.0.0.0/8"), [(80, 80)]);
        assert_eq!(of("10.1.0.0/16"), [(80, 80), (443, 443)]);
        assert_eq!(of("10.1.2.3/32"), [(80, 90), (443, 443)]);
        assert_eq!(of("10.2.0.0/16"), [(22, 22), (80, 80)]);
    }
}
