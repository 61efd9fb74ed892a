// Shared by the fuzz targets: one rule set that exercises every value source but files
// (which need a 0600 file on disk) and a request built from fuzz bytes.
use idgate::config::HostPattern;
use idgate::http::{JwtIssuer, Rewriter};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub const TOKEN: &str = "fuzz-token-value";

const CONFIG: &str = r#"trust_domain = "td"
[[outbound]]
cidrs = ["10.0.0.1/32"]
ports = ["1-65535"]
protocol = "http"
hosts = ["*.example.com"]

[[http_rule]]
source = "spiffe://td/app/a"
host = "*.example.com"
set = { authorization = "Bearer ${env:IDGATE_FUZZ_TOKEN}", x-caller = "${spiffe_id}" }
append = { via = "idgate" }
remove = ["cookie"]

[[http_rule]]
path_prefix = "/v2/"
ports = ["1-32767"]
set = { x-jwt = "${jwt_svid:fuzz}" }
"#;

/// The names of CONFIG's destination, 10.0.0.1.
pub fn names() -> Vec<HostPattern> {
    vec![HostPattern::Suffix(".example.com".into())]
}

/// Whether `host` (lower case, no port) is a name of that destination.
#[allow(dead_code)] // one target uses it
pub fn named(host: &str) -> bool {
    host == "10.0.0.1" || (host.len() > ".example.com".len() && host.ends_with(".example.com"))
}

pub fn rewriter() -> &'static Rewriter {
    static R: OnceLock<Rewriter> = OnceLock::new();
    R.get_or_init(|| {
        std::env::set_var("IDGATE_FUZZ_TOKEN", TOKEN);
        let config = idgate::config::parse(std::path::Path::new("fuzz.toml"), CONFIG).expect("fuzz config parses");
        let jwt = Arc::new(JwtIssuer::new(Duration::from_secs(60), "spiffe://td/idgate/host/fuzz".into(), None).expect("jwt key"));
        let exchanges = idgate::http::exchange::Exchanges::new(jwt, 0, Default::default());
        Rewriter::new(config.http_rules, config.http.identity_header.0, &config.credentials, exchanges).expect("rewriter")
    })
}

/// A rewrite's result: these rules need no exchange, so it is ready at its first poll.
#[allow(dead_code)] // one target uses it
pub fn now<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("a rewrite without exchanges waited"),
    }
}
