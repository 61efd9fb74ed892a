//! Arbitrary request heads through the rule engine: it must never panic, never let a request
//! that names another host than its destination through, never leave a forged identity
//! header, and leave each header a rule for the destination sets (under any spelling a server
//! may read as that name) exactly once when that rule applied and never otherwise, whatever
//! Host or path the request names.
#![no_main]
mod common;

use idgate::http::rules::request_hosts;
use idgate::http::{Flow, RewriteError};
use idgate::spiffe::SpiffeId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|b| *b == b'\n');
    let Ok(uri) = http::Uri::try_from(lines.next().unwrap_or_default()) else { return };
    let mut builder = http::Request::builder().uri(uri);
    for line in lines {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let (Ok(name), Ok(value)) = (http::HeaderName::from_bytes(&line[..colon]), http::HeaderValue::from_bytes(&line[colon + 1..])) else {
            continue;
        };
        builder = builder.header(name, value);
    }
    let Ok(request) = builder.body(()) else { return };
    let mut parts = request.into_parts().0;
    let source = SpiffeId::parse(if data.len() % 2 == 0 { "spiffe://td/app/a" } else { "spiffe://td/app/b" }).unwrap();
    let dst = std::net::SocketAddr::from(([10, 0, 0, 1], (data.len() as u16).max(1)));
    let names = common::names();
    let (hosts, selected) = request_hosts(&parts);
    let applied = match common::now(common::rewriter().apply(&Flow { source: &source, dst, names: &names }, &mut parts, None)) {
        Err(RewriteError::Misdirected { .. }) => {
            assert!(hosts.iter().any(|h| !common::named(h)), "refused a request naming only its own destination: {hosts:?}");
            return;
        }
        Err(e) => panic!("env, JWT and spiffe_id sources cannot fail: {e}"),
        Ok(applied) => {
            assert!(hosts.iter().all(|h| common::named(h)), "a request naming another host went through: {hosts:?}");
            applied.rules
        }
    };

    // Under any spelling a CGI-style server reads as the same name (`_` for `-`).
    let spelt_as = |name: &str| parts.headers.iter().filter(|(k, _)| k.as_str().replace('_', "-") == name).count();
    assert_eq!(spelt_as("x-forwarded-client-cert"), 0, "forged identity header survived");
    // Rule 0 (source a, host *.example.com: a name of the destination) is for every request
    // here; rule 1 (ports 1-32767) for those to such a port. A header one of them sets is
    // there once if that rule applied, and gone otherwise: never the workload's.
    let host_matches = selected.map(|i| &hosts[i]).is_some_and(|h| h.len() > ".example.com".len() && h.ends_with(".example.com"));
    let a = source.as_str().ends_with("/a");
    assert_eq!(applied.contains(&0), host_matches && a, "rule 0 applied to the wrong requests");
    let jwt_for_destination = dst.port() <= 32767;
    assert_eq!(applied.contains(&1), jwt_for_destination && parts.uri.path().starts_with("/v2/"), "rule 1 applied to the wrong requests");
    for (name, rule, for_destination) in [("authorization", 0, true), ("x-caller", 0, true), ("x-jwt", 1, jwt_for_destination)] {
        if for_destination {
            assert_eq!(spelt_as(name), usize::from(applied.contains(&rule)), "{name}: a workload's copy survived, or idgate's is missing or doubled");
        }
    }
    let auth = parts.headers.get("authorization").map(|v| v.as_bytes().to_vec());
    match (host_matches, a) {
        (true, true) => assert_eq!(auth.as_deref(), Some(format!("Bearer {}", common::TOKEN).as_bytes())),
        (true, false) => assert!(auth.is_none(), "a workload without the rule kept its own authorization"),
        _ => {}
    }
});
