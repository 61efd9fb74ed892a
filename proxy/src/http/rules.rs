//! Applies `[[http_rule]]`s to one outbound request: strip what a workload must not forge,
//! then set/append/remove headers with values rendered from templates.
use super::exchange::{self, Exchanged, Exchanges, Source};
use super::forged::Protected;
use super::jwt::JwtIssuer;
use super::secrets::{env_secret, FileSecrets, Secret, SecretError};
use crate::config::{CredentialName, CredentialSource, HostPattern, HttpRule, Part, PayloadSigning, Template};
use crate::spiffe::SpiffeId;
use http::header::{HeaderName, HeaderValue, HOST};
use http::request::Parts;
use smallvec::SmallVec;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// The headers an `aws_sigv4` rule sets.
static SIGNED: std::sync::LazyLock<[HeaderName; 4]> = std::sync::LazyLock::new(|| exchange::sigv4::SIGNED_BY_IDGATE.map(HeaderName::from_static));

#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    /// The request names a host the flow is not going to: it must not leave (and would get
    /// credentials meant for that host's rules if it did).
    #[error("Host `{host}` is not a name of destination {dst} (list it in that [[outbound]]'s hosts)")]
    Misdirected { host: String, dst: SocketAddr },
    /// A credential could not be rendered: the request must not leave without it.
    #[error("http_rule[{rule}] header `{header}`: {why}")]
    Credential { rule: usize, header: HeaderName, why: String },
}

pub struct Rewriter {
    rules: Vec<HttpRule>,
    /// How the trail names each rule (its `name`, else `http_rule[i]`).
    names: Vec<String>,
    identity_header: HeaderName,
    files: FileSecrets,
    /// `${env:NAME}` values, read once at start.
    env: HashMap<String, Secret>,
    jwt: Arc<JwtIssuer>,
    exchanges: Arc<Exchanges>,
    sources: HashMap<CredentialName, Arc<Source>>,
}

/// What the rules did to one request: the rules that applied (indices), and the exchanged
/// credentials it carries, with when each expires (for the trail).
#[derive(Debug, Default)]
pub struct Applied {
    pub rules: SmallVec<[usize; 4]>,
    pub credentials: SmallVec<[(CredentialName, std::time::SystemTime); 2]>,
}

/// What the rules see of a request besides its headers.
pub struct Flow<'a> {
    pub source: &'a SpiffeId,
    pub dst: SocketAddr,
    /// The names the destination is known by (its [[outbound]] `hosts` and TLS server name;
    /// see `OutboundRule::names`). Its address is always one.
    pub names: &'a [HostPattern],
}

/// What the rules make of one destination, worked out once per flow (and again after a
/// reload): the rules whose `cidrs` and `ports` (and `host`, among its names) let them apply
/// there, and the names no workload may send there: the identity header and every header one
/// of those rules sets, whatever Host or path a request names (a rule's `host` and
/// `path_prefix` select whom it serves, never whether its headers may be forged).
pub struct Plan {
    rules: SmallVec<[usize; 4]>,
    protected: Arc<Protected>,
}

impl Plan {
    /// The names stripped from this destination's requests, heads and trailers alike.
    pub fn protected(&self) -> &Arc<Protected> {
        &self.protected
    }
}

impl Flow<'_> {
    /// Whether `host` (lower case, no port) is the destination's address or one of its names.
    fn is_named(&self, host: &str) -> bool {
        let literal = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        literal.parse::<std::net::IpAddr>().is_ok_and(|ip| ip == self.dst.ip()) || self.names.iter().any(|n| n.matches(host))
    }
}

impl Rewriter {
    /// Resolves environment sources and checks every secret file now, so that a broken
    /// setup fails at start with a clear message rather than at the first request.
    pub fn new(
        rules: Vec<HttpRule>,
        identity_header: HeaderName,
        credentials: &[CredentialSource],
        exchanges: Arc<Exchanges>,
    ) -> anyhow::Result<Self> {
        let jwt = exchanges.jwt().clone();
        let mut sources = HashMap::new();
        for c in credentials {
            sources.insert(c.name.clone(), Arc::new(Source::new(c.clone())?));
        }
        let files = FileSecrets::default();
        let mut env = HashMap::new();
        for (i, rule) in rules.iter().enumerate() {
            for (name, template) in rule.set.iter().chain(rule.append.iter()) {
                for part in &template.parts {
                    let fail = |e: SecretError| anyhow::anyhow!("http_rule[{i}] header `{}`: {e}", name.0);
                    match part {
                        Part::Env(var) => {
                            env.insert(var.clone(), env_secret(var).map_err(fail)?);
                        }
                        Part::File(path) => {
                            files.get(path).map_err(fail)?;
                        }
                        _ => {}
                    }
                }
            }
        }
        let names = rules.iter().enumerate().map(|(i, r)| r.name.clone().unwrap_or_else(|| format!("http_rule[{i}]"))).collect();
        Ok(Rewriter { rules, names, identity_header, files, env, jwt, exchanges, sources })
    }

    pub fn jwt(&self) -> &JwtIssuer {
        &self.jwt
    }

    /// Fetches ahead every credential the rules would exchange for `source` (a workload that
    /// just appeared), so that its first request does not wait for it.
    pub fn prefetch(&self, source: &SpiffeId) {
        for rule in self.rules.iter().filter(|r| r.source.as_ref().is_none_or(|s| s.matches(source))) {
            let parts = rule.set.values().chain(rule.append.values()).flat_map(|t| t.parts.iter());
            let names =
                parts.filter_map(|p| if let Part::Credential(n) = p { Some(n) } else { None }).chain(rule.aws_sigv4.as_ref().map(|a| &a.credential));
            for name in names {
                if let Some(s) = self.sources.get(name) {
                    self.exchanges.prefetch(s, source);
                }
            }
        }
    }

    /// How the trail names rule `i` (its `name`, else `http_rule[i]`).
    pub fn rule_name(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// The rules for `flow`'s destination and what its requests may not carry.
    pub fn plan(&self, flow: &Flow<'_>) -> Plan {
        let mut rules = SmallVec::new();
        let mut protected = vec![&self.identity_header];
        for (i, rule) in self.rules.iter().enumerate() {
            if for_destination(rule, flow) {
                rules.push(i);
                protected.extend(rule.set.keys().map(|k| &k.0));
                if rule.aws_sigv4.is_some() {
                    protected.extend(SIGNED.iter());
                }
            }
        }
        Plan { rules, protected: Arc::new(Protected::new(protected)) }
    }

    /// `apply_planned` with a plan made for this request alone.
    pub async fn apply(&self, flow: &Flow<'_>, parts: &mut Parts, body: Option<&[u8]>) -> Result<Applied, RewriteError> {
        self.apply_planned(&self.plan(flow), flow, parts, body).await
    }

    /// The largest body a rule that applies to this request must read before it can be sent
    /// (AWS signing of the payload), if one must.
    pub fn body_to_read(&self, plan: &Plan, flow: &Flow<'_>, parts: &Parts) -> Option<u64> {
        let signs = |i: &usize| self.rules[*i].aws_sigv4.as_ref().is_some_and(|a| a.payload == PayloadSigning::Signed);
        if !plan.rules.iter().any(signs) {
            // Every request asks: most destinations have no such rule, and need no host parsed.
            return None;
        }
        let (hosts, selected) = request_hosts(parts);
        let host = selected.map(|i| hosts[i].as_str());
        plan.rules
            .iter()
            .map(|&i| &self.rules[i])
            .filter(|r| request_matches(r, host, parts.uri.path()) && r.source.as_ref().is_none_or(|s| s.matches(flow.source)))
            .filter_map(|r| r.aws_sigv4.as_ref().filter(|a| a.payload == PayloadSigning::Signed).map(|a| a.max_body))
            .min()
    }

    /// Rewrites `parts` in place; returns the indices of the rules that applied. On error the
    /// request must not be forwarded: it names another destination than the flow's, or it
    /// would leave without the credential it is meant to carry. `plan` is this rewriter's, for
    /// `flow`; `body` the whole body when `body_to_read` asked for it.
    pub async fn apply_planned(&self, plan: &Plan, flow: &Flow<'_>, parts: &mut Parts, body: Option<&[u8]>) -> Result<Applied, RewriteError> {
        // Every host the request names (request target and Host header, which HTTP/1.1 lets
        // disagree) must be this destination's: rules select on it below.
        let (mut hosts, selected) = request_hosts(parts);
        if let Some(at) = hosts.iter().position(|h| !flow.is_named(h)) {
            return Err(RewriteError::Misdirected { host: hosts.swap_remove(at), dst: flow.dst });
        }
        let host = selected.map(|i| hosts[i].as_str());
        let path = parts.uri.path();
        let rules: SmallVec<[usize; 4]> = plan
            .rules
            .iter()
            .copied()
            .filter(|&i| request_matches(&self.rules[i], host, path) && self.rules[i].source.as_ref().is_none_or(|s| s.matches(flow.source)))
            .collect();
        // Anti-spoofing first: the identity header and any header a rule for this destination
        // injects may only come from idgate, whichever workload sent the request, under any
        // spelling the service may read as theirs.
        let lookalikes = plan.protected.strip(&mut parts.headers);
        let mut applied = Applied { rules, credentials: SmallVec::new() };
        for &i in &applied.rules {
            let rule = &self.rules[i];
            for name in &rule.remove {
                lookalikes.strip(&mut parts.headers, &name.0);
            }
            for (name, template) in &rule.set {
                let value = self.render(i, &name.0, template, flow.source, &mut applied.credentials).await?;
                parts.headers.insert(name.0.clone(), value);
            }
            for (name, template) in &rule.append {
                let value = self.render(i, &name.0, template, flow.source, &mut applied.credentials).await?;
                parts.headers.append(name.0.clone(), value);
            }
            if let Some(aws) = &rule.aws_sigv4 {
                let fail = |why: String| RewriteError::Credential { rule: i, header: http::header::AUTHORIZATION, why };
                let fetched = self.exchanged(&aws.credential, flow.source).await.map_err(fail)?;
                applied.credentials.push((aws.credential.clone(), fetched.expires));
                let credentials = match fetched.credential {
                    Exchanged::Aws(c) => c,
                    Exchanged::Bearer(_) => return Err(fail(format!("credential `{}` gives no AWS credentials", aws.credential))),
                };
                exchange::sigv4::sign_request(parts, body, aws, &credentials, std::time::SystemTime::now()).map_err(fail)?;
            }
        }
        Ok(applied)
    }

    async fn exchanged(&self, name: &CredentialName, source: &SpiffeId) -> Result<exchange::Fetched, String> {
        let s = self.sources.get(name).ok_or_else(|| format!("no [[credential]] named `{name}`"))?;
        self.exchanges.get(s, source).await.map_err(|e| e.to_string())
    }

    async fn render(
        &self,
        rule: usize,
        header: &HeaderName,
        template: &Template,
        source: &SpiffeId,
        used: &mut SmallVec<[(CredentialName, std::time::SystemTime); 2]>,
    ) -> Result<HeaderValue, RewriteError> {
        let fail = |why: String| RewriteError::Credential { rule, header: header.clone(), why };
        // Secrets are fetched first (shared, not copied) so that the value is made in one
        // buffer of its exact size.
        let mut secrets = SmallVec::<[Secret; 2]>::new();
        for part in &template.parts {
            let secret = match part {
                Part::Literal(_) | Part::SpiffeId => continue,
                Part::File(path) => self.files.get(path).map_err(|e| fail(e.to_string()))?,
                Part::Env(var) => self.env.get(var).cloned().ok_or_else(|| fail(format!("environment variable {var} was not read at start")))?,
                Part::JwtSvid(audience) => self.jwt.token(source, audience).map_err(|e| fail(e.to_string()))?,
                Part::Credential(name) => {
                    let fetched = self.exchanged(name, source).await.map_err(fail)?;
                    used.push((name.clone(), fetched.expires));
                    match fetched.credential {
                        Exchanged::Bearer(token) => token,
                        Exchanged::Aws(_) => return Err(fail(format!("credential `{name}` gives AWS credentials, not a token: use aws_sigv4"))),
                    }
                }
            };
            secrets.push(secret);
        }
        let literal = |part| literal_bytes(part, source);
        let len = template.parts.iter().filter_map(literal).map(<[u8]>::len).sum::<usize>() + secrets.iter().map(|s| s.expose().len()).sum::<usize>();
        let mut out = Vec::with_capacity(len);
        let mut secret = secrets.iter();
        for part in &template.parts {
            match literal(part) {
                Some(bytes) => out.extend_from_slice(bytes),
                None => out.extend_from_slice(secret.next().map(Secret::expose).unwrap_or_default()),
            }
        }
        // Every part was validated as header-safe; this cannot fail, but never panic on it.
        let mut value =
            HeaderValue::from_maybe_shared(bytes::Bytes::from(out)).map_err(|_| fail("rendered value is not a valid header value".into()))?;
        // Keeps the value out of HPACK's dynamic table (and out of Debug output).
        value.set_sensitive(!secrets.is_empty());
        Ok(value)
    }
}

/// A template part's bytes, unless it is a secret.
fn literal_bytes<'a>(part: &'a Part, source: &'a SpiffeId) -> Option<&'a [u8]> {
    match part {
        Part::Literal(text) => Some(text.as_bytes()),
        Part::SpiffeId => Some(source.as_str().as_bytes()),
        _ => None,
    }
}

/// Every host a request names, without port, lower case: its target's authority (HTTP/2's
/// :authority, HTTP/1's absolute form) and each Host header; and which of them rules select
/// on: the target's, else the first Host header's if it parses. An unparsable Host header is
/// returned as it is, so that it can never pass for the destination's name.
pub fn request_hosts(parts: &Parts) -> (Vec<String>, Option<usize>) {
    let mut out: Vec<String> = parts.uri.host().map(|h| h.to_ascii_lowercase()).into_iter().collect();
    let mut selected = (!out.is_empty()).then_some(0);
    for (n, value) in parts.headers.get_all(HOST).iter().enumerate() {
        let parsed = value.to_str().ok().and_then(|v| v.parse::<http::uri::Authority>().ok()).map(|a| a.host().to_ascii_lowercase());
        if n == 0 && selected.is_none() && parsed.is_some() {
            selected = Some(out.len());
        }
        let host = parsed.unwrap_or_else(|| String::from_utf8_lossy(value.as_bytes()).to_ascii_lowercase());
        if !out.contains(&host) {
            out.push(host);
        }
    }
    (out, selected)
}

/// Whether `rule` can apply on `flow`'s destination: its cidrs and ports hold it, and its
/// `host`, if any, is one of the destination's names or its address.
fn for_destination(rule: &HttpRule, flow: &Flow<'_>) -> bool {
    let port_ok = rule.ports.is_empty() || rule.ports.iter().any(|p| p.contains(flow.dst.port()));
    let addr_ok = rule.cidrs.is_empty() || rule.cidrs.iter().any(|c| c.contains(&flow.dst.ip()));
    let named = || {
        rule.host.as_ref().is_none_or(|h| {
            let ip = flow.dst.ip();
            h.matches(&ip.to_string()) || h.matches(&format!("[{ip}]")) || flow.names.iter().any(|n| n.overlaps(h))
        })
    };
    port_ok && addr_ok && named()
}

/// Whether a request selects a rule that is for its destination: by its host and path.
fn request_matches(rule: &HttpRule, host: Option<&str>, path: &str) -> bool {
    let host_ok = match (&rule.host, host) {
        (None, _) => true,
        (Some(pattern), Some(h)) => pattern.matches(h),
        (Some(_), None) => false,
    };
    host_ok && rule.path_prefix.as_ref().is_none_or(|p| path.starts_with(p.0.as_str()))
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
