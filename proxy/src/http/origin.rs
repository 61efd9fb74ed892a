//! TLS origination: the workload speaks plain HTTP to an external API's address, idgate opens
//! the TLS connection itself (SNI, server certificate verified against the system roots or a
//! configured bundle) so that injected credentials travel encrypted and never enter the
//! workload.
use super::upstream::{BoxIo, Failure};
use crate::config::TlsOrigin;
use anyhow::{bail, Context};
use http::{StatusCode, Version};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::TlsConnector;

const DIAL_TIMEOUT: Duration = Duration::from_secs(5);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One `[[outbound]] tls` block, ready to dial: a client config per HTTP version (ALPN).
pub struct Origin {
    pub server_name: ServerName<'static>,
    pub port: u16,
    h1: Arc<ClientConfig>,
    h2: Arc<ClientConfig>,
}

impl Origin {
    pub fn new(tls: &TlsOrigin) -> anyhow::Result<Self> {
        let roots = Arc::new(roots(tls.ca_bundle.as_deref(), tls.server_name.0.to_str().as_ref())?);
        let config = |alpn: &[u8]| -> anyhow::Result<Arc<ClientConfig>> {
            let provider = crate::credential::crypto_provider(tls.key_exchange.as_slice());
            let mut c = ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            c.alpn_protocols = vec![alpn.to_vec()];
            Ok(Arc::new(c))
        };
        Ok(Origin { server_name: tls.server_name.0.clone(), port: tls.port, h1: config(b"http/1.1")?, h2: config(b"h2")? })
    }

    /// Connects to `ip:port` (bypassing interception) and completes a verified handshake.
    pub async fn connect(&self, ip: std::net::IpAddr, mark: u32, version: Version) -> Result<BoxIo, Failure> {
        let addr = SocketAddr::new(ip, self.port);
        let name = self.server_name.to_str();
        let fail = |why: String| Failure::new(StatusCode::BAD_GATEWAY, format!("TLS origination to {name} ({addr}): {why}"));
        let tcp = crate::sys::socket::connect_marked(addr, mark, DIAL_TIMEOUT).await.map_err(|e| fail(e.to_string()))?;
        let config = if version == Version::HTTP_2 { self.h2.clone() } else { self.h1.clone() };
        let handshake = TlsConnector::from(config).connect(self.server_name.clone(), crate::sys::socket::buffered(tcp));
        let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => return Err(fail(e.to_string())),
            Err(_) => return Err(fail("handshake timed out".into())),
        };
        if version == Version::HTTP_2 && tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err(fail("the server did not agree to HTTP/2 (ALPN); the workload must speak HTTP/1.1 to it".into()));
        }
        Ok(Box::new(tls))
    }
}

/// The trust anchors to verify `server` with: the PEM certificates of `bundle`, else the
/// system's roots.
pub(super) fn roots(bundle: Option<&std::path::Path>, server: &str) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    match bundle {
        Some(path) => {
            let pem = std::fs::read(path).with_context(|| format!("reading ca_bundle {}", path.display()))?;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.with_context(|| format!("{}: bad PEM", path.display()))?;
                roots.add(cert).with_context(|| format!("{}: not a usable trust anchor", path.display()))?;
            }
            if roots.is_empty() {
                bail!("ca_bundle {} holds no certificate", path.display());
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                bail!("no system CA certificates found to verify {server} with (install ca-certificates or set ca_bundle)");
            }
        }
    }
    Ok(roots)
}
