//! The guard's maps, filled from the ruleset: a prefix trie of intercepted destinations, each
//! pointing at the bitmap of its ports, and the protected ports' bitmap.
use super::bpf;
use super::program::{BITMAP_BYTES, KEY_BYTES, PROTECTED_INDEX};
use crate::intercept::destinations;
use crate::intercept::Ruleset;
use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsFd, OwnedFd};

/// More distinct port lists than this (each a kernel bitmap of 8 KiB) is refused.
pub const MAX_PORT_SETS: usize = 4096;

pub struct Maps {
    pub dests: OwnedFd,
    pub ports: OwnedFd,
    pub sources: OwnedFd,
    pub prefixes: usize,
    pub port_sets: usize,
}

/// A trie key and the index of its port bitmap.
type Entry = (Vec<u8>, u32);

/// The bitmaps (protected ports first) and each prefix's bitmap index, without the kernel.
pub fn plan(rs: &Ruleset) -> io::Result<(Vec<Vec<u8>>, Vec<Entry>)> {
    let mut bitmaps = vec![bitmap(&destinations::merged_ports(&rs.protected_ports))];
    let mut index: HashMap<Vec<(u16, u16)>, u32> = HashMap::new();
    let mut keys = Vec::new();
    for p in destinations::prefixes(&rs.destinations) {
        let next = bitmaps.len() as u32;
        let i = *index.entry(p.ports.clone()).or_insert_with(|| {
            bitmaps.push(bitmap(&p.ports));
            next
        });
        keys.push((trie_key(&p.net), i));
    }
    if bitmaps.len() > MAX_PORT_SETS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the destinations use {} distinct port lists; the cgroup guard holds at most {MAX_PORT_SETS}", bitmaps.len()),
        ));
    }
    debug_assert_eq!(PROTECTED_INDEX, 0);
    Ok((bitmaps, keys))
}

pub fn build(rs: &Ruleset) -> io::Result<Maps> {
    let (bitmaps, keys) = plan(rs)?;
    let dests = bpf::map_create(bpf::BPF_MAP_TYPE_LPM_TRIE, KEY_BYTES, 4, keys.len().max(1) as u32, bpf::BPF_F_NO_PREALLOC, "idgate_dests")?;
    for (key, i) in &keys {
        bpf::map_update(dests.as_fd(), key, &i.to_ne_bytes())?;
    }
    let ports = bpf::map_create(bpf::BPF_MAP_TYPE_ARRAY, 4, BITMAP_BYTES, bitmaps.len() as u32, 0, "idgate_ports")?;
    for (i, b) in bitmaps.iter().enumerate() {
        bpf::map_update(ports.as_fd(), &(i as u32).to_ne_bytes(), b)?;
    }
    let exempt = container_sources(rs, &crate::sys::netif::all());
    let sources = bpf::map_create(bpf::BPF_MAP_TYPE_LPM_TRIE, KEY_BYTES, 1, exempt.len().max(1) as u32, bpf::BPF_F_NO_PREALLOC, "idgate_sources")?;
    for (key, passes) in &exempt {
        bpf::map_update(sources.as_fd(), key, &[u8::from(*passes)])?;
    }
    Ok(Maps { dests, ports, sources, prefixes: keys.len(), port_sets: bitmaps.len() - 1 })
}

/// The containers' networks (their SYNs pass: the host redirects them), and the host's own
/// addresses among them (a bridge's address), whose SYNs do not.
fn container_sources(rs: &Ruleset, local: &std::collections::BTreeSet<IpAddr>) -> Vec<(Vec<u8>, bool)> {
    let mut out: Vec<(Vec<u8>, bool)> = rs.container_networks.iter().map(|c| (trie_key(&c.0), true)).collect();
    for ip in local.iter().filter(|ip| rs.container_networks.iter().any(|c| c.contains(ip))) {
        out.push((trie_key(&ipnet::IpNet::from(*ip)), false));
    }
    out
}

fn bitmap(ranges: &[(u16, u16)]) -> Vec<u8> {
    let mut b = vec![0u8; BITMAP_BYTES as usize];
    for &(lo, hi) in ranges {
        for port in lo..=hi {
            b[port as usize / 8] |= 1 << (port % 8);
        }
    }
    b
}

/// Prefix length and address as the trie stores them: IPv4 as an IPv4-mapped IPv6 address.
fn trie_key(net: &ipnet::IpNet) -> Vec<u8> {
    let (len, addr) = match net.addr() {
        IpAddr::V4(a) => (96 + net.prefix_len() as u32, a.to_ipv6_mapped().octets()),
        IpAddr::V6(a) => (net.prefix_len() as u32, a.octets()),
    };
    let mut key = len.to_ne_bytes().to_vec();
    key.extend_from_slice(&addr);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_pass_but_not_the_hosts_own_addresses_among_them() {
        let mut r = rs(&[("10.0.0.0/8", 80, 80)], &[]);
        r.container_networks = vec![Cidr::try_from("10.88.0.0/16".to_string()).unwrap()];
        let local = ["10.88.0.1", "192.168.1.5"].iter().map(|a| a.parse().unwrap()).collect();
        let entries = container_sources(&r, &local);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0], (trie_key(&"10.88.0.0/16".parse().unwrap()), true));
        assert_eq!(entries[1], (trie_key(&"10.88.0.1/32".parse().unwrap()), false));
    }
    use crate::config::{Cidr, GuardCgroup, PortRange};

    fn rs(dests: &[(&str, u16, u16)], protected: &[(u16, u16)]) -> Ruleset {
        Ruleset {
            table: "t".into(),
            bypass_mark: 1,
            redirect_port: 15001,
            destinations: dests.iter().map(|(c, lo, hi)| (Cidr::try_from(c.to_string()).unwrap(), PortRange { min: *lo, max: *hi })).collect(),
            tag_mark: None,
            protected_ports: protected.iter().map(|(lo, hi)| PortRange { min: *lo, max: *hi }).collect(),
            guard_cgroup: GuardCgroup::Off,
            container_networks: vec![],
            sites: vec![],
            protected_backends: vec![],
        }
    }

    fn bit(b: &[u8], port: u16) -> bool {
        b[port as usize / 8] & (1 << (port % 8)) != 0
    }

    #[test]
    fn prefixes_with_the_same_ports_share_one_bitmap() {
        let (bitmaps, keys) = plan(&rs(&[("10.0.0.1", 80, 80), ("10.0.0.2", 80, 80), ("fd00::/64", 443, 444)], &[(9000, 9010)])).unwrap();
        assert_eq!(bitmaps.len(), 3, "protected, {{80}}, {{443, 444}}");
        assert!(bit(&bitmaps[0], 9000) && bit(&bitmaps[0], 9010) && !bit(&bitmaps[0], 9011));
        let v4: Vec<_> = keys.iter().filter(|(k, _)| k[..4] == 128u32.to_ne_bytes()).collect();
        assert_eq!(v4.len(), 2);
        assert_eq!(v4[0].1, v4[1].1);
        assert_eq!(&v4[0].0[4..16], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
        let v6 = keys.iter().find(|(k, _)| k[..4] == 64u32.to_ne_bytes()).unwrap();
        assert!(bit(&bitmaps[v6.1 as usize], 443) && bit(&bitmaps[v6.1 as usize], 444) && !bit(&bitmaps[v6.1 as usize], 80));
    }

    #[test]
    fn the_last_port_fits_the_bitmap() {
        let (bitmaps, _) = plan(&rs(&[("0.0.0.0/0", 65535, 65535)], &[(0, 0)])).unwrap();
        assert!(bit(&bitmaps[1], 65535) && bit(&bitmaps[0], 0));
    }
}
