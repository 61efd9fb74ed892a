//! Reload: the config file is read again and its policy swapped in while flows run (SIGHUP,
//! `systemctl reload`, `idgate reload`), and the deny list is re-read whenever its file
//! changes (`idgate revoke`, or the fleet's own distribution of the file). Open flows that the
//! new policy or list denies are closed at once, each with a decision record saying why. A
//! file that does not validate changes nothing: its errors are logged with their line, and the
//! policy in force stays.
use crate::config::deny_list::DenyListError;
use crate::config::{Config, InboundMode, Intercept, RevocationConfig};
use crate::credential::deny_list::Revocations;
use crate::credential::Credentials;
use crate::identity::Identities;
use crate::intercept::guard::{self, Redirect};
use crate::intercept::Ruleset;
use crate::observe::decisions::{Decision, DecisionLog};
use crate::observe::flows::{FlowRegistry, OpenFlow};
use crate::observe::Verdict;
use crate::policy::live::{Live, Policy};
use crate::tunnel::pool::Pool;
use parking_lot::Mutex;
use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Top-level keys whose changes a reload applies; a change anywhere else waits for a restart.
const LIVE_KEYS: &[&str] = &["workload", "outbound", "inbound", "http_rule", "credential", "default_action", "revocation", "ca"];
/// Keys of other sections that a reload applies (the workload rules' runtime API).
const LIVE_SECTION_KEYS: &[&str] = &["containers.runtime_api"];

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(crate::config::ConfigErrors),
    #[error("revocation: {0}")]
    DenyList(#[from] DenyListError),
    #[error("trust_domain changed to {0}: that takes a restart (and new certificates)")]
    TrustDomain(String),
    #[error("{}: {source:#}", path.display())]
    Policy { path: PathBuf, source: anyhow::Error },
    #[error("the new CA or trust bundle: {0:#}")]
    Authority(anyhow::Error),
    #[error("reconfiguring the {backend} identity backend: {source:#}")]
    Backend { backend: &'static str, source: anyhow::Error },
    #[error("{0:#}")]
    Table(anyhow::Error),
}

/// A reload's new state, built and checked, nothing of it in force yet.
struct Staged {
    config: Config,
    revoked: Revocations,
    policy: Policy,
    ruleset: Ruleset,
    authority: Option<crate::credential::StagedAuthority>,
    ca_digest: Vec<u8>,
    ca_replaced: bool,
    table_changed: bool,
}

fn log_refusal(why: &ReloadError) {
    for line in why.to_string().lines() {
        tracing::error!("reload refused, the config in force stays: {line}");
    }
}

/// What a reload (or a re-read of the deny list) did.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    pub generation: u64,
    pub closed_flows: usize,
    pub closed_connections: usize,
    pub dropped_svids: usize,
    pub revoked_entries: usize,
    /// Settings that changed in the file but apply only at the next start.
    pub restart_needed: Vec<String>,
    pub table_changed: bool,
    /// The CA or trust bundle changed (a rotation): this host's SVIDs are re-minted under it.
    pub ca_replaced: bool,
    pub elapsed_us: u64,
}

/// What stays fixed for the life of the process, and what a reload compares against.
pub struct Fixed {
    pub path: PathBuf,
    pub exchanges: Arc<crate::http::exchange::Exchanges>,
    pub identity_header: http::HeaderName,
    pub intercept: Intercept,
    pub mode: InboundMode,
    pub state_dir: PathBuf,
    pub redirect: Redirect,
    /// The capture port listens on every address (for flows routed through this host).
    pub routed_listeners: bool,
}

/// What the data path shares with reloads.
pub struct Parts {
    pub live: Arc<Live>,
    pub identities: Arc<Identities>,
    pub credentials: Arc<Credentials>,
    pub pools: Vec<Arc<Pool>>,
    pub registry: Arc<FlowRegistry>,
    pub decisions: Arc<DecisionLog>,
    pub keeper: Arc<crate::intercept::Keeper>,
}

struct Running {
    /// The file as last applied, to name the changes a reload cannot apply.
    table: toml::Table,
    ruleset: Ruleset,
    revocation: RevocationConfig,
    /// The deny-list file as last read (inode, size, mtime), to notice a change.
    stamp: Option<(u64, u64, i64, i64)>,
    /// A digest of the CA's and trust bundle's files as last loaded.
    ca_digest: Vec<u8>,
    generation: u64,
}

pub struct Reloader {
    fixed: Fixed,
    parts: Parts,
    running: Mutex<Running>,
    /// After an upgrade's handover: this process only drains, so a reload changes its policy
    /// and deny list for its open flows, and leaves the tables, the identity backend, the CA
    /// and the service manager to the process that serves.
    retired: std::sync::atomic::AtomicBool,
}

fn stamp(path: Option<&Path>) -> Option<(u64, u64, i64, i64)> {
    let m = std::fs::metadata(path?).ok()?;
    Some((m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
}

fn file_table(path: &Path) -> toml::Table {
    std::fs::read_to_string(path).ok().and_then(|t| t.parse::<toml::Table>().ok()).unwrap_or_default()
}

/// What the CA's files and the trust bundle's hold (a rotation may rewrite them in place).
fn ca_digest(config: &Config) -> Vec<u8> {
    let mut d = ring::digest::Context::new(&ring::digest::SHA256);
    let (cert, key) = match config.ca.source {
        crate::config::CaSource::Embedded => {
            (config.state_dir.join(crate::credential::CA_CERT_FILE), config.state_dir.join(crate::credential::CA_KEY_FILE))
        }
        crate::config::CaSource::Files => (config.ca.cert.clone().unwrap_or_default(), config.ca.key.clone().unwrap_or_default()),
    };
    for path in [&cert, &key].into_iter().chain(&config.ca.trust_bundle) {
        d.update(path.as_os_str().as_encoded_bytes());
        d.update(&std::fs::read(path).unwrap_or_default());
    }
    d.finish().as_ref().to_vec()
}

/// The settings outside `LIVE_KEYS` that differ, as `section.key`.
fn restart_needed(old: &toml::Table, new: &toml::Table) -> Vec<String> {
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let mut changed = Vec::new();
    for key in keys.into_iter().filter(|k| !LIVE_KEYS.contains(&k.as_str())) {
        let empty = toml::Value::Table(toml::Table::new());
        let (a, b) = (old.get(key), new.get(key));
        // A section added or removed: name its keys, as for one that changed.
        let (a, b) = match (a, b) {
            (None, Some(toml::Value::Table(_))) => (Some(&empty), b),
            (Some(toml::Value::Table(_)), None) => (a, Some(&empty)),
            other => other,
        };
        match (a, b) {
            (Some(toml::Value::Table(a)), Some(toml::Value::Table(b))) => {
                let inner: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
                changed.extend(inner.into_iter().filter(|k| a.get(*k) != b.get(*k)).map(|k| format!("{key}.{k}")));
            }
            (a, b) if a != b => changed.push(key.clone()),
            _ => {}
        }
    }
    changed.retain(|k| !LIVE_SECTION_KEYS.contains(&k.as_str()));
    changed
}

impl Reloader {
    /// `config` is the one the process started with; `ruleset` the table it installed.
    pub fn new(fixed: Fixed, parts: Parts, config: &Config, ruleset: Ruleset) -> Arc<Self> {
        let running = Running {
            table: file_table(&fixed.path),
            ruleset,
            revocation: config.revocation.clone(),
            stamp: stamp(config.revocation.file.as_deref()),
            ca_digest: ca_digest(config),
            generation: parts.live.policy().generation,
        };
        Arc::new(Reloader { fixed, parts, running: Mutex::new(running), retired: Default::default() })
    }

    /// Reads the config file again and applies it, or changes nothing and says why. A reload
    /// that applied reaches the processes still draining after an upgrade too (through the
    /// main process), so that a tightened policy closes their flows as well.
    pub fn reload(&self) -> Result<Report, ReloadError> {
        if self.is_retired() {
            return self.apply_file();
        }
        crate::runtime::service::reloading();
        let result = self.apply_file();
        match &result {
            Ok(r) => {
                crate::runtime::service::reloaded(&format!("ready: policy generation {}", r.generation));
                crate::control::main_process::reload_draining();
            }
            Err(_) => crate::runtime::service::reloaded("ready: the last reload was refused, the config in force stays"),
        }
        result
    }

    /// This process handed over to an upgrade's successor (see `retired`).
    pub fn retire(&self) {
        self.retired.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn is_retired(&self) -> bool {
        self.retired.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn apply_file(&self) -> Result<Report, ReloadError> {
        let started = Instant::now();
        let mut running = self.running.lock();
        let staged = self.stage(&running).inspect_err(log_refusal)?;
        if staged.table_changed {
            self.change_table(&staged.config, &staged.ruleset).inspect_err(log_refusal)?;
        }
        let Staged { config, revoked, policy, ruleset, authority, ca_digest, ca_replaced, table_changed } = staged;
        if let Some(staged) = authority {
            self.parts.credentials.commit_authority(staged);
        }
        let generation = policy.generation;
        let table = file_table(&self.fixed.path);
        let mut report =
            Report { generation, table_changed, ca_replaced, restart_needed: restart_needed(&running.table, &table), ..Report::default() };
        if !self.fixed.routed_listeners && config.routes_flows() {
            report.restart_needed.push("workload.interface (flows routed through this host need the capture port on every address)".into());
        }
        report.revoked_entries = revoked.len();
        self.parts.live.set_policy(policy);
        self.parts.live.set_revoked(revoked);
        self.enforce("reload", &mut report);
        running.table = table;
        running.ruleset = ruleset;
        running.stamp = stamp(config.revocation.file.as_deref());
        running.ca_digest = ca_digest;
        running.revocation = config.revocation;
        running.generation = generation;
        report.elapsed_us = started.elapsed().as_micros() as u64;
        let later = if report.restart_needed.is_empty() {
            String::new()
        } else {
            format!("; apply at the next restart: {}", report.restart_needed.join(", "))
        };
        tracing::info!(generation, closed_flows = report.closed_flows, table_changed, "config reloaded from {}{later}", self.fixed.path.display());
        Ok(report)
    }

    /// Everything of a reload that can fail without touching anything in force: the file
    /// read and checked, the policy built, the new CA's SVID minted and self-tested.
    fn stage(&self, running: &Running) -> Result<Staged, ReloadError> {
        let mut config = crate::control::preflight::load_checked(&self.fixed.path).map_err(ReloadError::Config)?;
        let revoked = Revocations::new(config.revocation.entries()?);
        if config.trust_domain.0 != self.parts.credentials.bundle().trust_domain {
            return Err(ReloadError::TrustDomain(config.trust_domain.0));
        }
        let ca_digest = ca_digest(&config);
        let ca_replaced = ca_digest != running.ca_digest && !self.is_retired();
        let generation = running.generation + 1;
        let policy = Policy::build(&config, self.fixed.identity_header.clone(), self.fixed.exchanges.clone(), generation)
            .map_err(|source| ReloadError::Policy { path: self.fixed.path.clone(), source })?;
        // The table follows the new destinations and protected ports; its name, marks, port
        // and mode are the running process's.
        config.mode = self.fixed.mode;
        config.intercept = self.fixed.intercept.clone();
        let mut ruleset = guard::ruleset(&config, self.fixed.redirect);
        ruleset.redirect_port = running.ruleset.redirect_port;
        // Which addresses are containers' decides the listeners and the identity backend too.
        ruleset.container_networks = running.ruleset.container_networks.clone();
        let table_changed = ruleset != running.ruleset && !self.is_retired();
        let authority = ca_replaced
            .then(|| {
                crate::credential::authority::load_authority(&config).and_then(|(ca, bundle)| self.parts.credentials.stage_authority(ca, bundle))
            })
            .transpose()
            .map_err(ReloadError::Authority)?;
        Ok(Staged { config, revoked, policy, ruleset, authority, ca_digest, ca_replaced, table_changed })
    }

    /// The kernel's side of a reload: the identity backend's destinations, then the table;
    /// the first is put back if the second fails. (One transaction: the CA is committed only
    /// after this, and committing cannot fail.)
    fn change_table(&self, config: &Config, ruleset: &Ruleset) -> Result<(), ReloadError> {
        let backend = self.parts.identities.backend();
        backend.reconfigure(&config.outbound, &self.fixed.intercept).map_err(|source| ReloadError::Backend { backend: backend.name(), source })?;
        if let Err(e) = self.parts.keeper.apply(ruleset) {
            let old = self.parts.live.policy();
            if let Err(back) = backend.reconfigure(&old.routes, &self.fixed.intercept) {
                tracing::error!(error = %format!("{back:#}"), "restoring the identity backend's destinations");
            }
            return Err(ReloadError::Table(e));
        }
        if let Err(e) = guard::save_snapshot(&self.fixed.state_dir, ruleset) {
            tracing::warn!(error = %format!("{e:#}"), "could not record the table for `idgate guard` at boot");
        }
        Ok(())
    }

    /// Re-reads the deny list (its file and the config's inline entries as last applied).
    pub fn revocations(&self) -> Result<Report, DenyListError> {
        let started = Instant::now();
        let mut running = self.running.lock();
        running.stamp = stamp(running.revocation.file.as_deref());
        let revoked = match running.revocation.entries() {
            Ok(entries) => Revocations::new(entries),
            Err(e) => {
                tracing::error!("deny list not re-read, the one in force stays: {e}");
                return Err(e);
            }
        };
        let mut report = Report { generation: running.generation, revoked_entries: revoked.len(), ..Report::default() };
        self.parts.live.set_revoked(revoked);
        self.enforce("revocation", &mut report);
        report.elapsed_us = started.elapsed().as_micros() as u64;
        tracing::info!(
            entries = report.revoked_entries,
            closed_flows = report.closed_flows,
            closed_connections = report.closed_connections,
            dropped_svids = report.dropped_svids,
            "deny list applied"
        );
        Ok(report)
    }

    /// Whether the deny-list file changed since it was last read.
    pub fn revocations_changed(&self) -> bool {
        let running = self.running.lock();
        stamp(running.revocation.file.as_deref()) != running.stamp
    }

    /// Closes what the policy and deny list in force no longer allow: open flows (with a
    /// decision record each: their own identity or certificate, or any certificate of their
    /// peer's chain), pooled tunnel connections of revoked identities or to revoked peers (with
    /// every stream on them), and revoked identities' SVIDs; then inbound tunnel connections of
    /// revoked callers close themselves (`Live::revocations_enforced`).
    /// The list is swapped in before this runs: a flow or connection that registers meanwhile
    /// checks it itself (`FlowRegistry::register_checked`, `Pool::lease`).
    fn enforce(&self, cause: &'static str, report: &mut Report) {
        let policy = self.parts.live.policy();
        let revoked = self.parts.live.revoked();
        report.closed_flows = self.parts.registry.close_where(|flow| {
            let why = denial(&policy, &revoked, flow)?;
            let mut d = Decision::new(flow.facts.direction, flow.facts.id.clone());
            d.verdict = Verdict::Closed;
            d.source_id = flow.facts.source.as_ref().map(|s| s.to_string());
            d.process_info = flow.facts.process.clone();
            d.process = flow.facts.process.as_ref().map(|p| format!("{}({})", p.exe, p.tgid));
            d.destination = flow.facts.destination.to_string();
            d.detail = Some(format!("{cause}: {why}"));
            self.parts.decisions.record(d);
            Some(format!("{cause}: {why}"))
        });
        if !revoked.is_empty() {
            report.closed_connections = self
                .parts
                .pools
                .iter()
                .map(|p| p.close_where(|key, peer| revoked.id(&key.source) || peer.is_some_and(|chain| revoked.why_chain(chain).is_some())))
                .sum();
            report.dropped_svids = self.parts.credentials.forget(|id, serial| revoked.id(id) || revoked.serial(serial)).len();
        }
        self.parts.live.revocations_enforced();
    }
}

/// Why `flow` may not go on under `policy` and `revoked`, if it may not.
fn denial(policy: &Policy, revoked: &Revocations, flow: &OpenFlow) -> Option<String> {
    let f = &flow.facts;
    if let Some(why) = flow.revoked_by(revoked) {
        return Some(why);
    }
    let port = f.destination.port();
    match f.direction {
        "inbound" => {
            let id = f.source.as_ref()?;
            // A flow to a backend was let in as one; any other went to this host.
            let local = !policy.authorizer.forwards_to(&f.destination);
            (!policy.authorizer.allows(&f.destination, local, id)).then(|| format!("{id} is no longer allowed to reach {}", f.destination))
        }
        direction => {
            // Outbound and local flows: the process's identity under the new workload rules.
            let process = f.process.as_ref()?;
            let now = match &process.routed_from {
                Some(r) => policy.selector.site(&r.interface, &r.address),
                None => policy.selector.select(process),
            };
            match (&f.source, now) {
                (Some(was), Some(now)) if *was != now => Some(format!("the process is now {now}, not {was}")),
                (Some(was), None) => Some(format!("the process matches no workload rule any more (it was {was})")),
                (None, Some(now)) => Some(format!("the process is now {now}: its flows must be tunnelled")),
                (None, None) if policy.default_action == crate::config::DefaultAction::Deny => {
                    Some("the process matches no workload rule and default_action is now \"deny\"".into())
                }
                (Some(id), Some(_)) if direction == "local" && !policy.authorizer.allows(&f.destination, true, id) => {
                    Some(format!("{id} is no longer allowed to reach local port {port}"))
                }
                _ => None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::restart_needed;

    #[test]
    fn names_each_setting_that_waits_for_a_restart() {
        let old: toml::Table = "mode = \"strict\"\n[listen]\ninbound = \"0.0.0.0:15008\"\n[[inbound]]\nports = [1]\n".parse().unwrap();
        let new: toml::Table =
            "mode = \"permissive\"\n[listen]\ninbound = \"0.0.0.0:15009\"\n[tunnel]\npeer_timeout = \"9s\"\n[[inbound]]\nports = [2]\n"
                .parse()
                .unwrap();
        assert_eq!(restart_needed(&old, &new), ["listen.inbound", "mode", "tunnel.peer_timeout"]);
        assert!(restart_needed(&old, &old).is_empty());
    }
}
