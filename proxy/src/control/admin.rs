//! What idgate tells about itself, on two listeners. The TCP admin port (loopback by default)
//! serves what anyone may read: /metrics (Prometheus), /healthz and /jwks.json (the public
//! half of the JWT-SVID key); it may be bound wider so that verifiers on other hosts fetch the
//! JWKS. The control socket (a Unix socket, mode 0600, root only) serves /status and /flows
//! (identities, processes and flows, which a local user must not see), and takes POST /reload
//! (the config file) and POST /revocations (the deny list).
use crate::tunnel::pool::Pool;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::net::{TcpListener, UnixListener};

/// Status, content type, body.
type Answer = (StatusCode, &'static str, String);

fn response((status, content_type, body): Answer) -> Response<Full<Bytes>> {
    Response::builder().status(status).header("content-type", content_type).body(Full::new(Bytes::from(body))).expect("static response parts")
}

pub struct Admin {
    /// What the data path shares: the host, credentials, policy, decisions, metrics, flows.
    pub inputs: Arc<crate::tunnel::ProxyInputs>,
    pub trust_domain: String,
    pub identity_backend: &'static str,
    pub identity_backend_reason: String,
    pub mode: crate::config::InboundMode,
    /// One per worker thread.
    pub pools: Vec<Arc<Pool>>,
    /// Publishes the JWT-SVID signing key (JWKS) for verifiers.
    pub exchanges: Arc<crate::http::exchange::Exchanges>,
    /// For its handshake counts and refusals.
    pub inbound: Arc<crate::tunnel::inbound::Inbound>,
    pub reloader: Arc<crate::control::reload::Reloader>,
    /// An upgrade's successor asking this process to hand over (its pid).
    pub handovers: tokio::sync::mpsc::UnboundedSender<u32>,
    /// Whether workloads are prepared before their first flow (process events), and counts.
    pub process_events: crate::prewarm::EventsState,
    pub prewarm: Arc<crate::prewarm::Stats>,
    /// The tables and the cgroup guard, for /status and an upgrade's successor.
    pub keeper: Arc<crate::intercept::Keeper>,
}

/// Binds the control socket at `path`, root only (0600, directory created 0700). A socket
/// file left by a previous run is replaced; one that an idgate still answers on is not.
pub fn bind_control(path: &std::path::Path) -> anyhow::Result<UnixListener> {
    use anyhow::Context;
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if let Some(dir) = path.parent().filter(|d| !d.exists()) {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        anyhow::bail!("control socket {} is in use (is another idgate running?)", path.display());
    }
    let _ = std::fs::remove_file(path);
    // Created without group or other permission from the start, not chmod-ed after a window.
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
    let bound = UnixListener::bind(path);
    rustix::process::umask(old);
    let listener = bound.with_context(|| format!("binding control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

impl Admin {
    pub async fn serve_public(self: Arc<Self>, listener: TcpListener) {
        loop {
            match listener.accept().await {
                Ok((tcp, _)) => self.clone().serve_one(tcp, Self::respond_public),
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }

    pub async fn serve_control(self: Arc<Self>, listener: UnixListener) {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => self.clone().serve_one(stream, Self::respond_control),
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn serve_one<S>(self: Arc<Self>, stream: S, respond: fn(&Self, &Method, &str) -> Answer)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let answer = respond(&self, req.method(), req.uri().path());
                async move { Ok::<_, Infallible>(response(answer)) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }

    fn respond_public(&self, _method: &Method, path: &str) -> Answer {
        match path {
            "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_string()),
            "/jwks.json" | "/.well-known/jwks.json" => (StatusCode::OK, "application/jwk-set+json", self.exchanges.jwt().jwks()),
            "/.well-known/openid-configuration" => (StatusCode::OK, "application/json", self.exchanges.jwt().discovery()),
            "/metrics" => {
                let mut text = String::new();
                let (ca, bundle) = self.inputs.credentials.expiries();
                self.inputs.metrics.expiries(ca.as_ref(), &bundle);
                let _ = prometheus_client::encoding::text::encode(&mut text, &self.inputs.metrics.registry);
                (StatusCode::OK, "application/openmetrics-text; version=1.0.0; charset=utf-8", text)
            }
            "/status" => (StatusCode::NOT_FOUND, "text/plain", "not here: `idgate status` reads it from the control socket\n".to_string()),
            _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n".to_string()),
        }
    }

    fn respond_control(&self, method: &Method, path: &str) -> Answer {
        fn report(result: Result<crate::control::reload::Report, impl std::fmt::Display>) -> Answer {
            match result {
                Ok(report) => (StatusCode::OK, "application/json", serde_json::to_string(&report).unwrap_or_default()),
                Err(why) => (StatusCode::UNPROCESSABLE_ENTITY, "text/plain", why.to_string()),
            }
        }
        match (method, path) {
            // Both carry text workloads and peers chose (exe paths, refusal details): whoever
            // prints them to a terminal gets no raw control character.
            (&Method::GET, "/status") => (StatusCode::OK, "application/json", crate::terminal::escape_json(self.status_json())),
            (&Method::GET, "/flows") => (StatusCode::OK, "application/json", crate::terminal::escape_json(self.flows_json())),
            (&Method::POST, "/reload") => report(self.reloader.reload()),
            (&Method::POST, "/revocations") => report(self.reloader.revocations()),
            (&Method::POST, "/upgrade") => match crate::control::main_process::request_upgrade() {
                Ok(()) => {
                    tracing::info!("upgrade: asked the main process to start the new idgate");
                    (StatusCode::OK, "application/json", serde_json::json!({ "pid": std::process::id() }).to_string())
                }
                Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, "text/plain", format!("{e:#}")),
            },
            (&Method::POST, p) if p.starts_with("/handover/") => match p["/handover/".len()..].parse::<u32>() {
                Ok(pid) if self.handovers.send(pid).is_ok() => (StatusCode::OK, "text/plain", "handing over\n".into()),
                _ => (StatusCode::BAD_REQUEST, "text/plain", "POST /handover/<pid of the successor>\n".into()),
            },
            _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n".to_string()),
        }
    }

    fn flows_json(&self) -> String {
        let flows: Vec<serde_json::Value> = self
            .inputs
            .registry
            .all()
            .iter()
            .map(|f| {
                let p = f.facts.process.as_deref();
                serde_json::json!({
                    "flow": f.facts.id,
                    "direction": f.facts.direction,
                    "pid": p.map(|p| p.tgid),
                    "exe": p.map(|p| p.exe.as_str()),
                    "uid": p.map(|p| p.uid),
                    "spiffe_id": f.facts.source.as_ref().map(|s| s.as_str()),
                    "serial": f.facts.serial.as_deref(),
                    "destination": f.facts.destination.to_string(),
                    "peer": f.peer_label(),
                    "bytes_up": f.up.load(Ordering::Relaxed),
                    "bytes_down": f.down.load(Ordering::Relaxed),
                    "age_ms": f.started.elapsed().as_millis() as u64,
                    "rules": *f.rules.lock(),
                })
            })
            .collect();
        serde_json::Value::Array(flows).to_string()
    }

    fn status_json(&self) -> String {
        serde_json::json!({
            "host": self.inputs.host,
            "pid": std::process::id(),
            "trust_domain": self.trust_domain,
            "identity_backend": self.identity_backend,
            "identity_backend_reason": self.identity_backend_reason,
            "process_events": {
                "available": self.process_events.available,
                "reason": self.process_events.reason,
                "execs": self.prewarm.execs.load(Ordering::Relaxed),
                "workloads_prepared": self.prewarm.prepared.load(Ordering::Relaxed),
                "warm_requests": self.prewarm.warm_requests.load(Ordering::Relaxed),
                "exits": self.prewarm.exits.load(Ordering::Relaxed),
                "overflows": self.prewarm.lost.load(Ordering::Relaxed),
                "dropped": self.prewarm.dropped.get(),
                "warm_requests_dropped": self.prewarm.warm_dropped.load(Ordering::Relaxed),
            },
            "mode": self.mode,
            "intercept": self.keeper.status(),
            "policy_generation": self.inputs.live.policy().generation,
            "revoked_entries": self.inputs.live.revoked().len(),
            "server_id": self.inputs.credentials.server_id().to_string(),
            "svids": self.inputs.credentials.summaries(),
            "ca_expiry": self.inputs.credentials.expiries().0,
            "trust_bundle_expiry": self.inputs.credentials.expiries().1,
            "svids_minted": self.inputs.credentials.minted.load(Ordering::Relaxed),
            "jwt_svids_minted": self.exchanges.jwt().minted.load(Ordering::Relaxed),
            "credential_exchanges": {
                "exchanges": self.exchanges.stats.exchanges.get(),
                "failures": self.exchanges.stats.failures.get(),
                "cache_hits": self.exchanges.stats.cache_hits.get(),
                "cached": self.exchanges.cached(),
            },
            "tunnel_connections": self.pools.iter().map(|p| p.connection_count()).sum::<usize>(),
            "tunnel_dials": self.pools.iter().map(|p| p.dials.load(Ordering::Relaxed)).sum::<u64>(),
            "active_flows": self.inputs.metrics.active_flows.get(),
            "handshakes_in_progress": self.inbound.handshakes.in_progress(),
            "refused_connections": self.inbound.refusals.recent(),
            "decisions": self.inputs.decisions.recent(),
        })
        .to_string()
    }
}
