//! Prometheus metrics served on the admin listener.
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    pub verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub direction: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub backend: &'static str,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KeyExchangeLabels {
    /// "client" (this host dialled) or "server" (a peer dialled this host).
    pub side: &'static str,
    pub group: &'static str,
}

/// Tunnel handshakes by the key exchange group they used: whether the fleet is post-quantum yet.
pub type KeyExchanges = Family<KeyExchangeLabels, Counter>;

pub struct Metrics {
    /// Tunnel handshakes by side and key exchange group.
    pub key_exchanges: KeyExchanges,
    /// 1 for the identity backend in use, labelled with why (a fleet alerts on fallbacks).
    pub identity_backend: Family<BackendLabels, Gauge>,
    pub handshakes_refused: Family<ReasonLabels, Counter>,
    pub http_requests: Family<HttpLabels, Counter>,
    pub outbound_flows: Family<VerdictLabels, Counter>,
    pub inbound_flows: Family<VerdictLabels, Counter>,
    pub bytes_out: Counter,
    pub bytes_in: Counter,
    pub active_flows: Gauge,
    /// Process events dropped because the runtime did not keep up (see `prewarm`).
    pub process_events_dropped: Counter,
    /// Unix times: when this host's CA expires, and the earliest expiry in the trust bundle.
    pub ca_expiry: Gauge,
    pub trust_bundle_expiry: Gauge,
    pub registry: Registry,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("idgate");
        let outbound_flows = Family::<VerdictLabels, Counter>::default();
        let inbound_flows = Family::<VerdictLabels, Counter>::default();
        let bytes_out = Counter::default();
        let bytes_in = Counter::default();
        let active_flows = Gauge::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        let handshakes_refused = Family::<ReasonLabels, Counter>::default();
        let identity_backend = Family::<BackendLabels, Gauge>::default();
        let key_exchanges = KeyExchanges::default();
        registry.register(
            "tunnel_key_exchanges",
            "Tunnel handshakes by side (client: this host dialled) and key exchange group (X25519MLKEM768 is post-quantum)",
            key_exchanges.clone(),
        );
        registry.register("identity_backend", "The identity backend in use (1), and why it is the one", identity_backend.clone());
        registry.register(
            "tunnel_handshakes_refused",
            "Tunnel connections refused before or during their handshake, by reason",
            handshakes_refused.clone(),
        );
        registry.register("http_requests", "Requests on the HTTP-aware path by direction and answer status", http_requests.clone());
        registry.register("active_flows", "Flows being forwarded now, both directions", active_flows.clone());
        registry.register("outbound_flows", "Intercepted outbound flows by verdict", outbound_flows.clone());
        registry.register("inbound_flows", "Tunneled inbound flows by verdict", inbound_flows.clone());
        registry.register("tunnel_bytes_out", "Bytes from local workloads into tunnels", bytes_out.clone());
        registry.register("tunnel_bytes_in", "Bytes from tunnels to local workloads", bytes_in.clone());
        let process_events_dropped = Counter::default();
        registry.register(
            "process_events_dropped",
            "Process events dropped because their queue to the runtime was full",
            process_events_dropped.clone(),
        );
        let ca_expiry = Gauge::default();
        let trust_bundle_expiry = Gauge::default();
        registry.register(
            "ca_expiry_timestamp_seconds",
            "When this host's CA certificate expires (Unix time): no SVID outlives it",
            ca_expiry.clone(),
        );
        registry.register(
            "trust_bundle_expiry_timestamp_seconds",
            "When the first certificate of the trust bundle files expires (Unix time; 0 without a bundle file)",
            trust_bundle_expiry.clone(),
        );
        Metrics {
            key_exchanges,
            identity_backend,
            handshakes_refused,
            http_requests,
            outbound_flows,
            inbound_flows,
            bytes_out,
            bytes_in,
            active_flows,
            process_events_dropped,
            ca_expiry,
            trust_bundle_expiry,
            registry,
        }
    }

    /// Counts a flow as active until the returned guard drops (drain waits for zero).
    pub fn flow_guard(&self) -> FlowGuard {
        self.active_flows.inc();
        FlowGuard(self.active_flows.clone())
    }

    pub fn outbound(&self, verdict: crate::observe::Verdict) {
        self.outbound_flows.get_or_create(&VerdictLabels { verdict: verdict.as_str() }).inc();
    }

    pub fn http_request(&self, direction: &'static str, status: http::StatusCode) {
        self.http_requests.get_or_create(&HttpLabels { direction, status: status.as_u16() }).inc();
    }

    pub fn identity_backend(&self, backend: &'static str, reason: &str) {
        self.identity_backend.get_or_create(&BackendLabels { backend, reason: reason.to_string() }).set(1);
    }

    pub fn handshake_refused(&self, reason: &'static str) {
        self.handshakes_refused.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// Sets the expiry gauges from the CA and trust bundle in force.
    pub fn expiries(&self, ca: Option<&crate::credential::expiry::CertExpiry>, bundle: &[crate::credential::expiry::CertExpiry]) {
        self.ca_expiry.set(ca.map_or(0, |c| c.not_after_unix as i64));
        self.trust_bundle_expiry.set(bundle.iter().map(|c| c.not_after_unix as i64).min().unwrap_or(0));
    }

    pub fn inbound(&self, verdict: crate::observe::Verdict) {
        self.inbound_flows.get_or_create(&VerdictLabels { verdict: verdict.as_str() }).inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

pub struct FlowGuard(Gauge);

impl Drop for FlowGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
