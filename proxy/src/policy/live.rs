//! The part of the config a reload replaces while flows run: which SPIFFE ID a process gets
//! (workload selectors), where its flows go and how (outbound routes, TLS origination, HTTP
//! rules, the default action), who may reach local services (inbound policy), and the deny
//! list. A flow takes one snapshot when it starts (an HTTP flow one per request); a reload
//! swaps the whole policy at once, so no flow ever sees half of one file and half of another.
use crate::config::{Config, DefaultAction, HostPattern, OutboundRule, PeerChoice};
use crate::credential::deny_list::{DenyList, Revocations};
use crate::http::exchange::Exchanges;
use crate::http::{Origin, Rewriter};
use crate::identity::Selector;
use crate::policy::authorize::Authorizer;
use crate::policy::routes::RouteIndex;
use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::sync::Arc;

pub struct Policy {
    /// Counts reloads: cached per-process identities of an older generation are re-decided.
    pub generation: u64,
    pub selector: Selector,
    pub default_action: DefaultAction,
    pub routes: Vec<OutboundRule>,
    /// `routes` indexed by destination: a new flow's route costs the same for 10 rules or 10,000.
    route_index: RouteIndex,
    /// Per route: the TLS origination set up from its `tls` block, if any.
    pub origins: Vec<Option<Arc<Origin>>>,
    /// Per route: the names its destination is known by (`OutboundRule::names`).
    pub names: Vec<Arc<[HostPattern]>>,
    pub rewriter: Arc<Rewriter>,
    pub authorizer: Authorizer,
}

impl Policy {
    /// Everything that can fail (TLS bundles, secret files) is done here, before a reload
    /// swaps anything in.
    /// `identity_header` is the running one (a setting that changes only at restart).
    pub fn build(config: &Config, identity_header: http::HeaderName, exchanges: Arc<Exchanges>, generation: u64) -> Result<Policy> {
        let rewriter = Rewriter::new(config.http_rules.clone(), identity_header, &config.credentials, exchanges)?;
        let origins = config
            .outbound
            .iter()
            .enumerate()
            .map(|(i, r)| r.tls.as_ref().map(|t| Origin::new(t).map(Arc::new).with_context(|| format!("outbound[{i}].tls"))).transpose())
            .collect::<Result<Vec<_>>>()?;
        Ok(Policy {
            generation,
            selector: Selector::with_runtime(config.workloads.clone(), config.containers.runtime_api.clone()),
            default_action: config.default_action,
            routes: config.outbound.clone(),
            route_index: RouteIndex::new(&config.outbound),
            origins,
            names: config.outbound.iter().map(|r| r.names().into()).collect(),
            rewriter: Arc::new(rewriter),
            authorizer: Authorizer::new(config.inbound.clone()),
        })
    }

    /// The first `[[outbound]]` rule covering `dst`, and the peer idgate that serves it.
    pub fn route(&self, dst: &SocketAddr) -> Option<(usize, SocketAddr)> {
        let i = self.route_index.find(dst.ip(), dst.port())?;
        let rule = &self.routes[i];
        Some((
            i,
            match rule.peer {
                PeerChoice::SameIp => SocketAddr::new(dst.ip(), rule.peer_port),
                PeerChoice::Fixed(addr) => addr,
            },
        ))
    }
}

/// The policy in force and the deny list, each swapped whole. The deny list has its own
/// slot: its file changes far more often than the config and is re-read on its own. The TLS
/// verifiers share it (see `DenyList`).
pub struct Live {
    policy: ArcSwap<Policy>,
    revoked: Arc<DenyList>,
    /// Ticks once a new deny list has been enforced on open flows: inbound tunnel connections
    /// then re-check their caller.
    revoked_changed: tokio::sync::watch::Sender<()>,
}

impl Live {
    pub fn new(policy: Policy, revoked: Arc<DenyList>) -> Arc<Self> {
        Arc::new(Live { policy: ArcSwap::from_pointee(policy), revoked, revoked_changed: tokio::sync::watch::Sender::new(()) })
    }

    /// Resolves (`changed()`) each time a new deny list has been enforced.
    pub fn revocations_changed(&self) -> tokio::sync::watch::Receiver<()> {
        self.revoked_changed.subscribe()
    }

    /// The deny list swapped in by `set_revoked` has been applied to open flows (each closed
    /// with its reason): connections of revoked callers may go now.
    pub fn revocations_enforced(&self) {
        self.revoked_changed.send_replace(());
    }

    /// The deny list's slot, for those that read it on their own (verifiers, the pool).
    pub fn deny_list(&self) -> &Arc<DenyList> {
        &self.revoked
    }

    pub fn policy(&self) -> Arc<Policy> {
        self.policy.load_full()
    }

    pub fn revoked(&self) -> Arc<Revocations> {
        self.revoked.load_full()
    }

    pub fn set_policy(&self, policy: Policy) {
        self.policy.store(Arc::new(policy));
    }

    pub fn set_revoked(&self, revoked: Revocations) {
        self.revoked.store(Arc::new(revoked));
    }
}
