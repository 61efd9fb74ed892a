//! Credentials exchanged for the caller's identity (`[[credential]]`): OAuth access tokens and
//! AWS role credentials, fetched with a JWT that idgate signs for the calling workload, cached
//! per (source, identity), refreshed ahead of expiry in the background, one exchange at a time
//! per entry however many requests wait for it. A request whose credential cannot be had is
//! never sent without it (the rewriter answers 503 with the reason).
pub mod aws;
mod client;
mod oauth;
pub mod sigv4;

use super::secrets::Secret;
use super::JwtIssuer;
use crate::config::{CredentialKind, CredentialSource};
use crate::spiffe::SpiffeId;
use arc_swap::ArcSwapOption;
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Most (source, identity) entries kept; past it, expired entries go, then the oldest.
const MAX_ENTRIES: usize = 20_000;
/// A failed exchange is the answer for this long: requests queued behind it, and those that
/// follow, do not hammer a failing server.
const FAILURE_HOLD: Duration = Duration::from_secs(1);

/// What an exchange gives.
#[derive(Clone)]
pub enum Exchanged {
    /// An OAuth access token, sent as the template says (usually `Bearer ...`).
    Bearer(Secret),
    /// An AWS role's temporary credentials, for SigV4.
    Aws(Arc<aws::AwsCredentials>),
}

/// A credential and when it expires (what the trail says of it).
#[derive(Clone)]
pub struct Fetched {
    pub credential: Exchanged,
    pub expires: SystemTime,
}

/// A credential and how long it lasts from now.
pub struct Granted {
    pub credential: Exchanged,
    pub lifetime: Duration,
}

/// One `[[credential]]` ready to exchange with.
pub struct Source {
    pub config: CredentialSource,
    endpoint: client::Endpoint,
    /// The source's settings as text: a reload that changes them starts a new cache.
    fingerprint: Arc<str>,
}

impl Source {
    pub fn new(config: CredentialSource) -> anyhow::Result<Self> {
        let url = match config.kind {
            CredentialKind::AwsWebIdentity => crate::config::HttpsUrl::try_from(aws::endpoint(&config)).map_err(anyhow::Error::msg)?,
            _ => config.endpoint.clone().ok_or_else(|| anyhow::anyhow!("credential `{}` has no endpoint", config.name))?,
        };
        let endpoint = client::Endpoint::new(url, config.ca_bundle.as_deref()).map_err(|e| anyhow::anyhow!("credential `{}`: {e:#}", config.name))?;
        let fingerprint = format!("{config:?}").into();
        Ok(Source { config, endpoint, fingerprint })
    }
}

/// A source's settings (its fingerprint) and the caller.
type EntryKey = (Arc<str>, SpiffeId);

/// The exchanges' state across reloads: the cache and the counters.
pub struct Exchanges {
    jwt: Arc<JwtIssuer>,
    mark: u32,
    entries: Mutex<HashMap<EntryKey, Arc<Entry>>>,
    pub stats: Stats,
}

/// The exchanges' metrics (registered by the caller).
#[derive(Clone)]
pub struct Stats {
    pub exchanges: Counter,
    pub failures: Counter,
    pub cache_hits: Counter,
    /// How long exchanges take, in seconds.
    pub latency: Histogram,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            exchanges: Counter::default(),
            failures: Counter::default(),
            cache_hits: Counter::default(),
            latency: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 14)),
        }
    }
}

impl Stats {
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register("credential_exchanges", "Exchanges of a workload's identity for a [[credential]]", self.exchanges.clone());
        registry.register("credential_exchange_failures", "Exchanges that gave no credential (requests answered 503)", self.failures.clone());
        registry.register("credential_cache_hits", "Requests served a cached [[credential]]", self.cache_hits.clone());
        registry.register("credential_exchange_seconds", "How long exchanges took", self.latency.clone());
    }
}

#[derive(Default)]
struct Entry {
    held: ArcSwapOption<Held>,
    /// Held by the one exchange in flight; requests without a usable credential queue on it.
    fetching: tokio::sync::Mutex<Option<(Instant, String)>>,
    refreshing: AtomicBool,
}

struct Held {
    fetched: Fetched,
    /// Past this a new credential is fetched in the background, this one still served.
    refresh_at: Instant,
    /// Past this it is not sent any more.
    usable_until: Instant,
}

impl Held {
    fn new(granted: Granted) -> Self {
        let now = Instant::now();
        let life = granted.lifetime;
        // Unusable a little before it expires (clocks, transit); refreshed at three quarters.
        let margin = (life / 10).min(Duration::from_secs(30));
        let fetched = Fetched { credential: granted.credential, expires: SystemTime::now() + life };
        Held { fetched, refresh_at: now + life * 3 / 4, usable_until: now + life - margin }
    }
}

/// Why there is no credential (a message for the 503 and the trail: never a secret).
#[derive(Debug, thiserror::Error)]
#[error("credential `{source_name}`: {why}")]
pub struct ExchangeError {
    pub source_name: String,
    pub why: String,
}

impl Exchanges {
    pub fn new(jwt: Arc<JwtIssuer>, mark: u32, stats: Stats) -> Arc<Self> {
        Arc::new(Exchanges { jwt, mark, entries: Mutex::new(HashMap::new()), stats })
    }

    pub fn jwt(&self) -> &Arc<JwtIssuer> {
        &self.jwt
    }

    /// The credential of `source` for `caller`: cached, or exchanged now (once for every
    /// request that waits for it).
    pub async fn get(self: &Arc<Self>, source: &Arc<Source>, caller: &SpiffeId) -> Result<Fetched, ExchangeError> {
        let entry = self.entry(source, caller);
        let now = Instant::now();
        if let Some(held) = entry.held.load_full().filter(|h| now < h.usable_until) {
            self.stats.cache_hits.inc();
            if now >= held.refresh_at && !entry.refreshing.swap(true, Ordering::AcqRel) {
                let (this, source, caller, entry) = (self.clone(), source.clone(), caller.clone(), entry.clone());
                tokio::spawn(async move {
                    let mut failed = entry.fetching.lock().await;
                    let due = entry.held.load().as_ref().is_some_and(|h| Instant::now() >= h.refresh_at);
                    // A server that just failed is not asked again at every request meanwhile.
                    let held_off = failed.as_ref().is_some_and(|(at, _)| at.elapsed() < FAILURE_HOLD);
                    if due && !held_off {
                        if let Err(e) = this.fetch(&source, &caller, &entry, &mut failed).await {
                            tracing::warn!(source = %source.config.name, identity = %caller, error = %e.why, "credential refresh failed; the current one is served until it expires");
                        }
                    }
                    entry.refreshing.store(false, Ordering::Release);
                });
            }
            return Ok(held.fetched.clone());
        }
        let mut failed = entry.fetching.lock().await;
        if let Some(held) = entry.held.load_full().filter(|h| Instant::now() < h.usable_until) {
            self.stats.cache_hits.inc();
            return Ok(held.fetched.clone());
        }
        if let Some((_, why)) = failed.as_ref().filter(|(at, _)| at.elapsed() < FAILURE_HOLD) {
            return Err(ExchangeError { source_name: source.config.name.to_string(), why: why.clone() });
        }
        self.fetch(source, caller, &entry, &mut failed).await
    }

    /// Fetches ahead for `caller` (a workload that just appeared): errors are only logged.
    pub fn prefetch(self: &Arc<Self>, source: &Arc<Source>, caller: &SpiffeId) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let (this, source, caller) = (self.clone(), source.clone(), caller.clone());
        runtime.spawn(async move {
            if let Err(e) = this.get(&source, &caller).await {
                tracing::debug!(source = %source.config.name, identity = %caller, error = %e.why, "credential prefetch failed");
            }
        });
    }

    /// One exchange, under the entry's lock: stores what it got, or the failure.
    async fn fetch(
        &self,
        source: &Source,
        caller: &SpiffeId,
        entry: &Entry,
        failed: &mut Option<(Instant, String)>,
    ) -> Result<Fetched, ExchangeError> {
        let started = Instant::now();
        self.stats.exchanges.inc();
        let result = self.exchange(source, caller).await;
        self.stats.latency.observe(started.elapsed().as_secs_f64());
        match result {
            Ok(granted) => {
                tracing::info!(source = %source.config.name, identity = %caller, expires_in_s = granted.lifetime.as_secs(), took_ms = started.elapsed().as_millis() as u64, "credential exchanged");
                let held = Held::new(granted);
                let fetched = held.fetched.clone();
                entry.held.store(Some(Arc::new(held)));
                *failed = None;
                Ok(fetched)
            }
            Err(why) => {
                self.stats.failures.inc();
                *failed = Some((Instant::now(), why.clone()));
                Err(ExchangeError { source_name: source.config.name.to_string(), why })
            }
        }
    }

    async fn exchange(&self, source: &Source, caller: &SpiffeId) -> Result<Granted, String> {
        let config = &source.config;
        let endpoint = source.endpoint.url.0.to_string();
        let form = match config.kind {
            CredentialKind::AwsWebIdentity => aws::request(config, &self.jwt, caller),
            _ => oauth::request(config, &endpoint, &self.jwt, caller),
        }
        .map_err(|e| e.to_string())?;
        let form = String::from_utf8_lossy(form.expose()).into_owned();
        let answer = source.endpoint.post_form(form, self.mark, config.timeout.0).await.map_err(|e| format!("{endpoint}: {e:#}"))?;
        let granted = match config.kind {
            CredentialKind::AwsWebIdentity => aws::answer(answer.status, &answer.body),
            _ => oauth::answer(answer.status, &answer.body),
        }?;
        if granted.lifetime < Duration::from_secs(10) {
            return Err(format!("the credential lasts {}s: too short to use", granted.lifetime.as_secs()));
        }
        Ok(granted)
    }

    fn entry(&self, source: &Source, caller: &SpiffeId) -> Arc<Entry> {
        let mut entries = self.entries.lock();
        let key = (source.fingerprint.clone(), caller.clone());
        if let Some(e) = entries.get(&key) {
            return e.clone();
        }
        if entries.len() >= MAX_ENTRIES {
            let now = Instant::now();
            entries.retain(|_, e| Arc::strong_count(e) > 1 || e.held.load().as_ref().is_some_and(|h| now < h.usable_until));
            if entries.len() >= MAX_ENTRIES {
                // Still full of live credentials: drop the ones closest to expiry.
                let mut by_expiry: Vec<_> = entries.iter().map(|(k, e)| (e.held.load().as_ref().map(|h| h.usable_until), k.clone())).collect();
                by_expiry.sort_by_key(|(until, _)| *until);
                for (_, k) in by_expiry.into_iter().take(MAX_ENTRIES / 10) {
                    entries.remove(&k);
                }
            }
        }
        entries.entry(key).or_default().clone()
    }

    /// Entries held now (for `idgate status`).
    pub fn cached(&self) -> usize {
        self.entries.lock().len()
    }
}
