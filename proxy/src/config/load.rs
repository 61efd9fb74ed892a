//! Reads the config file and turns every problem into `file:line:col: message`.
use super::locate::{Index, Key, Locator, Step};
use super::{Config, CredentialKind, CredentialName};
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line and column, when the problem has a place in the file.
    pub position: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, col)) => write!(f, "{}:{}:{}: {}", self.file.display(), line, col, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one file, one per line.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

pub fn position_of(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, col)
}

/// The key of the `key = value` line containing byte `offset`, if any.
fn key_at(text: &str, offset: usize) -> Option<&str> {
    let start = text[..offset.min(text.len())].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line = text[start..].lines().next()?;
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    (!key.is_empty() && !key.starts_with('[') && !key.starts_with('#')).then_some(key)
}

pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError { file: path.into(), position: None, message: format!("cannot read: {e}") })?;
    parse(path, &text)
}

pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
    let mut config: Config = toml::from_str(text).map_err(|e| {
        let at = e.span().map(|s| s.start);
        let message = e.message().trim().to_string();
        ConfigError {
            file: path.into(),
            position: at.map(|o| position_of(text, o)),
            // toml names unknown keys itself; for bad values, name the key on that line.
            message: match at.and_then(|o| key_at(text, o)) {
                Some(key) if !message.contains(&format!("`{key}`")) => format!("field `{key}`: {message}"),
                _ => message,
            },
        }
    })?;
    let at = Locator::new(text);
    let errors: Vec<ConfigError> = check(&config)
        .into_iter()
        .map(|(place, message)| ConfigError { file: path.into(), position: place.offset(&at).map(|o| position_of(text, o)), message })
        .collect();
    if errors.is_empty() {
        if config.revocation.file.is_none() {
            config.revocation.file = Some(path.parent().unwrap_or(Path::new(".")).join("revoked"));
        }
        Ok(config)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Where a cross-field problem sits: a value's span, or an entry's path in the file.
enum Place {
    Span(usize),
    Path(Vec<Step<'static>>),
}

impl Place {
    fn offset(&self, at: &Locator<'_>) -> Option<usize> {
        match self {
            Place::Span(o) => Some(*o),
            Place::Path(path) => at.offset(path),
        }
    }
}

/// Checks that span several fields: where to point, and the message, for every problem.
fn check(c: &Config) -> Vec<(Place, String)> {
    let mut errors = Vec::new();
    for part in [workloads, outbound, tunnel_and_http, http_rules, credentials, inbound_ca_and_marks] {
        part(c, &mut errors);
    }
    errors
}

/// Every `[[workload]]`: in the trust domain, with a selector.
fn workloads(c: &Config, out: &mut Vec<(Place, String)>) {
    let td = &c.trust_domain.0;
    for (i, w) in c.workloads.iter().enumerate() {
        if w.spiffe_id.get_ref().0.trust_domain() != td {
            let id = &w.spiffe_id.get_ref().0;
            out.push((Place::Span(w.spiffe_id.span().start), format!("workload[{i}].spiffe_id `{id}` is outside trust domain `{td}`")));
        }
        let at = || Place::Path(vec![Key("workload"), Index(i)]);
        if w.is_site() || !w.sources.is_empty() {
            if w.interface.is_none() || w.sources.is_empty() {
                out.push((at(), format!("workload[{i}]: interface and sources go together (the machines behind that interface, by address)")));
            }
            if w.selects_processes() {
                out.push((
                    at(),
                    format!("workload[{i}]: interface and sources name machines behind this host, which have no process here: no exe, sha256, comm, cgroup, uid, gid, root_socket or container_* beside them"),
                ));
            }
            if w.interface.as_ref().is_some_and(|n| n.is_empty() || n.len() > 15 || n.contains('/') || n.chars().any(char::is_whitespace)) {
                out.push((at(), format!("workload[{i}].interface is not an interface name (1 to 15 characters, no '/' or space)")));
            }
            continue;
        }
        if !w.selects_processes() {
            out.push((at(), format!("workload[{i}] has no selector (exe, sha256, comm, cgroup, uid, gid, container_*, or interface and sources)")));
        }
        if w.asks_runtime() && c.containers.runtime_api.is_none() {
            out.push((
                Place::Path(vec![Key("workload"), Index(i)]),
                format!("workload[{i}] selects on the container's name, image or labels: set [containers] runtime_api (the runtime's API socket) to read them"),
            ));
        }
        if w.root_socket && w.uid.is_none() {
            out.push((
                Place::Path(vec![Key("workload"), Index(i)]),
                format!("workload[{i}].root_socket needs uid: it lets that uid's processes use sockets root created"),
            ));
        }
    }
}

/// Every `[[outbound]]`: somewhere to go, and HTTP-only options only with HTTP.
fn outbound(c: &Config, out: &mut Vec<(Place, String)>) {
    for (i, o) in c.outbound.iter().enumerate() {
        if o.cidrs.is_empty() || o.ports.is_empty() {
            out.push((Place::Path(vec![Key("outbound"), Index(i)]), format!("outbound[{i}] needs at least one entry in cidrs and in ports")));
        }
    }
    for (i, o) in c.outbound.iter().enumerate() {
        if !o.hosts.is_empty() && o.protocol != super::Protocol::Http {
            out.push((
                Place::Path(vec![Key("outbound"), Index(i)]),
                format!("outbound[{i}].hosts needs protocol = \"http\" (idgate checks each request's Host against them)"),
            ));
        }
        if o.tls.is_some() && o.protocol != super::Protocol::Http {
            out.push((
                Place::Path(vec![Key("outbound"), Index(i)]),
                format!("outbound[{i}].tls needs protocol = \"http\" (idgate must see the requests it encrypts)"),
            ));
        }
    }
}

/// Timers with a floor.
fn tunnel_and_http(c: &Config, out: &mut Vec<(Place, String)>) {
    if c.tunnel.peer_timeout.0 < std::time::Duration::from_secs(1) {
        out.push((Place::Path(vec![Key("tunnel"), Key("peer_timeout")]), "tunnel.peer_timeout must be at least 1s".into()));
    }
    if c.tunnel.max_connection_age.0 < std::time::Duration::from_secs(1) {
        out.push((Place::Path(vec![Key("tunnel"), Key("max_connection_age")]), "tunnel.max_connection_age must be at least 1s".into()));
    }
    if c.tunnel.max_handshakes == 0 || c.tunnel.max_handshakes_per_source == 0 {
        out.push((
            Place::Path(vec![Key("tunnel"), Key(if c.tunnel.max_handshakes == 0 { "max_handshakes" } else { "max_handshakes_per_source" })]),
            "tunnel.max_handshakes and max_handshakes_per_source must be at least 1".into(),
        ));
    }
    if c.http.jwt_ttl.0 < std::time::Duration::from_secs(10) {
        out.push((Place::Path(vec![Key("http"), Key("jwt_ttl")]), "http.jwt_ttl must be at least 10s".into()));
    }
}

/// Every `[[http_rule]]`: an action, a host that names an HTTP destination, hands off the identity header.
fn http_rules(c: &Config, out: &mut Vec<(Place, String)>) {
    for (i, r) in c.http_rules.iter().enumerate() {
        if r.set.is_empty() && r.append.is_empty() && r.remove.is_empty() && r.aws_sigv4.is_none() {
            out.push((Place::Path(vec![Key("http_rule"), Index(i)]), format!("http_rule[{i}] has no action (set, append, remove or aws_sigv4)")));
        }
        let uses = |kinds: &[CredentialKind], name: &CredentialName, what: &str| match c.credentials.iter().find(|s| s.name == *name) {
            Some(s) if kinds.contains(&s.kind) => None,
            Some(s) => Some(format!("http_rule[{i}] {what} `{name}` is a {:?} source, which cannot serve there", s.kind)),
            None => Some(format!("http_rule[{i}] {what} `{name}` names no [[credential]]")),
        };
        let oauth = [CredentialKind::OauthClientCredentials, CredentialKind::OauthTokenExchange];
        for template in r.set.values().chain(r.append.values()) {
            for part in &template.parts {
                if let Some(why) = match part {
                    super::Part::Credential(name) => uses(&oauth, name, "${credential:...}"),
                    _ => None,
                } {
                    out.push((Place::Path(vec![Key("http_rule"), Index(i)]), why));
                }
            }
        }
        if let Some(why) = r.aws_sigv4.as_ref().and_then(|a| uses(&[CredentialKind::AwsWebIdentity], &a.credential, "aws_sigv4.credential")) {
            out.push((Place::Path(vec![Key("http_rule"), Index(i), Key("aws_sigv4")]), why));
        }
        if let Some(host) = &r.host {
            if !c.outbound.iter().any(|o| o.protocol == super::Protocol::Http && o.is_named_by(host)) {
                out.push((
                    Place::Path(vec![Key("http_rule"), Index(i)]),
                    format!(
                        "http_rule[{i}].host `{}` names no protocol = \"http\" [[outbound]] destination: add it to that destination's hosts (or tls.server_name), so that the rule applies only on flows to it",
                        host.text()
                    ),
                ));
            }
        }
        if let Some(key) = r.set.keys().chain(r.append.keys()).chain(r.remove.iter()).find(|k| k.0 == c.http.identity_header.0) {
            out.push((
                Place::Path(vec![Key("http_rule"), Index(i)]),
                format!("http_rule[{i}] may not rewrite `{}`: inbound idgate owns the identity header", key.0),
            ));
        }
    }
}

/// Every `[[credential]]`: a unique name, the fields its kind needs and no others.
fn credentials(c: &Config, out: &mut Vec<(Place, String)>) {
    for (i, s) in c.credentials.iter().enumerate() {
        let mut problem = |why: String| out.push((Place::Path(vec![Key("credential"), Index(i)]), format!("credential[{i}] `{}`: {why}", s.name)));
        if c.credentials[..i].iter().any(|other| other.name == s.name) {
            problem("another [[credential]] has this name".into());
        }
        let unused = s.unused_fields();
        if !unused.is_empty() {
            problem(format!("{} not used by kind {:?}", unused.join(", "), s.kind));
        }
        let oauth = s.kind != CredentialKind::AwsWebIdentity;
        if oauth && s.endpoint.is_none() {
            problem("needs endpoint (the token endpoint's https:// URL)".into());
        }
        if !oauth && s.role_arn.as_deref().is_none_or(|arn| !arn.starts_with("arn:")) {
            problem("needs role_arn (arn:aws:iam::ACCOUNT:role/NAME)".into());
        }
        if !oauth && s.endpoint.is_none() && s.region.is_none() {
            problem("needs region (or endpoint): where STS is".into());
        }
        if !oauth && !(900..=43200).contains(&s.duration.0.as_secs()) {
            problem("duration must be between 15m and 12h (STS's DurationSeconds)".into());
        }
        if s.timeout.0 < std::time::Duration::from_millis(100) {
            problem("timeout must be at least 100ms".into());
        }
        if s.kind == CredentialKind::OauthTokenExchange && s.token_audience.is_none() {
            problem("needs token_audience (the aud of the JWT-SVID the server is told to trust)".into());
        }
    }
}

/// `[[inbound]]` ports, the CA's files, the server ID's trust domain, the marks.
fn inbound_ca_and_marks(c: &Config, out: &mut Vec<(Place, String)>) {
    let td = &c.trust_domain.0;
    for (i, r) in c.inbound.iter().enumerate() {
        if r.ports.is_empty() {
            out.push((Place::Path(vec![Key("inbound"), Index(i)]), format!("inbound[{i}].ports is empty")));
        }
    }
    if c.ca.source == super::CaSource::Files && (c.ca.cert.is_none() || c.ca.key.is_none()) {
        out.push((Place::Path(vec![Key("ca")]), "ca.source = \"files\" needs ca.cert and ca.key".into()));
    }
    if let Some(id) = &c.svid.server_id {
        if id.get_ref().0.trust_domain() != td {
            let at = Place::Span(id.span().start);
            out.push((at, format!("svid.server_id `{}` is outside trust domain `{td}`", id.get_ref().0)));
        }
    }
    let i = &c.intercept;
    if i.tag_mark == 0 || i.tag_mark & !i.tag_mask != 0 {
        out.push((Place::Path(vec![Key("intercept"), Key("tag_mark")]), "intercept.tag_mark must be non-zero and within tag_mask".into()));
    }
    if i.bypass_mark == 0 || i.bypass_mark & i.tag_mark == i.tag_mark {
        out.push((
            Place::Path(vec![Key("intercept"), Key("bypass_mark")]),
            "intercept.bypass_mark must be non-zero and not carry the tag_mark bits".into(),
        ));
    }
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
