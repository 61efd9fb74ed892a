use super::*;

fn rule(cidrs: &[&str], ports: &str) -> OutboundRule {
    let cidrs: Vec<String> = cidrs.iter().map(|c| format!("\"{c}\"")).collect();
    toml::from_str(&format!("cidrs = [{}]\nports = [{ports}]", cidrs.join(", "))).expect("rule parses")
}

/// What the index must answer: the first rule, in file order, covering the destination.
fn scan(rules: &[OutboundRule], ip: IpAddr, port: u16) -> Option<usize> {
    rules.iter().position(|r| r.cidrs.iter().any(|c| c.contains(&ip)) && r.ports.iter().any(|p| p.contains(port)))
}

fn find(index: &RouteIndex, dst: &str) -> Option<usize> {
    let dst: std::net::SocketAddr = dst.parse().unwrap();
    index.find(dst.ip(), dst.port())
}

#[test]
fn the_first_rule_in_file_order_wins_whatever_its_prefix() {
    let rules = [rule(&["10.0.0.0/8"], "80"), rule(&["10.1.2.3/32"], "\"1-65535\""), rule(&["10.1.0.0/16"], "80, 443")];
    let index = RouteIndex::new(&rules);
    assert_eq!(find(&index, "10.1.2.3:80"), Some(0), "a wider rule listed first wins");
    assert_eq!(find(&index, "10.1.2.3:443"), Some(1));
    assert_eq!(find(&index, "10.1.9.9:443"), Some(2));
    assert_eq!(find(&index, "10.2.0.1:443"), None);
    assert_eq!(find(&index, "11.0.0.1:80"), None);
}

#[test]
fn overlapping_port_ranges_of_one_network_keep_file_order() {
    let rules = [rule(&["fd00::/64"], "\"8000-8100\""), rule(&["fd00::/64"], "\"7000-9000\""), rule(&["fd00::/64"], "8050")];
    let index = RouteIndex::new(&rules);
    assert_eq!(find(&index, "[fd00::1]:7000"), Some(1));
    assert_eq!(find(&index, "[fd00::1]:7999"), Some(1));
    assert_eq!(find(&index, "[fd00::1]:8000"), Some(0));
    assert_eq!(find(&index, "[fd00::1]:8050"), Some(0));
    assert_eq!(find(&index, "[fd00::1]:8100"), Some(0));
    assert_eq!(find(&index, "[fd00::1]:8101"), Some(1));
    assert_eq!(find(&index, "[fd00::1]:9000"), Some(1));
    assert_eq!(find(&index, "[fd00::1]:9001"), None);
    assert_eq!(find(&index, "[fd00:0:0:1::1]:8000"), None);
}

#[test]
fn families_do_not_cross_and_zero_length_prefixes_hold_everything() {
    let rules = [rule(&["0.0.0.0/0"], "443"), rule(&["::/0"], "\"1-65535\"")];
    let index = RouteIndex::new(&rules);
    assert_eq!(find(&index, "192.0.2.1:443"), Some(0));
    assert_eq!(find(&index, "192.0.2.1:80"), None, "an IPv6 rule says nothing of IPv4");
    assert_eq!(find(&index, "[2001:db8::1]:443"), Some(1));
    assert_eq!(find(&index, "[::ffff:192.0.2.1]:443"), Some(1), "a v4-mapped address is IPv6 here, as in a scan");
    assert_eq!(find(&index, "[2001:db8::1]:65535"), Some(1));
}

#[test]
fn agrees_with_a_scan_of_random_rules() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut rules = Vec::new();
    for _ in 0..400 {
        let v6 = rnd() % 2 == 0;
        let cidr = if v6 {
            let len = [16u8, 32, 48, 64, 96, 120, 128][(rnd() % 7) as usize];
            let addr = 0xfd00u128 << 112 | (rnd() as u128 % 8) << 64 | (rnd() as u128 % 8);
            ipnet::Ipv6Net::new(addr.into(), len).unwrap().trunc().to_string()
        } else {
            let len = [8u8, 16, 20, 24, 28, 30, 32][(rnd() % 7) as usize];
            let addr = 10u32 << 24 | (rnd() as u32 % 4) << 16 | (rnd() as u32 % 4) << 8 | (rnd() as u32 % 8);
            ipnet::Ipv4Net::new(addr.into(), len).unwrap().trunc().to_string()
        };
        let lo = 1000 + (rnd() % 200) as u16;
        let hi = lo + (rnd() % 30) as u16;
        let ports = if rnd() % 3 == 0 { format!("{lo}") } else { format!("\"{lo}-{hi}\", {}", hi + 50) };
        rules.push(rule(&[&cidr], &ports));
    }
    let index = RouteIndex::new(&rules);
    assert!(index.lengths() >= 10, "the rules use many prefix lengths");
    let (mut hits, mut misses) = (0, 0);
    for _ in 0..20_000 {
        let ip: IpAddr = if rnd() % 2 == 0 {
            std::net::Ipv6Addr::from(0xfd00u128 << 112 | (rnd() as u128 % 8) << 64 | (rnd() as u128 % 8)).into()
        } else {
            std::net::Ipv4Addr::from(10u32 << 24 | (rnd() as u32 % 4) << 16 | (rnd() as u32 % 4) << 8 | (rnd() as u32 % 8)).into()
        };
        let port = 990 + (rnd() % 300) as u16;
        let want = scan(&rules, ip, port);
        assert_eq!(index.find(ip, port), want, "{ip} port {port}");
        if want.is_some() {
            hits += 1
        } else {
            misses += 1
        }
    }
    assert!(hits > 2_000 && misses > 2_000, "the probes hit and miss ({hits} / {misses})");
}
