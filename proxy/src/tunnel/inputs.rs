//! What both directions of the data path share on one host, handed down once: every worker's
//! outbound side and the inbound side hold the same `ProxyInputs` instead of a copy of each
//! part wired in field by field.
use crate::credential::Credentials;
use crate::observe::decisions::DecisionLog;
use crate::observe::flows::FlowRegistry;
use crate::observe::metrics::Metrics;
use crate::observe::trail::Trail;
use crate::policy::live::Live;
use std::sync::Arc;

pub struct ProxyInputs {
    /// This host's name, as flow ids and trail records carry it.
    pub host: String,
    pub credentials: Arc<Credentials>,
    /// The policy in force and the deny list (a reload swaps them).
    pub live: Arc<Live>,
    /// The mark on idgate's own connections, which the table lets pass.
    pub mark: u32,
    pub decisions: Arc<DecisionLog>,
    pub metrics: Arc<Metrics>,
    /// Open flows in both directions, and the trail they leave when they end.
    pub registry: Arc<FlowRegistry>,
    pub trail: Arc<Trail>,
}
