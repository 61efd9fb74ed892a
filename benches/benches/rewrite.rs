//! `[[http_rule]]` header rewrite of one typical request (HTTP/1.1, origin-form, Host header,
//! 10 headers) through `Rewriter::apply_planned` (the flow's plan is made once, as a flow does
//! at its first request), with one rule per case: a bearer token from the
//! environment, from a 0600 file, a JWT-SVID (cached token), and a rule that does not match.
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use idgate::config::HostPattern;
use idgate::http::jwt::JwtIssuer;
use idgate::http::{Flow, Rewriter};
use idgate::spiffe::SpiffeId;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const ENV_VAR: &str = "IDGATE_BENCH_REWRITE_TOKEN";
const SOURCE: &str = "spiffe://bench.idgate/app/alice";

/// The destination the request goes to: known as api.example.com and other.example.com.
const OUTBOUND: &str =
    "[[outbound]]\ncidrs = [\"10.77.0.2/32\"]\nports = [8080]\nprotocol = \"http\"\nhosts = [\"api.example.com\", \"other.example.com\"]\n";

fn rewriter(rule: &str) -> Rewriter {
    let text = format!("trust_domain = \"bench.idgate\"\n{OUTBOUND}{rule}");
    let config = idgate::config::parse(Path::new("bench.toml"), &text).unwrap_or_else(|e| panic!("{e}"));
    let jwt = Arc::new(JwtIssuer::new(Duration::from_secs(300), "spiffe://bench.idgate/idgate/host/b".into(), None).unwrap());
    let exchanges = idgate::http::exchange::Exchanges::new(jwt, 0, Default::default());
    Rewriter::new(config.http_rules, config.http.identity_header.0, &config.credentials, exchanges).unwrap()
}

/// A rewrite's result: these rules need no exchange, so it is ready at its first poll.
fn now<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("a rewrite without exchanges waited"),
    }
}

fn rule(set: &str, host: &str) -> String {
    format!("[[http_rule]]\nsource = \"{SOURCE}\"\nhost = \"{host}\"\nports = [8080]\nset = {{ authorization = \"{set}\" }}\n")
}

/// GET in origin-form with 10 headers, as a browser-ish or SDK client would send it.
fn request() -> http::request::Parts {
    let headers = [
        ("host", "api.example.com:8080"),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"),
        ("accept", "application/json, text/plain, */*"),
        ("accept-encoding", "gzip, deflate, br"),
        ("accept-language", "en-US,en;q=0.9"),
        ("connection", "keep-alive"),
        ("cache-control", "no-cache"),
        ("cookie", "session=3f6c2a9e0b7d4c1e8a5f; theme=dark"),
        ("x-request-id", "6f1c8e2a-4b7d-4e0a-9c3f-2d5b8a1e7f60"),
        ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    ];
    let mut b = http::Request::builder().method("GET").uri("/api/v1/orders?id=42&expand=items").version(http::Version::HTTP_11);
    for (k, v) in headers {
        b = b.header(k, v);
    }
    b.body(()).unwrap().into_parts().0
}

fn bench(c: &mut Criterion) {
    std::env::set_var(ENV_VAR, "env-token-0123456789abcdef0123456789abcdef");
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    let mut f = std::fs::File::create(&token).unwrap();
    f.write_all(b"file-token-0123456789abcdef0123456789abcdef\n").unwrap();
    drop(f);
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();

    let source = SpiffeId::parse(SOURCE).unwrap();
    let names: Vec<HostPattern> = ["api.example.com", "other.example.com"].iter().map(|h| HostPattern::try_from(h.to_string()).unwrap()).collect();
    let flow = Flow { source: &source, dst: SocketAddr::from(([10, 77, 0, 2], 8080)), names: &names };
    let template = request();
    let cases = [
        ("env_bearer", rule(&format!("Bearer ${{env:{ENV_VAR}}}"), "api.example.com"), 1),
        ("file_bearer", rule(&format!("Bearer ${{file:{}}}", token.display()), "api.example.com"), 1),
        ("jwt_svid_cached", rule("Bearer ${jwt_svid:billing}", "api.example.com"), 1),
        ("no_matching_rule", rule(&format!("Bearer ${{env:{ENV_VAR}}}"), "other.example.com"), 0),
    ];
    let mut g = c.benchmark_group("rewrite");
    for (name, rule, applied) in cases {
        let r = rewriter(&rule);
        let plan = r.plan(&flow);
        // Checks the case does what it says, and fills the file and JWT caches.
        let mut parts = template.clone();
        assert_eq!(now(r.apply(&flow, &mut parts, None)).unwrap().rules.len(), applied, "{name}");
        assert_eq!(parts.headers.contains_key("authorization"), applied == 1, "{name}");
        g.bench_function(name, |b| {
            b.iter_batched(
                || template.clone(),
                |mut parts| {
                    now(r.apply_planned(&plan, &flow, &mut parts, None)).unwrap();
                    parts // dropped outside the timed section
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
