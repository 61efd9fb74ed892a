use super::*;

fn err(text: &str) -> String {
    parse(Path::new("/etc/idgate/idgate.toml"), text).unwrap_err().to_string()
}

#[test]
fn minimal_config_has_defaults() {
    let c = parse(Path::new("x.toml"), "trust_domain = \"example.org\"\n").unwrap();
    assert_eq!(c.listen.inbound.port(), 15008);
    assert_eq!(c.svid.ttl.0.as_secs(), 3600);
    assert_eq!(c.default_action, crate::config::DefaultAction::Deny);
}

#[test]
fn bad_cidr_names_file_line_and_value() {
    let e = err("trust_domain = \"example.org\"\n\n[[outbound]]\ncidrs = [\"10.0.0.300/24\"]\nports = [80]\n");
    assert!(e.starts_with("/etc/idgate/idgate.toml:4:"), "{e}");
    assert!(e.contains("10.0.0.300/24"), "{e}");
    assert!(e.contains("field `cidrs`"), "{e}");
}

#[test]
fn unknown_field_is_an_error() {
    let e = err("trust_domain = \"example.org\"\ntrust_domian = \"x\"\n");
    assert!(e.starts_with("/etc/idgate/idgate.toml:2:"), "{e}");
    assert!(e.contains("trust_domian"), "{e}");
}

#[test]
fn workload_outside_trust_domain_points_at_its_line() {
    let e = err("trust_domain = \"example.org\"\n[[workload]]\nuid = 5\nspiffe_id = \"spiffe://other.org/x\"\n");
    assert!(e.starts_with("/etc/idgate/idgate.toml:4:"), "{e}");
}

#[test]
fn port_ranges_and_durations() {
    let c = parse(
        Path::new("x.toml"),
        "trust_domain = \"t\"\n[svid]\nttl = \"5s\"\n[[outbound]]\ncidrs = [\"10.1.0.0/16\"]\nports = [80, \"8000-8100\"]\n",
    )
    .unwrap();
    assert_eq!(c.svid.ttl.0.as_secs(), 5);
    assert!(c.outbound[0].ports[1].contains(8050));
    assert!(err("trust_domain = \"t\"\n[svid]\nttl = \"5 parsecs\"\n").contains(":3:"));
    assert!(err("trust_domain = \"t\"\n[[inbound]]\nports = [\"90-80\"]\nallow = []\n").contains("empty"));
}

#[test]
fn tunnel_defaults_notice_a_dead_peer_within_15s() {
    let c = parse(Path::new("t.toml"), "trust_domain = \"t\"\n").unwrap();
    assert!(c.tunnel.peer_timeout.0 <= std::time::Duration::from_secs(15));
    assert!(c.tunnel.ping_interval() < c.tunnel.peer_timeout.0);
    assert!(c.tunnel.dial_timeout.0 <= std::time::Duration::from_secs(5));
    assert!(c.tunnel.handshake_timeout.0 <= std::time::Duration::from_secs(10));
}

#[test]
fn cross_field_errors_point_at_the_entry_not_at_a_comment_naming_it() {
    // The shipped config's comments name `[[inbound]]`, `tag_mark` and `peer_timeout` before
    // the real entries; a text search found those comments first.
    let text = "# Each [[inbound]] names ports.\n# [tunnel]\n# peer_timeout = \"15s\"\n# tag_mark = 0x1\ntrust_domain = \"t\"\n\n\
                [tunnel]\npeer_timeout = \"500ms\"\n\n[intercept]\ntag_mark = 0\n\n[[inbound]]\nports = [80]\nallow = []\n\n[[inbound]]\nports = []\nallow = []\n";
    let e = err(text);
    for (line, what) in [(8, "tunnel.peer_timeout"), (11, "intercept.tag_mark"), (17, "inbound[1].ports")] {
        assert!(e.lines().any(|l| l.starts_with(&format!("/etc/idgate/idgate.toml:{line}:")) && l.contains(what)), "{what} not at line {line}:\n{e}");
    }
}
