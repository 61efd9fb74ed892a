//! Holds every SVID this host uses: one per workload SPIFFE ID (minted on first use) and the
//! inbound side's own. Each carries a pre-built TLS client config, so a new pooled
//! connection costs a handshake and nothing else. A background task rotates each between half
//! and seven tenths of its life (`svid::rotation_point`).
use super::ca::CertificateAuthority;
use super::svid::Svid;
use super::verify::{IdgateClientVerifier, IdgateServerVerifier, TrustBundle};
use super::ALPN_H2;
use crate::credential::deny_list::DenyList;
use crate::spiffe::SpiffeId;
use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use parking_lot::RwLock;
use rustls::client::ResolvesClientCert;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ServerConfig, SignatureScheme};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A workload's current SVID plus everything derived from it.
pub struct Issued {
    pub svid: Svid,
    pub client_config: Arc<ClientConfig>,
    last_used: AtomicU64,
}

#[derive(Clone, serde::Serialize)]
pub struct SvidSummary {
    pub spiffe_id: String,
    pub serial: String,
    pub not_after_unix: u64,
    /// IP SANs: the addresses a host SVID may be dialled on (empty for workloads).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<IpAddr>,
}

/// Which addresses this host's inbound SVID names.
pub enum HostAddresses {
    /// `[svid] addresses`, as configured.
    Configured(Vec<IpAddr>),
    /// The host's reachable interface addresses, re-read at every rotation check: the SVID is
    /// re-minted when they change.
    Interfaces,
}

impl HostAddresses {
    /// Never empty: a host without a reachable address is dialled on loopback only.
    pub fn current(&self) -> Vec<IpAddr> {
        let mut v = match self {
            HostAddresses::Configured(v) => v.clone(),
            HostAddresses::Interfaces => crate::sys::netif::reachable(),
        };
        v.sort();
        v.dedup();
        if v.is_empty() {
            v.push(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
        }
        v
    }
}

/// What a CA rotation replaces at once: the CA that SVIDs are minted under, the roots peers
/// are verified against, and the TLS configs built from them.
struct Authority {
    ca: CertificateAuthority,
    bundle: Arc<TrustBundle>,
    verifier: Arc<IdgateServerVerifier>,
    server_config: Arc<ServerConfig>,
}

impl Authority {
    /// Both sides' verifiers read the deny list in force at every handshake (`revoked`).
    fn new(
        ca: CertificateAuthority,
        bundle: Arc<TrustBundle>,
        provider: &Arc<rustls::crypto::CryptoProvider>,
        server_cert: Arc<ServerCertSlot>,
        revoked: &Arc<DenyList>,
    ) -> Result<Self> {
        let verifier = Arc::new(IdgateServerVerifier::new(&bundle, provider.clone(), revoked.clone()));
        let client_verifier = Arc::new(IdgateClientVerifier::new(&bundle, provider.clone(), revoked.clone())?);
        let mut server_config = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(client_verifier)
            .with_cert_resolver(server_cert);
        server_config.alpn_protocols = vec![ALPN_H2.to_vec()];
        // No resumption: a resumed session skips certificate verification, so a ticket would let
        // a rotated-out SVID back in, and pooled tunnel connections are long-lived anyway. It also
        // spares every first handshake the ticket round (two encrypted tickets sent, stored).
        server_config.send_tls13_tickets = 0;
        Ok(Authority { ca, bundle, verifier, server_config: Arc::new(server_config) })
    }
}

/// A CA and trust bundle ready to be put in force (`Credentials::stage_authority`).
pub struct StagedAuthority {
    authority: Authority,
    svid: Svid,
}

pub struct Credentials {
    authority: ArcSwap<Authority>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    revoked: Arc<DenyList>,
    ttl: Duration,
    workloads: RwLock<HashMap<SpiffeId, Arc<Issued>>>,
    server_id: SpiffeId,
    server_addresses: HostAddresses,
    pub(super) server_cert: Arc<ServerCertSlot>,
    server_svid_meta: RwLock<SvidSummary>,
    generation: AtomicU64,
    pub minted: AtomicU64,
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

impl Credentials {
    /// With the tunnel's default key exchange groups. `revoked` is the deny list's slot,
    /// shared with the policy (`Live`): peers are checked against the list in force when they
    /// connect.
    pub fn new(
        ca: CertificateAuthority,
        bundle: TrustBundle,
        server_id: SpiffeId,
        server_addresses: HostAddresses,
        ttl: Duration,
        revoked: Arc<DenyList>,
    ) -> Result<Self> {
        let groups = crate::config::TunnelConfig::default().key_exchange;
        Self::with_key_exchange(ca, bundle, server_id, server_addresses, ttl, groups.as_slice(), revoked)
    }

    /// `groups`: the key exchange groups tunnel handshakes offer, most preferred first.
    pub fn with_key_exchange(
        ca: CertificateAuthority,
        bundle: TrustBundle,
        server_id: SpiffeId,
        server_addresses: HostAddresses,
        ttl: Duration,
        groups: &[crate::config::KeyExchange],
        revoked: Arc<DenyList>,
    ) -> Result<Self> {
        let provider = super::crypto_provider(groups);
        let server_svid = Svid::mint(&ca, &server_id, &server_addresses.current(), ttl, 0)?;
        let server_cert = Arc::new(ServerCertSlot(RwLock::new(server_svid.certified.clone())));
        let authority = Authority::new(ca, Arc::new(bundle), &provider, server_cert.clone(), &revoked)?;
        let creds = Credentials {
            authority: ArcSwap::from_pointee(authority),
            provider,
            revoked,
            ttl,
            workloads: RwLock::new(HashMap::new()),
            server_id,
            server_addresses,
            server_cert,
            server_svid_meta: RwLock::new(summary(&server_svid)),
            generation: AtomicU64::new(1),
            minted: AtomicU64::new(1),
        };
        Ok(creds)
    }

    /// A CA rotation, first half: this host's inbound SVID minted under `ca` and checked in a
    /// self-test against `bundle`, the TLS configs built; nothing in force changes. A reload
    /// that fails later just drops what this returns.
    pub fn stage_authority(&self, ca: CertificateAuthority, bundle: TrustBundle) -> Result<StagedAuthority> {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        let svid = Svid::mint(&ca, &self.server_id, &self.server_addresses.current(), self.ttl, generation)?;
        let trial_slot = Arc::new(ServerCertSlot(RwLock::new(svid.certified.clone())));
        let trial = Authority::new(ca, Arc::new(bundle), &self.provider, trial_slot, &self.revoked)?;
        self.self_test_with(&trial, svid.certified.clone(), svid.addresses.first().copied())
            .context("TLS self-test under the new CA and trust bundle")?;
        let Authority { ca, bundle, .. } = trial;
        let authority = Authority::new(ca, bundle, &self.provider, self.server_cert.clone(), &self.revoked)?;
        Ok(StagedAuthority { authority, svid })
    }

    /// A CA rotation, second half: SVIDs are minted under the staged CA from now on and peers
    /// verified against its bundle. This host's inbound SVID is the staged one; workload SVIDs
    /// are re-minted at their next flow. Pooled connections made under the old ones take no new
    /// flow (open flows on them go on), so new flows are made, and verified, under the new CA.
    pub fn commit_authority(&self, staged: StagedAuthority) {
        let StagedAuthority { authority, svid } = staged;
        self.authority.store(Arc::new(authority));
        *self.server_cert.0.write() = svid.certified.clone();
        *self.server_svid_meta.write() = summary(&svid);
        self.minted.fetch_add(1, Ordering::Relaxed);
        self.workloads.write().clear();
        tracing::info!(spiffe_id = %self.server_id, serial = %svid.serial, "CA and trust bundle replaced; inbound X.509-SVID re-minted");
    }

    /// A client config presenting `cert` under the CA and bundle in force (for tests).
    #[cfg(test)]
    pub(super) fn client_config_for_test(&self, cert: Arc<CertifiedKey>) -> Result<ClientConfig> {
        self.client_config_with(&self.authority.load(), cert)
    }

    /// The roots and trust domain peers are verified against now.
    pub fn bundle(&self) -> Arc<TrustBundle> {
        self.authority.load().bundle.clone()
    }

    /// What this host's CA may issue, if it is a host CA with a grant (`idgate ca issue`).
    pub fn grant(&self) -> Option<super::Grant> {
        self.authority.load().ca.grant.clone()
    }

    /// An in-memory mTLS handshake of this host with itself (see `selftest`): the client side
    /// presents the host's own SVID to the host's server config, dialling one of the
    /// addresses that SVID names. Checks that the peer certificate the server saw names our
    /// SPIFFE ID.
    pub fn self_test(&self) -> Result<()> {
        let dialled = self.server_svid_meta.read().addresses.first().copied();
        self.self_test_with(&self.authority.load(), self.server_cert.0.read().clone(), dialled)
    }

    fn self_test_with(&self, authority: &Authority, cert: Arc<CertifiedKey>, dialled: Option<std::net::IpAddr>) -> Result<()> {
        let client = self.client_config_with(authority, cert)?;
        let dialled = dialled.context("this host's SVID names no address")?;
        let leaf = super::selftest::handshake(Arc::new(client), authority.server_config.clone(), dialled)?;
        let seen = super::spiffe_id_of_cert(&leaf)?;
        anyhow::ensure!(seen == self.server_id, "the server saw {seen}, not {}", self.server_id);
        Ok(())
    }

    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.authority.load().server_config.clone()
    }

    pub fn server_id(&self) -> &SpiffeId {
        &self.server_id
    }

    /// The SVID for `id`, minted now if this identity has none yet (just in time).
    pub fn workload(&self, id: &SpiffeId) -> Result<Arc<Issued>> {
        let now = unix_secs(SystemTime::now());
        if let Some(issued) = self.workloads.read().get(id) {
            issued.last_used.store(now, Ordering::Relaxed);
            return Ok(issued.clone());
        }
        let mut map = self.workloads.write();
        if let Some(issued) = map.get(id) {
            return Ok(issued.clone()); // another flow minted it while we waited
        }
        let issued = Arc::new(self.issue(id)?);
        map.insert(id.clone(), issued.clone());
        Ok(issued)
    }

    fn issue(&self, id: &SpiffeId) -> Result<Issued> {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        let authority = self.authority.load();
        if let Some(grant) = authority.ca.grant.as_ref().filter(|g| !g.permits(id)) {
            // Peers would refuse it: fail here, saying why.
            anyhow::bail!("this host's CA may not issue {id} (it was granted: {grant}); re-issue it with `idgate ca issue --grant`");
        }
        let svid = Svid::mint(&authority.ca, id, &[], self.ttl, generation)?;
        self.minted.fetch_add(1, Ordering::Relaxed);
        let config = self.client_config_with(&authority, svid.certified.clone())?;
        tracing::info!(spiffe_id = %id, serial = %svid.serial, ttl_s = self.ttl.as_secs(), "minted X.509-SVID");
        Ok(Issued { svid, client_config: Arc::new(config), last_used: AtomicU64::new(unix_secs(SystemTime::now())) })
    }

    /// The tunnel's client side presenting `cert`: TLS 1.3, h2, peers checked by our verifier.
    fn client_config_with(&self, authority: &Authority, cert: Arc<CertifiedKey>) -> Result<ClientConfig> {
        let mut config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(authority.verifier.clone())
            .with_client_cert_resolver(Arc::new(FixedClientCert(cert)));
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        config.resumption = rustls::client::Resumption::disabled(); // see Credentials::new
        Ok(config)
    }

    /// Drops the workload SVIDs `doomed` picks (by SPIFFE ID and serial): a revoked identity's
    /// key leaves memory, and a revoked serial is replaced by a fresh SVID at the next flow.
    /// Returns the serials dropped.
    pub fn forget(&self, doomed: impl Fn(&SpiffeId, &str) -> bool) -> Vec<String> {
        let mut gone = Vec::new();
        self.workloads.write().retain(|id, issued| {
            let keep = !doomed(id, &issued.svid.serial);
            if !keep {
                gone.push(issued.svid.serial.clone());
            }
            keep
        });
        gone
    }

    /// Replaces SVIDs past their rotation point; forgets workload SVIDs unused for a whole TTL.
    /// Open connections keep the certificate they were made with.
    pub fn rotate_due(&self) {
        let now = SystemTime::now();
        let idle_cutoff = unix_secs(now).saturating_sub(self.ttl.as_secs().max(1));
        let due: Vec<(SpiffeId, bool)> = self
            .workloads
            .read()
            .iter()
            .filter(|(_, i)| i.svid.needs_rotation(now))
            .map(|(id, i)| (id.clone(), i.last_used.load(Ordering::Relaxed) < idle_cutoff))
            .collect();
        for (id, idle) in due {
            if idle {
                self.workloads.write().remove(&id);
                tracing::debug!(spiffe_id = %id, "dropped idle SVID");
                continue;
            }
            match self.issue(&id) {
                Ok(next) => {
                    tracing::info!(spiffe_id = %id, serial = %next.svid.serial, "rotated X.509-SVID");
                    self.workloads.write().insert(id, Arc::new(next));
                }
                Err(e) => tracing::error!(spiffe_id = %id, error = %e, "SVID rotation failed; keeping the current one"),
            }
        }
        let addresses = self.server_addresses.current();
        let server_due = {
            let meta = self.server_svid_meta.read();
            meta.not_after_unix.saturating_sub(unix_secs(now)) <= self.ttl.as_secs() / 2 || meta.addresses != addresses
        };
        if server_due {
            let generation = self.generation.fetch_add(1, Ordering::Relaxed);
            match Svid::mint(&self.authority.load().ca, &self.server_id, &addresses, self.ttl, generation) {
                Ok(svid) => {
                    self.minted.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(spiffe_id = %self.server_id, serial = %svid.serial, "rotated inbound X.509-SVID");
                    *self.server_cert.0.write() = svid.certified.clone();
                    *self.server_svid_meta.write() = summary(&svid);
                }
                Err(e) => tracing::error!(error = %e, "inbound SVID rotation failed; keeping the current one"),
            }
        }
    }

    /// How often the rotation task should look.
    /// Fine enough that renewals spread over a fifth of the TTL (see `rotation_point`) stay
    /// spread, rather than falling due together at the next check.
    pub fn rotation_check_interval(&self) -> Duration {
        (self.ttl / 200).clamp(Duration::from_millis(200), Duration::from_secs(5))
    }

    /// When this host's CA and the trust bundle files' certificates expire.
    pub fn expiries(&self) -> (Option<super::expiry::CertExpiry>, Vec<super::expiry::CertExpiry>) {
        let authority = self.authority.load();
        (super::expiry::CertExpiry::of(&authority.ca.cert_der), authority.bundle.expiries.clone())
    }

    pub fn summaries(&self) -> Vec<SvidSummary> {
        let mut v: Vec<SvidSummary> = self.workloads.read().values().map(|i| summary(&i.svid)).collect();
        v.push(self.server_svid_meta.read().clone());
        v
    }
}

fn summary(svid: &Svid) -> SvidSummary {
    SvidSummary {
        spiffe_id: svid.id.to_string(),
        serial: svid.serial.clone(),
        not_after_unix: unix_secs(svid.not_after),
        addresses: svid.addresses.clone(),
    }
}

/// The inbound certificate, swapped in place on rotation.
#[derive(Debug)]
pub(super) struct ServerCertSlot(pub(super) RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for ServerCertSlot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().clone())
    }
}

#[derive(Debug)]
struct FixedClientCert(Arc<CertifiedKey>);

impl ResolvesClientCert for FixedClientCert {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
