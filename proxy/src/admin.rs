//! Admin listener (loopback by default): /status (JSON), /metrics (Prometheus), /healthz.
use crate::credential::Credentials;
use crate::decisions::DecisionLog;
use crate::metrics::Metrics;
use crate::tunnel::pool::Pool;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::net::TcpListener;

pub struct Admin {
    pub host: String,
    pub trust_domain: String,
    pub identity_backend: &'static str,
    pub mode: crate::config::InboundMode,
    pub credentials: Arc<Credentials>,
    /// One per worker thread.
    pub pools: Vec<Arc<Pool>>,
    /// Publishes the JWT-SVID signing key (JWKS) for verifiers.
    pub jwt: Arc<crate::http::JwtIssuer>,
    pub decisions: Arc<DecisionLog>,
    pub metrics: Arc<Metrics>,
    /// For its handshake counts and refusals.
    pub inbound: Arc<crate::tunnel::inbound::Inbound>,
}

impl Admin {
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let this = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let this = this.clone();
                    async move { Ok::<_, Infallible>(this.respond(req)) }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
            });
        }
    }

    fn respond(&self, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let (status, content_type, body) = match req.uri().path() {
            "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_string()),
            "/jwks.json" | "/.well-known/jwks.json" => (StatusCode::OK, "application/jwk-set+json", self.jwt.jwks()),
            "/status" => (StatusCode::OK, "application/json", self.status_json()),
            "/metrics" => {
                let mut text = String::new();
                let _ = prometheus_client::encoding::text::encode(&mut text, &self.metrics.registry);
                (StatusCode::OK, "application/openmetrics-text; version=1.0.0; charset=utf-8", text)
            }
            _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n".to_string()),
        };
        Response::builder().status(status).header("content-type", content_type).body(Full::new(Bytes::from(body))).expect("static response parts")
    }

    fn status_json(&self) -> String {
        serde_json::json!({
            "host": self.host,
            "trust_domain": self.trust_domain,
            "identity_backend": self.identity_backend,
            "mode": self.mode,
            "server_id": self.credentials.server_id().to_string(),
            "svids": self.credentials.summaries(),
            "svids_minted": self.credentials.minted.load(Ordering::Relaxed),
            "jwt_svids_minted": self.jwt.minted.load(Ordering::Relaxed),
            "tunnel_connections": self.pools.iter().map(|p| p.connection_count()).sum::<usize>(),
            "tunnel_dials": self.pools.iter().map(|p| p.dials.load(Ordering::Relaxed)).sum::<u64>(),
            "active_flows": self.metrics.active_flows.get(),
            "handshakes_in_progress": self.inbound.handshakes.in_progress(),
            "refused_connections": self.inbound.refusals.recent(),
            "decisions": self.decisions.recent(),
        })
        .to_string()
    }
}
