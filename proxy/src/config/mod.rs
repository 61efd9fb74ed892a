//! Per-host configuration (`/etc/idgate/idgate.toml`). Field values are validated while they are
//! deserialized, so every error carries the file, line and column of the offending value.
mod credential;
pub mod deny_list;
mod http;
pub(crate) mod load;
pub mod locate;
mod values;

pub use credential::{AssertionForm, AwsSigV4, ClientAuth, CredentialKind, CredentialName, CredentialSource, HttpsUrl, PayloadSigning};
pub use http::{HeaderKey, HostPattern, HttpConfig, HttpRule, IdentityFormat, Part, Protocol, Template, TlsOrigin};

pub use load::{load, parse, position_of, ConfigError, ConfigErrors};
pub use values::{Cidr, Glob, HumanDuration, KeyExchange, KeyExchangeList, PortRange, Sha256Digest};

use crate::spiffe::SpiffeId;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The keys at the top of the file, before its first table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The fleet's SPIFFE trust domain: every SPIFFE ID idgate issues or accepts is
    /// `spiffe://<trust_domain>/...`.
    pub trust_domain: TrustDomain,
    /// This host's name in its inbound identity, `spiffe://<trust_domain>/idgate/host/<hostname>`.
    /// Default: the system's host name (`/proc/sys/kernel/hostname`).
    pub hostname: Option<String>,
    /// Where idgate keeps its state: the embedded CA (`ca.pem`, and `ca-key.pem` mode 0600), the
    /// snapshot of its nftables table for the boot guard, the peer history and, unless
    /// `[listen] control` says otherwise, the control socket. SVID keys never touch disk.
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
    pub containers: Containers,
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
    #[serde(default, rename = "credential")]
    pub credentials: Vec<CredentialSource>,
    #[serde(default)]
    pub revocation: RevocationConfig,
}

impl Config {
    /// Whether flows routed through this host are tunnelled (containers' or sites'), not only
    /// refused.
    pub fn routes_flows(&self) -> bool {
        !self.containers.networks.is_empty() || self.workloads.iter().any(WorkloadRule::is_site)
    }

    pub fn control_socket(&self) -> PathBuf {
        self.listen.control.clone().unwrap_or_else(|| self.state_dir.join("control.sock"))
    }
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/idgate")
}

/// Lowercase letters, digits, `.`, `-` and `_`, such as `example.org`.
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

/// What the inbound side does with plaintext connections to protected ports (the ports of
/// `[[inbound]]` rules).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InboundMode {
    /// Protected ports accept connections only through idgate (mTLS); plaintext is dropped.
    #[default]
    Strict,
    /// Plaintext is still accepted (migration aid); mTLS flows are authorized as usual.
    Permissive,
}

/// How idgate finds the process that opened a flow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentityBackendChoice {
    /// The kernel module if `/dev/idgate` exists and can be trusted, else procfs (a module that
    /// cannot be trusted is warned about).
    #[default]
    Auto,
    /// The kernel module (`idgate.ko`); idgate does not start without it.
    Kmod,
    /// sock_diag and `/proc`, no kernel module.
    Procfs,
}

/// What happens to an intercepted flow whose process matches no workload rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultAction {
    /// Refuse the flow (the workload's connection is reset).
    #[default]
    Deny,
    /// Forward in plaintext to the original destination (explicit opt-in only).
    Passthrough,
}

/// The sockets idgate listens on.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Listen {
    /// Port of the outbound capture listener on 127.0.0.1 and ::1, where the nftables table
    /// redirects intercepted flows.
    pub outbound_port: u16,
    /// The mTLS tunnel endpoint that peer idgates connect to.
    pub inbound: SocketAddr,
    /// The admin HTTP listener: `/metrics`, `/healthz`, and `/jwks.json` (the keys that verify
    /// this host's JWT-SVIDs). Status and control go through the control socket instead.
    pub admin: SocketAddr,
    /// The control socket (Unix, mode 0600) that `idgate status`, `flows`, `reload`, `revoke`
    /// and `upgrade` talk to. Default: `<state_dir>/control.sock`.
    pub control: Option<PathBuf>,
    /// Data-path threads (each with its own listeners and tunnel pool). Default: a quarter of
    /// the cores, at least one: idgate shares the host with the workloads it serves, and fewer
    /// threads batch more work per wake-up.
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

/// The attribution trail: one JSON record per flow when it ends and per refusal (process,
/// SPIFFE ID, SVID serial, credential rules applied, peer, destination, verdict, bytes,
/// duration), always in the log (target `idgate::trail`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrailConfig {
    /// Also append the trail to this file (JSON lines, created mode 0600). The packaged unit
    /// may write only under `/var/lib/idgate` and `/var/log/idgate`. Default: the log only.
    pub file: Option<PathBuf>,
}

/// The deny list: SPIFFE IDs and certificate serials that no flow may use, whatever the policy
/// allows. A peer host's ID, or the serial of any certificate of a peer's chain (its host
/// CA's), cuts that peer off. Open flows and pooled connections of a revoked identity are
/// closed within a fraction of a second, new ones refused, its SVIDs dropped.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationConfig {
    /// SPIFFE IDs, exact or prefixes ending in `/*`; applied on reload.
    #[serde(default)]
    pub ids: Vec<AllowPattern>,
    /// Certificate serials; applied on reload.
    #[serde(default)]
    pub serials: Vec<RevokedSerial>,
    /// A deny-list file, one ID or serial per line (`#` starts a comment), watched: a change
    /// applies at once. `idgate revoke` appends to it; a fleet distributes it like any config
    /// file (write a new copy, rename it into place). Default: `revoked` next to the config
    /// file; a missing file is an empty list.
    // `parse` fills in the default.
    pub file: Option<PathBuf>,
}

impl RevocationConfig {
    /// The inline entries and the file's; the error names the file's line.
    pub fn entries(&self) -> Result<Vec<crate::config::deny_list::Entry>, crate::config::deny_list::DenyListError> {
        use crate::config::deny_list::Entry;
        let mut all: Vec<Entry> = self.ids.iter().map(|p| Entry::Id(p.text())).collect();
        all.extend(self.serials.iter().map(|s| Entry::Serial(s.0.clone())));
        if let Some(file) = &self.file {
            all.extend(crate::config::deny_list::read_file(file)?);
        }
        Ok(all)
    }
}

/// A certificate serial in hex, colons allowed, as openssl prints it: `3f:a1:07`.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct RevokedSerial(pub String);

impl TryFrom<String> for RevokedSerial {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match crate::config::deny_list::Entry::parse(&s).map_err(|e| e.to_string())? {
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

/// How flows are intercepted: idgate's nftables table, its marks, and the guard that holds
/// when the table does not.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Intercept {
    /// nftables table (family inet) that idgate owns and replaces at start.
    pub table: String,
    /// Mark on idgate's own sockets; the redirect rule skips marked traffic.
    pub bypass_mark: u32,
    /// Mark bits the kernel module sets on flows it tagged (kmod backend only), within
    /// `tag_mask`.
    pub tag_mark: u32,
    /// The mark bits idgate owns on tagged flows; the module leaves the others alone (WireGuard,
    /// Cilium or policy routing marks on the same host).
    pub tag_mask: u32,
    /// What a stopping idgate does with its table.
    pub on_stop: OnStop,
    /// The cgroup (v2) the second line of defence is attached to: a program that drops any
    /// connection attempt to an intercepted destination that the table did not redirect (it
    /// was flushed or deleted) and, in strict mode, plaintext to protected ports. Pinned under
    /// `/sys/fs/bpf/idgate`, it outlives idgate like the table. With `[containers] networks`
    /// or site rules, the same check also runs on the egress of every interface but loopback
    /// (tcx, Linux 6.6 and later), for the flows the host forwards; `"off"` turns both off.
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

/// Containers on this host: processes in network namespaces of their own, whose flows reach
/// the network through this host (a bridge and veth pairs, as Docker's and Podman's default
/// networks do). Flows routed through this host to `[[outbound]]` destinations are always
/// intercepted; those from `networks` are tunnelled with the identity of the process in the
/// container that opened them, every other routed flow is refused.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Containers {
    /// The containers' addresses (their bridge networks, such as Podman's `10.88.0.0/16` or
    /// Docker's `172.17.0.0/16`). A flow from one of them is accepted only over the interface
    /// the host routes that address to (one container cannot pass for another network's).
    pub networks: Vec<Cidr>,
    /// A Docker-compatible API socket (Docker's `/run/docker.sock`, or Podman's
    /// `/run/podman/podman.sock` from `podman system service`), read only, for the
    /// `container_name`, `container_image` and `container_labels` selectors.
    pub runtime_api: Option<PathBuf>,
}

/// Where the cgroup guard is attached (`[intercept] guard_cgroup`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum GuardCgroup {
    /// The root of the host's cgroup v2 hierarchy, if it has one (`idgate status` says if not).
    #[default]
    Auto,
    /// No guard.
    Off,
    /// An absolute path: that cgroup (v2) directory; idgate does not start without it.
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
    /// With `keep`, `idgate uninstall` removes the table (package removal runs it).
    Release,
}

/// The CA that issues this host's SVIDs, and the roots it trusts for peers. A reload applies
/// changes here and to the files' contents (a CA rotation).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaConfig {
    /// Where the CA comes from.
    #[serde(default)]
    pub source: CaSource,
    /// The CA certificate (PEM) when `source = "files"`.
    pub cert: Option<PathBuf>,
    /// The CA's private key (PEM) when `source = "files"`: mode 0600, owned by root or idgate's
    /// user.
    pub key: Option<PathBuf>,
    /// Roots trusted for peers (PEM): the fleet's root (two during a rotation), or other hosts'
    /// CAs. A CA here is trusted for every ID of the trust domain: its grant is not checked.
    #[serde(default)]
    pub trust_bundle: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaSource {
    /// A CA of this host's own, created under `state_dir` on first start.
    #[default]
    Embedded,
    /// An existing CA from `cert` and `key`: for a fleet, this host's CA from `idgate ca issue`
    /// (it may name only this host's addresses and issue only its host's ID and the granted
    /// workload IDs), with the fleet root's `ca.pem` in `trust_bundle`.
    Files,
}

/// The X.509-SVIDs idgate mints: for workloads, and this host's own for its inbound side.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SvidConfig {
    /// Lifetime of minted X.509-SVIDs; each is renewed between half and seven tenths of its
    /// life (a point its serial picks, so SVIDs minted together are not renewed together).
    pub ttl: HumanDuration,
    /// SPIFFE ID of this host's inbound side. Default:
    /// `spiffe://<trust_domain>/idgate/host/<hostname>`.
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

/// `spiffe://<trust domain>/<path>`: path segments of letters, digits, `.`, `-` and `_`.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct SpiffeIdValue(pub SpiffeId);

impl TryFrom<String> for SpiffeIdValue {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        SpiffeId::parse(&s).map(SpiffeIdValue).map_err(|e| e.to_string())
    }
}

/// Maps process attributes to a SPIFFE ID. All given selectors must match (at least one is
/// needed); the first matching rule wins. A process whose file cannot be identified matches no
/// `exe` or `sha256` selector.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadRule {
    /// The identity a matching process gets; within `trust_domain`.
    pub spiffe_id: toml::Spanned<SpiffeIdValue>,
    /// The path of the file the process runs (links resolved, as `/proc/<pid>/exe` shows it),
    /// matched against the file at that path in idgate's mount namespace (device and inode),
    /// not only its name. Alone it says which program runs, not who runs it: add `uid`.
    pub exe: Option<toml::Spanned<Glob>>,
    /// The content of the file the process runs, read through the process (any copy anywhere
    /// matches); files over 256 MiB or on FUSE never match. Add `uid`, as for `exe`.
    pub sha256: Option<Sha256Digest>,
    /// The process name. Any process can set its own: never use it alone.
    pub comm: Option<Glob>,
    /// The process's cgroup (v2) path, such as `/system.slice/frontend.service`.
    pub cgroup: Option<Glob>,
    /// The process's effective uid. A socket is attributed only to a process of the uid that
    /// created it.
    pub uid: Option<u32>,
    /// The process's effective gid.
    pub gid: Option<u32>,
    /// Also match a process of `uid` holding a socket that root created, when no root
    /// process holds it and no other user does (a daemon that connects, then drops privileges).
    #[serde(default)]
    pub root_socket: bool,
    /// The id (64 hex digits) of the container the process runs in, read from its cgroup
    /// (Docker, Podman, containerd, CRI-O). A process in no container matches no `container_*`
    /// selector.
    pub container_id: Option<Glob>,
    /// The container's name, as `[containers] runtime_api` reports it (without a leading `/`).
    pub container_name: Option<Glob>,
    /// The container's image, as the runtime reports it (`docker.io/library/nginx:1.27`, or
    /// the name given to `podman import`).
    pub container_image: Option<Glob>,
    /// Labels the container must carry, each with exactly this value.
    #[serde(default)]
    pub container_labels: std::collections::BTreeMap<String, String>,
    /// A gateway's rule for machines behind it: flows routed through this host that arrive
    /// on this interface from `sources` get the rule's ID (they have no process here). Only
    /// with `sources`, and with no process selector.
    pub interface: Option<String>,
    /// The addresses `interface` carries (a site's networks). The table drops a new TCP
    /// connection from one of them that arrives on another interface, and one arriving on
    /// `interface` from any other address.
    #[serde(default)]
    pub sources: Vec<Cidr>,
}

impl WorkloadRule {
    /// Whether the rule asks the container runtime (name, image or labels).
    pub fn asks_runtime(&self) -> bool {
        self.container_name.is_some() || self.container_image.is_some() || !self.container_labels.is_empty()
    }

    /// Whether the rule selects only processes in containers.
    pub fn selects_containers(&self) -> bool {
        self.container_id.is_some() || self.asks_runtime()
    }

    /// Whether the rule names machines behind this host (a site) rather than processes.
    pub fn is_site(&self) -> bool {
        self.interface.is_some()
    }

    /// Whether the rule has a selector of processes.
    pub fn selects_processes(&self) -> bool {
        self.exe.is_some()
            || self.sha256.is_some()
            || self.comm.is_some()
            || self.cgroup.is_some()
            || self.uid.is_some()
            || self.gid.is_some()
            || self.root_socket
            || self.selects_containers()
    }
}

/// Destinations to intercept (every address in `cidrs` on every port in `ports`), and which
/// peer idgate serves them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundRule {
    /// Destination addresses (at least one).
    pub cidrs: Vec<Cidr>,
    /// Destination ports (at least one).
    pub ports: Vec<PortRange>,
    /// The peer idgate that serves these destinations.
    #[serde(default)]
    pub peer: PeerChoice,
    /// The peer idgate's tunnel port when `peer = "same-ip"`.
    #[serde(default = "default_peer_port")]
    pub peer_port: u16,
    /// What flows to these destinations carry; `"http"` applies `[[http_rule]]`s to them.
    #[serde(default)]
    pub protocol: Protocol,
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

/// The peer idgate of an `[[outbound]]` rule.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum PeerChoice {
    /// The idgate at the original destination's address, on `peer_port`.
    #[default]
    SameIp,
    /// `address:port`: the idgate there, for every destination of the rule (a gateway).
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
    /// Local destination ports. In strict mode they are protected: plaintext from other hosts
    /// is dropped, and local callers are authorized like remote ones.
    pub ports: Vec<PortRange>,
    /// The callers allowed: exact SPIFFE IDs, or prefixes ending in `/*`. Everything else is
    /// denied.
    pub allow: Vec<AllowPattern>,
    /// `"http"`: set the caller's identity header (`[http] identity_header`) on each request and
    /// strip forged copies.
    #[serde(default)]
    pub protocol: Protocol,
    /// Servers behind this host (a gateway) that the rule is about instead of this host's own
    /// ports: callers it allows may reach these addresses on `ports`, and nothing else behind
    /// it (a CONNECT to an address neither this host's nor a backend's stays a 403). This
    /// host's certificate must name each address callers dial (`[svid] addresses`). In strict
    /// mode, plaintext routed through this host to them is dropped.
    #[serde(default)]
    pub backends: Vec<Cidr>,
}

/// Which SPIFFE IDs an entry names.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum AllowPattern {
    /// An exact SPIFFE ID: `spiffe://example.org/web/frontend`.
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
