use super::*;
use std::path::Path;
use std::time::Duration;

fn rewriter(rules: &str) -> Rewriter {
    std::env::set_var("IDGATE_RULES_TEST_TOKEN", "env-secret-value");
    let text = format!("trust_domain = \"td\"\n{rules}");
    let config = crate::config::parse(Path::new("test.toml"), &text).unwrap_or_else(|e| panic!("{e}"));
    Rewriter::new(config.http_rules, config.http.identity_header.0, &config.credentials, exchanges()).unwrap()
}

fn exchanges() -> Arc<Exchanges> {
    let jwt = Arc::new(JwtIssuer::new(Duration::from_secs(60), "spiffe://td/idgate/host/t".into(), None).unwrap());
    Exchanges::new(jwt, 0, Default::default())
}

/// Runs a rewrite to its end (the rules of these tests need no exchange, so it never waits).
fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

fn request(lines: &[(&str, &str)], uri: &str) -> Parts {
    let mut b = http::Request::builder().uri(uri);
    for (k, v) in lines {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}

/// The names of RULES' first destination (10.0.0.2).
fn names() -> Vec<HostPattern> {
    ["api.example.com", "other.example.com"].iter().map(|h| HostPattern::try_from(h.to_string()).unwrap()).collect()
}

fn values(parts: &Parts, name: &str) -> Vec<String> {
    parts.headers.get_all(name).iter().map(|v| v.to_str().unwrap().to_string()).collect()
}

const RULES: &str = r#"
[[outbound]]
cidrs = ["10.0.0.2/32"]
ports = [80, 8080, 9090]
protocol = "http"
hosts = ["api.example.com", "other.example.com"]

[[outbound]]
cidrs = ["10.0.0.3/32"]
ports = [80]
protocol = "http"

[[http_rule]]
source = "spiffe://td/app/alice"
host = "api.example.com"
set = { authorization = "Bearer ${env:IDGATE_RULES_TEST_TOKEN}", x-caller = "${spiffe_id}" }
append = { via = "idgate" }
remove = ["cookie"]

[[http_rule]]
source = "spiffe://td/app/*"
path_prefix = "/v2/"
ports = [8080]
set = { x-tier = "v2" }
"#;

#[test]
fn set_replaces_forged_values_and_other_sources_get_them_stripped() {
    let r = rewriter(RULES);
    let alice = SpiffeId::parse("spiffe://td/app/alice").unwrap();
    let bob = SpiffeId::parse("spiffe://td/app/bob").unwrap();
    let dst: SocketAddr = "10.0.0.2:80".parse().unwrap();
    let forged = [
        ("host", "API.example.com:80"),
        ("authorization", "Bearer forged"),
        ("authorization", "Bearer forged2"),
        ("x-forwarded-client-cert", "URI=spiffe://td/admin"),
        ("cookie", "a=b"),
        ("via", "1.1 lb"),
    ];

    let names = names();
    let mut parts = request(&forged, "/v1/x");
    assert_eq!(block(r.apply(&Flow { source: &alice, dst, names: &names }, &mut parts, None)).unwrap().rules.len(), 1);
    assert_eq!(values(&parts, "authorization"), ["Bearer env-secret-value"]);
    assert!(parts.headers.get("authorization").unwrap().is_sensitive());
    assert_eq!(values(&parts, "x-caller"), ["spiffe://td/app/alice"]);
    assert_eq!(values(&parts, "via"), ["1.1 lb", "idgate"]);
    assert!(values(&parts, "cookie").is_empty());
    assert!(values(&parts, "x-forwarded-client-cert").is_empty());

    // Bob gets no credential, and cannot smuggle one that would look injected.
    let mut parts = request(&forged, "/v1/x");
    assert_eq!(block(r.apply(&Flow { source: &bob, dst, names: &names }, &mut parts, None)).unwrap().rules.len(), 0);
    assert!(values(&parts, "authorization").is_empty());
    assert_eq!(values(&parts, "cookie"), ["a=b"]);
}

#[test]
fn host_path_and_port_select_rules() {
    let r = rewriter(RULES);
    let bob = SpiffeId::parse("spiffe://td/app/bob").unwrap();
    let names = names();
    let on = |uri: &str, port: u16| {
        let mut parts = request(&[("host", "other.example.com")], uri);
        let dst = SocketAddr::from(([10, 0, 0, 2], port));
        let n = block(r.apply(&Flow { source: &bob, dst, names: &names }, &mut parts, None)).unwrap().rules.len();
        (n, values(&parts, "x-tier"))
    };
    assert_eq!(on("/v2/items", 8080), (1, vec!["v2".to_string()]));
    assert_eq!(on("/v1/items", 8080), (0, vec![]));
    assert_eq!(on("/v2/items", 9090), (0, vec![]));
    // HTTP/2 requests carry the host in the URI.
    let alice = SpiffeId::parse("spiffe://td/app/alice").unwrap();
    let mut parts = request(&[], "http://api.example.com/v1/x");
    assert_eq!(
        block(r.apply(&Flow { source: &alice, dst: "10.0.0.2:80".parse().unwrap(), names: &names }, &mut parts, None)).unwrap().rules.len(),
        1
    );
}

#[test]
fn a_host_the_flow_is_not_going_to_gets_nothing_and_is_refused() {
    let r = rewriter(RULES);
    let alice = SpiffeId::parse("spiffe://td/app/alice").unwrap();
    // 10.0.0.3 is another HTTP-aware destination, with no names: the workload claims the API's.
    let other: SocketAddr = "10.0.0.3:80".parse().unwrap();
    for (headers, uri) in [
        (vec![("host", "api.example.com")], "/v1/x"),
        (vec![], "http://api.example.com/v1/x"),
        // Request target and Host header may disagree in HTTP/1.1: both must be the destination's.
        (vec![("host", "10.0.0.3")], "http://api.example.com/v1/x"),
        (vec![("host", "api.example.com")], "http://10.0.0.3/v1/x"),
        (vec![("host", "10.0.0.3"), ("host", "api.example.com")], "/v1/x"),
        (vec![("host", "bad host")], "/v1/x"),
    ] {
        let mut parts = request(&headers, uri);
        match block(r.apply(&Flow { source: &alice, dst: other, names: &[] }, &mut parts, None)) {
            Err(RewriteError::Misdirected { dst, .. }) => assert_eq!(dst, other),
            x => panic!("{headers:?} {uri}: {x:?}"),
        }
        assert!(values(&parts, "authorization").is_empty(), "{headers:?} {uri}");
    }
    // Its own address is always a name of a destination; no rule applies there.
    let mut parts = request(&[("host", "10.0.0.3:80")], "/v1/x");
    assert_eq!(block(r.apply(&Flow { source: &alice, dst: other, names: &[] }, &mut parts, None)).unwrap().rules.len(), 0);
    let v6: SocketAddr = "[fd00::3]:80".parse().unwrap();
    let mut parts = request(&[("host", "[fd00::3]:80")], "/v1/x");
    assert_eq!(block(r.apply(&Flow { source: &alice, dst: v6, names: &[] }, &mut parts, None)).unwrap().rules.len(), 0);
}

#[test]
fn a_rule_host_must_name_an_http_destination() {
    let text = "trust_domain = \"td\"\n[[outbound]]\ncidrs = [\"10.0.0.2/32\"]\nports = [80]\nprotocol = \"http\"\n\n[[http_rule]]\nhost = \"api.example.com\"\nset = { x = \"y\" }\n";
    let e = crate::config::parse(Path::new("t.toml"), text).err().unwrap().to_string();
    assert!(e.starts_with("t.toml:7:") && e.contains("names no protocol = \"http\" [[outbound]] destination"), "{e}");
    for ok in ["hosts = [\"*.example.com\"]", "tls = { server_name = \"api.example.com\" }"] {
        let text = text.replace("protocol = \"http\"\n", &format!("protocol = \"http\"\n{ok}\n"));
        crate::config::parse(Path::new("t.toml"), &text).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    // An address is a name of the destinations whose cidrs hold it.
    crate::config::parse(Path::new("t.toml"), &text.replace("api.example.com", "10.0.0.2")).unwrap();
    assert!(crate::config::parse(Path::new("t.toml"), &text.replace("api.example.com", "10.0.0.9")).is_err());
}

#[test]
fn missing_secret_file_fails_at_start_without_leaking() {
    let text = "trust_domain = \"td\"\n[[http_rule]]\nset = { authorization = \"Bearer ${file:/nonexistent/idgate-token}\" }\n";
    let config = crate::config::parse(Path::new("t.toml"), text).unwrap();
    let e = Rewriter::new(config.http_rules, config.http.identity_header.0, &config.credentials, exchanges()).err().unwrap().to_string();
    assert!(e.contains("http_rule[0] header `authorization`") && e.contains("/nonexistent/idgate-token"), "{e}");
}

#[test]
fn bad_templates_are_config_errors_with_a_position() {
    for (value, want) in [
        ("Bearer ${file:relative}", "absolute path"),
        ("Bearer ${vault:x}", "unknown value source"),
        ("Bearer ${env:X", "unclosed"),
        ("cost $5", "`$$`"),
    ] {
        let text = format!("trust_domain = \"td\"\n[[http_rule]]\nset = {{ authorization = \"{value}\" }}\n");
        let e = crate::config::parse(Path::new("t.toml"), &text).err().unwrap().to_string();
        assert!(e.starts_with("t.toml:3:") && e.contains(want), "{value}: {e}");
    }
    let text = "trust_domain = \"td\"\n[[http_rule]]\nset = { x-forwarded-client-cert = \"x\" }\n";
    let e = crate::config::parse(Path::new("t.toml"), text).err().unwrap().to_string();
    assert!(e.contains("identity header"), "{e}");
}

/// Requests that dodge a rule's `host` or `path_prefix`, and so are not selected by it, still
/// lose every header a rule for their destination (by cidrs and ports) sets: otherwise a
/// workload forges them by writing another Host or path than the rule's.
#[test]
fn headers_rules_for_the_destination_set_are_stripped_whatever_the_host_or_path() {
    let r = rewriter(RULES);
    let names = names();
    let forged = [
        ("authorization", "Bearer forged"),
        ("x-caller", "spiffe://td/admin"),
        ("x_caller", "spiffe://td/admin"),
        ("x-tier", "forged"),
        ("X_Tier", "forged"),
    ];
    let dodges: &[(&str, Option<&str>, &str)] = &[
        ("HTTP/1.0 with no Host", None, "/v2/x"),
        ("an alias from the destination's hosts", Some("other.example.com"), "/v2/x"),
        ("the address as Host", Some("10.0.0.2"), "/v2/x"),
        ("the address and port as Host", Some("10.0.0.2:8080"), "/v2/x"),
        ("a doubled slash", Some("api.example.com"), "//v2/x"),
        ("another case", Some("api.example.com"), "/V2/x"),
        ("h2c with an alias as :authority", None, "http://other.example.com/v2/x"),
    ];
    let dst: SocketAddr = "10.0.0.2:8080".parse().unwrap();
    let folded = |parts: &Parts, name: &str| parts.headers.keys().filter(|k| k.as_str().replace('_', "-") == name).count();
    for source in ["spiffe://td/app/alice", "spiffe://td/app/bob", "spiffe://td/other/mallory"] {
        let source = SpiffeId::parse(source).unwrap();
        for (dodge, host, uri) in dodges {
            let mut headers = forged.to_vec();
            headers.extend(host.map(|h| ("host", h)));
            let mut parts = request(&headers, uri);
            let applied =
                block(r.apply(&Flow { source: &source, dst, names: &names }, &mut parts, None)).unwrap_or_else(|e| panic!("{dodge}: {e}")).rules;
            // Rule 0 (alice, host api.example.com) sets authorization and x-caller; rule 1 (any
            // app, /v2/ on 8080) sets x-tier. What a rule that applied set is idgate's value.
            for (name, rule) in [("authorization", 0), ("x-caller", 0), ("x-tier", 1)] {
                let set = usize::from(applied.contains(&rule));
                assert_eq!(folded(&parts, name), set, "{source} {dodge}: {name}: {:?}", parts.headers);
                assert!(parts.headers.get_all(name).iter().all(|v| !v.as_bytes().ends_with(b"forged") && v.as_bytes() != b"spiffe://td/admin"));
            }
        }
    }
    // Only what a rule for the destination sets is protected: x-tier is set on port 8080 alone,
    // so on port 9090 a workload's own x-tier is its business.
    let bob = SpiffeId::parse("spiffe://td/app/bob").unwrap();
    let mut parts = request(&[("host", "api.example.com"), ("x-tier", "mine")], "/v2/x");
    block(r.apply(&Flow { source: &bob, dst: "10.0.0.2:9090".parse().unwrap(), names: &names }, &mut parts, None)).unwrap();
    assert_eq!(values(&parts, "x-tier"), ["mine"]);
    // A destination no rule can apply to keeps the workload's headers (10.0.0.3 has no names,
    // and the only rule with no host there is for port 8080).
    let mut parts = request(&[("authorization", "Bearer own"), ("x-caller", "me")], "/v2/x");
    block(r.apply(&Flow { source: &bob, dst: "10.0.0.3:80".parse().unwrap(), names: &[] }, &mut parts, None)).unwrap();
    assert_eq!((values(&parts, "authorization"), values(&parts, "x-caller")), (vec!["Bearer own".into()], vec!["me".into()]));
}
