//! Config of the HTTP-aware path: per-destination protocol, TLS origination, the inbound
//! identity header, and `[[http_rule]]` header rewrites whose values come from templates.
use super::{AllowPattern, HumanDuration, PortRange};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// How idgate treats the bytes of a flow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Opaque bytes (the default).
    #[default]
    Tcp,
    /// HTTP/1.1 or HTTP/2 with prior knowledge: requests are parsed and rewritten.
    Http,
}

/// Originate TLS to the original destination instead of tunnelling to a peer idgate: the
/// workload speaks plain HTTP, idgate encrypts (needs `protocol = "http"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsOrigin {
    /// SNI and the name the server certificate must carry.
    pub server_name: ServerNameValue,
    /// Port on the original destination address that speaks TLS.
    #[serde(default = "default_tls_port")]
    pub port: u16,
    /// PEM CA certificates to verify the server with; default: the system's roots.
    pub ca_bundle: Option<PathBuf>,
    /// Key exchange groups offered, most preferred first: the hybrid post-quantum
    /// X25519MLKEM768, then X25519 and secp256r1 for servers that do not have it yet. Leave
    /// out the others to refuse servers without post-quantum key exchange.
    #[serde(default = "default_origin_key_exchange")]
    pub key_exchange: super::KeyExchangeList,
}

fn default_origin_key_exchange() -> super::KeyExchangeList {
    use super::KeyExchange::*;
    super::KeyExchangeList::try_from(vec![X25519Mlkem768, X25519, Secp256r1]).expect("a valid list")
}

fn default_tls_port() -> u16 {
    443
}

/// A DNS name, or an IP address, as the server's certificate names it.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct ServerNameValue(pub rustls::pki_types::ServerName<'static>);

impl TryFrom<String> for ServerNameValue {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        rustls::pki_types::ServerName::try_from(s.clone()).map(ServerNameValue).map_err(|_| format!("`{s}` is not a valid TLS server name"))
    }
}

/// How the identity header names the caller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentityFormat {
    /// Envoy's `x-forwarded-client-cert`: `By=<this host's id>;Hash=<cert sha256>;URI=<caller id>`.
    #[default]
    Xfcc,
    /// Just the caller's SPIFFE ID.
    Uri,
}

/// The HTTP-aware path (`protocol = "http"`): the identity header inbound, JWT-SVIDs outbound.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Set on inbound HTTP requests to the verified caller's identity; any copy that arrives
    /// from a workload or the network is removed first.
    pub identity_header: HeaderKey,
    pub identity_format: IdentityFormat,
    /// Lifetime of JWT-SVIDs minted for `${jwt_svid:...}` (at least 10s); re-minted at half
    /// life.
    pub jwt_ttl: HumanDuration,
    /// `iss` of JWT-SVIDs: how verifiers find the JWKS that verifies them (each host signs with
    /// its own key). Default: this host's SPIFFE ID. For cloud providers and authorization
    /// servers, the `https://` URL where the fleet's discovery document and JWKS are published
    /// (`idgate ca jwks`).
    pub jwt_issuer: Option<String>,
    /// The host's JWT signing key (PKCS#8 PEM, mode 0600), as `idgate ca issue` writes it
    /// (`jwt-key.pem`), so that the fleet's published JWKS holds it. Default: a new key in
    /// memory at every start, published only at the admin listener.
    pub jwt_key: Option<PathBuf>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            identity_header: HeaderKey(http::HeaderName::from_static("x-forwarded-client-cert")),
            identity_format: IdentityFormat::Xfcc,
            jwt_ttl: HumanDuration(Duration::from_secs(300)),
            jwt_issuer: None,
            jwt_key: None,
        }
    }
}

/// One header rewrite rule on the HTTP-aware path. Every rule whose selectors all match
/// applies, in file order. Every header a rule for a destination sets is stripped from all
/// workloads' requests there, so a workload without the rule cannot pose as one with it; a
/// value that cannot be rendered (missing file, loose mode) answers the request 503: it never
/// leaves without its credential.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRule {
    /// How the attribution trail names the rule when it applies (default `http_rule[N]`).
    pub name: Option<String>,
    /// Source workload: an exact SPIFFE ID or a prefix ending in `/*`; absent = any.
    pub source: Option<AllowPattern>,
    /// Host header / :authority without port: exact, or `*.example.com`. It must be a name of
    /// an HTTP-aware destination (its `hosts`, or its `tls.server_name`): the rule then applies
    /// only on flows to that destination, whatever Host header a workload writes elsewhere.
    pub host: Option<HostPattern>,
    /// Original destination addresses.
    #[serde(default)]
    pub cidrs: Vec<super::Cidr>,
    /// Original destination ports.
    #[serde(default)]
    pub ports: Vec<PortRange>,
    /// Requests whose path starts with this.
    pub path_prefix: Option<PathPrefix>,
    /// Replace the header (workload copies are removed first).
    #[serde(default)]
    pub set: BTreeMap<HeaderKey, Template>,
    /// Add a value after any existing ones.
    #[serde(default)]
    pub append: BTreeMap<HeaderKey, Template>,
    /// Headers removed from the request.
    #[serde(default)]
    pub remove: Vec<HeaderKey>,
    /// Sign the request for AWS (SigV4) with a `[[credential]]`'s role, after the headers above.
    pub aws_sigv4: Option<super::AwsSigV4>,
}

/// An HTTP header name (any case; idgate writes it lower-case). Headers that frame the message
/// (`host`, `connection`, `transfer-encoding`, `content-length`, `upgrade`, `te`) cannot be
/// rewritten.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct HeaderKey(pub http::HeaderName);

impl Ord for HeaderKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.as_str().cmp(other.0.as_str())
    }
}

impl PartialOrd for HeaderKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl TryFrom<String> for HeaderKey {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let name = http::HeaderName::from_bytes(s.as_bytes()).map_err(|_| format!("`{s}` is not a valid header name"))?;
        if matches!(name.as_str(), "host" | "connection" | "transfer-encoding" | "content-length" | "upgrade" | "te") {
            return Err(format!("header `{s}` controls message framing and cannot be rewritten"));
        }
        Ok(HeaderKey(name))
    }
}

/// A host name, any case, without a port.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub enum HostPattern {
    /// An exact name or address: `api.example.com`.
    Exact(String),
    /// `*.example.com`: every name below `example.com`, not `example.com` itself.
    // Kept as `.example.com`.
    Suffix(String),
}

impl TryFrom<String> for HostPattern {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let lower = s.to_ascii_lowercase();
        let valid = |h: &str| !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
        match lower.strip_prefix("*.") {
            Some(rest) if valid(rest) => Ok(HostPattern::Suffix(format!(".{rest}"))),
            None if valid(&lower) => Ok(HostPattern::Exact(lower)),
            _ => Err(format!("invalid host `{s}` (expected e.g. api.example.com or *.example.com)")),
        }
    }
}

impl HostPattern {
    /// As written in the config.
    pub fn text(&self) -> String {
        match self {
            HostPattern::Exact(h) => h.clone(),
            HostPattern::Suffix(s) => format!("*{s}"),
        }
    }

    /// Whether some host both patterns match (a rule's `host` against a destination's names).
    pub fn overlaps(&self, other: &HostPattern) -> bool {
        match (self, other) {
            (HostPattern::Exact(a), b) | (b, HostPattern::Exact(a)) => b.matches(a),
            (HostPattern::Suffix(a), HostPattern::Suffix(b)) => a.ends_with(b.as_str()) || b.ends_with(a.as_str()),
        }
    }

    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => h.eq_ignore_ascii_case(host),
            HostPattern::Suffix(s) => {
                host.len() > s.len() && host.is_char_boundary(host.len() - s.len()) && host[host.len() - s.len()..].eq_ignore_ascii_case(s)
            }
        }
    }
}

/// The start of a request path, beginning with `/`: `/v1/`.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct PathPrefix(pub String);

impl TryFrom<String> for PathPrefix {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.starts_with('/') {
            Ok(PathPrefix(s))
        } else {
            Err(format!("path_prefix `{s}` must start with '/'"))
        }
    }
}

/// A header value built from literal text and `${source}` parts: `${file:/abs/path}` (the
/// file's content without its trailing newline; mode 0600, owned by root or idgate's user;
/// re-read when it changes), `${env:NAME}` (idgate's own environment, such as a systemd EnvironmentFile; read at
/// start), `${jwt_svid:AUDIENCE}` (an ES256 JWT-SVID for the caller; the keys at the admin
/// listener's `/jwks.json`), `${credential:NAME}` (an access token a `[[credential]]` source
/// exchanged the caller's JWT-SVID for), `${spiffe_id}` (the caller's SPIFFE ID); `$$` is a
/// literal `$`.
/// Secrets never sit in the config itself.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Template {
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Literal(String),
    /// `${file:/abs/path}`: file content without the trailing newline; re-read when it changes.
    File(PathBuf),
    /// `${env:NAME}`: read once at start.
    Env(String),
    /// `${jwt_svid:AUDIENCE}`: an ES256 JWT-SVID for the source identity.
    JwtSvid(String),
    /// `${spiffe_id}`: the source workload's SPIFFE ID.
    SpiffeId,
    /// `${credential:NAME}`: the access token a `[[credential]]` source exchanged the source
    /// identity's JWT-SVID for.
    Credential(super::CredentialName),
}

impl TryFrom<String> for Template {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Template::parse(&s)
    }
}

impl Template {
    pub fn parse(s: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = s;
        while let Some(at) = rest.find('$') {
            literal.push_str(&rest[..at]);
            rest = &rest[at..];
            if let Some(after) = rest.strip_prefix("$$") {
                literal.push('$');
                rest = after;
                continue;
            }
            let Some(body) = rest.strip_prefix("${") else {
                return Err(format!("`$` must start `${{source}}` or be written `$$` in `{s}`"));
            };
            let end = body.find('}').ok_or_else(|| format!("unclosed `${{` in `{s}`"))?;
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(Self::source(&body[..end])?);
            rest = &body[end + 1..];
        }
        literal.push_str(rest);
        if literal.chars().any(|c| !(c == '\t' || (' '..='~').contains(&c))) {
            return Err("header values may contain only visible ASCII, spaces and tabs".into());
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        if parts.is_empty() {
            return Err("empty header value".into());
        }
        Ok(Template { parts })
    }

    fn source(spec: &str) -> Result<Part, String> {
        let (kind, arg) = spec.split_once(':').unwrap_or((spec, ""));
        match kind {
            "spiffe_id" if arg.is_empty() => Ok(Part::SpiffeId),
            "file" if arg.starts_with('/') => Ok(Part::File(PathBuf::from(arg))),
            "file" => Err(format!("`${{file:{arg}}}` needs an absolute path")),
            "env"
                if !arg.is_empty()
                    && arg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !arg.starts_with(|c: char| c.is_ascii_digit()) =>
            {
                Ok(Part::Env(arg.to_string()))
            }
            "env" => Err(format!("`${{env:{arg}}}` needs a variable name")),
            "jwt_svid" if !arg.is_empty() && arg.chars().all(|c| (' '..='~').contains(&c) && c != '"' && c != '\\') => {
                Ok(Part::JwtSvid(arg.to_string()))
            }
            "jwt_svid" => Err("`${jwt_svid:AUDIENCE}` needs an audience".into()),
            "credential" => super::CredentialName::try_from(arg.to_string()).map(Part::Credential),
            _ => Err(format!("unknown value source `${{{spec}}}` (expected file:, env:, jwt_svid:, credential: or spiffe_id)")),
        }
    }
}
