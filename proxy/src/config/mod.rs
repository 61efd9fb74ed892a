//! Per-host configuration (`/etc/idgate/idgate.toml`). Field values are validated while they are
//! deserialized, so every error carries the file, line and column of the offending value.
pub mod deny_list;
mod http;
pub(crate) mod load;
pub mod locate;
mod values;

pub use http::{HeaderKey, HostPattern, HttpConfig, HttpRule, IdentityFormat, Part, Protocol, Template, TlsOrigin};

pub use load::{load, parse, position_of, ConfigError, ConfigErrors};
pub use values::{Cidr, Glob, HumanDuration, KeyExchange, KeyExchangeList, PortRange, Sha256Digest};

use crate::spiffe::SpiffeId;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub trust_domain: TrustDomain,
    /// Host name used in the inbound SVID; defaults to the system's host name.
    pub hostname: Option<String>,
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    #[serde(default)]
    pub mode: InboundMode,
    #[serde(default)]
    pub identity_backend: IdentityBackendChoice,
    #[serde(default)]
    pub default_action: DefaultAction,
    #[serde(default)]
    pub listen: Listen,
    #[serde(default)]
    pub intercept: Intercept,
    #[serde(default)]
    pub tunnel: TunnelConfig,
    #[serde(default)]
    pub trail: TrailConfig,
    #[serde(default)]
    pub ca: CaConfig,
    #[serde(default)]
    pub svid: SvidConfig,
    #[serde(default, rename = "workload")]
    pub workloads: Vec<WorkloadRule>,
    #[serde(default, rename = "outbound")]
    pub outbound: Vec<OutboundRule>,
    #[serde(default, rename = "inbound")]
    pub inbound: Vec<InboundRule>,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default, rename = "http_rule")]
    pub http_rules: Vec<HttpRule>,
    #[serde(default)]
    pub revocation: RevocationConfig,
}

impl Config {
    pub fn control_socket(&self) -> PathBuf {
        self.listen.control.clone().unwrap_or_else(|| self.state_dir.join("control.sock"))
    }
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/idgate")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct TrustDomain(pub String);

impl TryFrom<String> for TrustDomain {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if crate::spiffe::valid_trust_domain(&s) {
            Ok(TrustDomain(s))
        } else {
            Err(format!("invalid trust domain `{s}` (lowercase letters, digits, '.', '-', '_')"))
        }
    }
}

/// What the inbound side does with plaintext connections to protected ports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InboundMode {
    /// Protected ports accept connections only through idgate (mTLS); plaintext is dropped.
    #[default]
    Strict,
    /// Plaintext is still accepted (migration aid); mTLS flows are authorized as usual.
    Permissive,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentityBackendChoice {
    #[default]
    Auto,
    Kmod,
    Procfs,
}

/// What happens to an intercepted flow whose process matches no workload rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultAction {
    #[default]
    Deny,
    /// Forward in plaintext to the original destination (explicit opt-in only).
    Passthrough,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Listen {
    /// Port of the outbound capture listener on 127.0.0.1 and ::1.
    pub outbound_port: u16,
    pub inbound: SocketAddr,
    pub admin: SocketAddr,
    /// The control socket (Unix, mode 0600) that `idgate status` talks to; default
    /// `<state_dir>/control.sock`.
    pub control: Option<PathBuf>,
    /// Data-path threads (each with its own listeners and tunnel pool). Default: a quarter of
    /// the cores, at least one: idgate shares the host with the workloads it serves.
    pub workers: Option<std::num::NonZeroUsize>,
}

impl Default for Listen {
    fn default() -> Self {
        Listen {
            outbound_port: 15001,
            inbound: "0.0.0.0:15008".parse().unwrap(),
            admin: "127.0.0.1:15000".parse().unwrap(),
            control: None,
            workers: None,
        }
    }
}

/// The attribution trail: one JSON record per flow when it ends and per refusal, always in
/// the log (target `idgate::trail`); also appended to `file` when set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrailConfig {
    pub file: Option<PathBuf>,
}

/// The deny list (see `revocation`): entries here, and in `file`, which idgate watches and
/// `idgate revoke` appends to (default: `revoked` next to the config file, set by `parse`;
/// absent is empty).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationConfig {
    #[serde(default)]
    pub ids: Vec<AllowPattern>,
    #[serde(default)]
    pub serials: Vec<RevokedSerial>,
    pub file: Option<PathBuf>,
}

impl RevocationConfig {
    /// The inline entries and the file's; the error names the file's line.
    pub fn entries(&self) -> Result<Vec<crate::config::deny_list::Entry>, String> {
        use crate::config::deny_list::Entry;
        let mut all: Vec<Entry> = self.ids.iter().map(|p| Entry::Id(p.text())).collect();
        all.extend(self.serials.iter().map(|s| Entry::Serial(s.0.clone())));
        if let Some(file) = &self.file {
            all.extend(crate::config::deny_list::read_file(file)?);
        }
        Ok(all)
    }
}

/// A certificate serial in hex (colons allowed), kept normalized.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct RevokedSerial(pub String);

impl TryFrom<String> for RevokedSerial {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match crate::config::deny_list::Entry::parse(&s)? {
            crate::config::deny_list::Entry::Serial(hex) => Ok(RevokedSerial(hex)),
            crate::config::deny_list::Entry::Id(_) => Err(format!("`{s}` is a SPIFFE ID: put it in `ids`")),
        }
    }
}

/// Time limits of the data path: how fast a dead peer or a stalled dial is noticed.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TunnelConfig {
    /// Connecting to a peer or a local service, a TLS handshake, and a peer's answer to a
    /// CONNECT: each gets this long.
    pub dial_timeout: HumanDuration,
    /// A peer that answers no keepalive PING (and acknowledges no sent data) for this long is
    /// taken for dead: its connection and every flow on it are closed, new flows dial afresh.
    pub peer_timeout: HumanDuration,
    /// A tunnel connection takes no new flows after this (the next one verifies certificates
    /// and policy afresh); open flows finish on it.
    pub max_connection_age: HumanDuration,
    /// Inbound: an unauthenticated connection gets this long to complete its TLS handshake.
    pub handshake_timeout: HumanDuration,
    /// Inbound: handshakes in progress at once (more connections are closed at once).
    pub max_handshakes: usize,
    /// Inbound: handshakes in progress at once from one source (an IPv4 address or an IPv6 /64).
    pub max_handshakes_per_source: usize,
    /// After an upgrade handed new flows to the next idgate (`idgate upgrade`), how long the
    /// old one keeps serving the flows it has before it closes the rest.
    pub upgrade_drain: HumanDuration,
    /// Key exchange groups for tunnel handshakes, most preferred first. The hybrid
    /// post-quantum X25519MLKEM768 comes first, so traffic recorded today cannot be decrypted
    /// by a quantum computer later; X25519 stays only so that hosts still running an idgate
    /// without it can be reached during a fleet's upgrade: remove it once every host runs
    /// this one (`idgate_tunnel_key_exchanges_total` shows which groups peers negotiate).
    pub key_exchange: KeyExchangeList,
}

impl Default for TunnelConfig {
    fn default() -> Self {
        let secs = |s| HumanDuration(std::time::Duration::from_secs(s));
        TunnelConfig {
            dial_timeout: secs(5),
            peer_timeout: secs(15),
            max_connection_age: secs(3600),
            handshake_timeout: secs(5),
            upgrade_drain: secs(3600),
            max_handshakes: 1024,
            max_handshakes_per_source: 64,
            key_exchange: KeyExchangeList::try_from(vec![KeyExchange::X25519Mlkem768, KeyExchange::X25519]).expect("a valid list"),
        }
    }
}

impl TunnelConfig {
    /// Keepalive PINGs go out this often; one unanswered for the rest of `peer_timeout` ends
    /// the connection, so a dead peer is noticed within `peer_timeout`.
    pub fn ping_interval(&self) -> std::time::Duration {
        self.peer_timeout.0 / 3
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Intercept {
    /// nftables table (family inet) that idgate owns and replaces at start.
    pub table: String,
    /// Mark on idgate's own sockets; the redirect rule skips marked traffic.
    pub bypass_mark: u32,
    /// Mark bits the kernel module sets on flows it tagged (kmod backend only), within tag_mask.
    pub tag_mark: u32,
    /// The mark bits idgate owns on tagged flows; the module leaves the others alone (WireGuard,
    /// Cilium or policy routing marks on the same host).
    pub tag_mask: u32,
    /// What a stopping idgate does with its table.
    pub on_stop: OnStop,
    /// The cgroup (v2) the second line of defence is attached to: a program that drops any
    /// connection attempt to an intercepted destination that the table did not redirect (it
    /// was flushed or deleted) and, in strict mode, plaintext to protected ports. It outlives
    /// idgate like the table. "auto": the root of the host's cgroup v2 hierarchy, if it has
    /// one; a path: that cgroup, or idgate does not start; "off".
    pub guard_cgroup: GuardCgroup,
}

impl Default for Intercept {
    fn default() -> Self {
        Intercept {
            table: "idgate".into(),
            bypass_mark: 0x1d6a_0001,
            tag_mark: 0x2000_0000,
            tag_mask: 0x2000_0000,
            on_stop: OnStop::Keep,
            guard_cgroup: GuardCgroup::Auto,
        }
    }
}

/// Where the cgroup guard is attached (see `Intercept::guard_cgroup`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum GuardCgroup {
    #[default]
    Auto,
    Off,
    Path(std::path::PathBuf),
}

impl TryFrom<String> for GuardCgroup {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "auto" => Ok(GuardCgroup::Auto),
            "off" => Ok(GuardCgroup::Off),
            p if p.starts_with('/') => Ok(GuardCgroup::Path(p.into())),
            _ => Err(format!("guard_cgroup must be \"auto\", \"off\" or an absolute path to a cgroup (v2) directory, not `{s}`")),
        }
    }
}

impl From<GuardCgroup> for String {
    fn from(g: GuardCgroup) -> String {
        match g {
            GuardCgroup::Auto => "auto".into(),
            GuardCgroup::Off => "off".into(),
            GuardCgroup::Path(p) => p.display().to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnStop {
    /// The table stays: intercepted flows are refused until idgate runs again (never sent
    /// around the proxy in plaintext), and strict mode keeps protected ports closed.
    #[default]
    Keep,
    /// Remove the table on a clean stop (unsafe: flows then go out directly, in plaintext,
    /// and protected ports accept plaintext, until idgate or `idgate guard` installs it again).
    Release,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaConfig {
    /// `embedded` (created under state_dir on first start) or `files`.
    #[serde(default)]
    pub source: CaSource,
    /// CA certificate and key (PEM) when source = "files".
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Extra CA certificates (PEM) trusted for peers, e.g. other hosts' embedded CAs.
    #[serde(default)]
    pub trust_bundle: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaSource {
    #[default]
    Embedded,
    Files,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SvidConfig {
    pub ttl: HumanDuration,
    /// SPIFFE ID of this host's inbound side; default spiffe://<td>/idgate/host/<hostname>.
    pub server_id: Option<toml::Spanned<SpiffeIdValue>>,
    /// Addresses this host's inbound SVID names (IP SANs); peers accept it only for flows to
    /// these addresses. Default: the host's interface addresses (not loopback or link-local),
    /// re-read as they change.
    pub addresses: Option<Vec<std::net::IpAddr>>,
}

impl Default for SvidConfig {
    fn default() -> Self {
        SvidConfig { ttl: HumanDuration(std::time::Duration::from_secs(3600)), server_id: None, addresses: None }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct SpiffeIdValue(pub SpiffeId);

impl TryFrom<String> for SpiffeIdValue {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        SpiffeId::parse(&s).map(SpiffeIdValue).map_err(|e| e.to_string())
    }
}

/// Maps process attributes to a SPIFFE ID. All given selectors must match; first rule wins.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadRule {
    pub spiffe_id: toml::Spanned<SpiffeIdValue>,
    /// The path of the file the process runs, matched against the file at that path in
    /// idgate's mount namespace (device and inode), not only its name.
    pub exe: Option<toml::Spanned<Glob>>,
    /// The content of the file the process runs.
    pub sha256: Option<Sha256Digest>,
    pub comm: Option<Glob>,
    pub cgroup: Option<Glob>,
    /// Effective uid and gid.
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Also match a process of `uid` holding a socket that root created, when no root
    /// process holds it and no other user does (a daemon that connects, then drops privileges).
    #[serde(default)]
    pub root_socket: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundRule {
    pub cidrs: Vec<Cidr>,
    pub ports: Vec<PortRange>,
    /// Peer idgate: "same-ip" (default: the original destination's address) or "addr:port".
    #[serde(default)]
    pub peer: PeerChoice,
    #[serde(default = "default_peer_port")]
    pub peer_port: u16,
    /// "tcp" (opaque bytes) or "http" (requests parsed and rewritten by [[http_rule]]s).
    #[serde(default)]
    pub protocol: Protocol,
    /// Originate TLS to the original destination instead of tunnelling to a peer idgate.
    pub tls: Option<TlsOrigin>,
    /// Names this destination is known by (`protocol = "http"`): a request on a flow to it
    /// must carry one of them, the TLS server name or the destination's address as its Host,
    /// or it is answered 421 and goes nowhere (credentials follow the destination, not a header
    /// the workload writes).
    #[serde(default)]
    pub hosts: Vec<HostPattern>,
}

impl OutboundRule {
    /// `hosts` and the TLS server name.
    pub fn names(&self) -> Vec<HostPattern> {
        let mut names = self.hosts.clone();
        if let Some(tls) = &self.tls {
            names.push(HostPattern::Exact(tls.server_name.0.to_str().to_ascii_lowercase()));
        }
        names
    }

    /// Whether `pattern` names this destination: one of its names, or an address in its cidrs.
    pub fn is_named_by(&self, pattern: &HostPattern) -> bool {
        if let HostPattern::Exact(h) = pattern {
            if let Ok(ip) = h.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>() {
                return self.cidrs.iter().any(|c| c.contains(&ip));
            }
        }
        self.names().iter().any(|n| n.overlaps(pattern))
    }
}

fn default_peer_port() -> u16 {
    15008
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum PeerChoice {
    #[default]
    SameIp,
    Fixed(SocketAddr),
}

impl TryFrom<String> for PeerChoice {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s == "same-ip" {
            return Ok(PeerChoice::SameIp);
        }
        s.parse().map(PeerChoice::Fixed).map_err(|_| format!("peer `{s}` is neither \"same-ip\" nor an address:port"))
    }
}

/// Who may reach a local destination port through the inbound side.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundRule {
    pub ports: Vec<PortRange>,
    /// Exact SPIFFE IDs, or prefixes ending in `/*`.
    pub allow: Vec<AllowPattern>,
    /// "http": set the caller's identity header on each request and strip forged copies.
    #[serde(default)]
    pub protocol: Protocol,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum AllowPattern {
    Exact(SpiffeId),
    /// `spiffe://td/ns/*` matches every ID below `spiffe://td/ns/`.
    Prefix(String),
}

impl TryFrom<String> for AllowPattern {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if let Some(base) = s.strip_suffix("/*") {
            SpiffeId::parse(base).map_err(|e| e.to_string())?;
            Ok(AllowPattern::Prefix(format!("{base}/")))
        } else {
            SpiffeId::parse(&s).map(AllowPattern::Exact).map_err(|e| e.to_string())
        }
    }
}

impl AllowPattern {
    /// As written in the config.
    pub fn text(&self) -> String {
        match self {
            AllowPattern::Exact(id) => id.to_string(),
            AllowPattern::Prefix(p) => format!("{p}*"),
        }
    }

    pub fn matches(&self, id: &SpiffeId) -> bool {
        match self {
            AllowPattern::Exact(x) => x == id,
            AllowPattern::Prefix(p) => id.as_str().starts_with(p.as_str()),
        }
    }
}
