//! A host's credentials as its config names them: the CA (the embedded one, created on first
//! start, or files from `idgate ca issue`), the trust bundle, this host's SPIFFE ID, and the
//! deny list's slot that every handshake consults.
use super::deny_list::{DenyList, Revocations};
use super::{init_embedded_ca, CertificateAuthority, Credentials, HostAddresses, TrustBundle};
use crate::config::{CaSource, Config};
use crate::spiffe::SpiffeId;
use anyhow::{bail, Context, Result};
use std::sync::Arc;

pub fn hostname(config: &Config) -> String {
    config
        .hostname
        .clone()
        .unwrap_or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "localhost".into()))
}

/// The certificates of a trust bundle file: at least one, each a usable trust anchor.
pub fn trust_anchors(path: &std::path::Path) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("reading trust bundle {}", path.display()))?;
    let certs: Vec<_> =
        rustls_pemfile::certs(&mut pem.as_slice()).collect::<Result<_, _>>().with_context(|| format!("{}: bad PEM", path.display()))?;
    if certs.is_empty() {
        bail!("{}: no PEM certificate", path.display());
    }
    let mut probe = rustls::RootCertStore::empty();
    for cert in &certs {
        probe.add(cert.clone()).with_context(|| format!("{}: not a usable trust anchor", path.display()))?;
    }
    Ok(certs)
}

/// The CA files a config names (the embedded CA's under the state dir, created if absent).
pub fn ca_files(config: &Config) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    Ok(match config.ca.source {
        CaSource::Embedded => {
            let cert = init_embedded_ca(&config.state_dir, &config.trust_domain.0)?;
            (cert, config.state_dir.join(super::CA_KEY_FILE))
        }
        CaSource::Files => (config.ca.cert.clone().expect("checked by config"), config.ca.key.clone().expect("checked by config")),
    })
}

/// The CA that mints SVIDs and the roots peers are verified against: every certificate of the
/// trust bundle files, and the CA itself when it is a root or no bundle is given (a CA the
/// hosts share). A host CA under a root in the bundle is not an anchor of its own: the host
/// verifies its own SVIDs as its peers do, through the root and within the CA's grant.
pub fn load_authority(config: &Config) -> Result<(CertificateAuthority, TrustBundle)> {
    let (cert_path, key_path) = ca_files(config)?;
    let ca = CertificateAuthority::load(&cert_path, &key_path)?;
    let mut roots = rustls::RootCertStore::empty();
    if ca.is_root() || config.ca.trust_bundle.is_empty() {
        roots.add(ca.cert_der.clone()).context("CA certificate is not a usable trust anchor")?;
    }
    let mut expiries = Vec::new();
    for path in &config.ca.trust_bundle {
        for cert in trust_anchors(path)? {
            expiries.extend(super::expiry::CertExpiry::of(&cert));
            roots.add(cert).with_context(|| format!("{}: not a usable trust anchor", path.display()))?;
        }
    }
    Ok((ca, TrustBundle { roots: Arc::new(roots), trust_domain: config.trust_domain.0.clone(), expiries }))
}

/// Everything that can fail before touching the network: CA, trust bundle, first SVID.
/// `revoked`: the deny list's slot, which peers are checked against at every handshake.
pub fn load_credentials(config: &Config, host: &str, revoked: Arc<DenyList>) -> Result<Credentials> {
    let td = &config.trust_domain.0;
    let (ca, bundle) = load_authority(config)?;
    let server_id = match &config.svid.server_id {
        Some(id) => id.get_ref().0.clone(),
        None => {
            let safe: String = host.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '-' }).collect();
            SpiffeId::parse(&format!("spiffe://{td}/idgate/host/{safe}"))?
        }
    };
    let addresses = match &config.svid.addresses {
        Some(list) => HostAddresses::Configured(list.clone()),
        None => HostAddresses::Interfaces,
    };
    Credentials::with_key_exchange(ca, bundle, server_id, addresses, config.svid.ttl.0, config.tunnel.key_exchange.as_slice(), revoked)
}

/// The deny list the config gives (its inline entries and its file), in a slot of its own.
pub fn deny_list(config: &Config) -> Result<Arc<DenyList>> {
    let entries = config.revocation.entries()?;
    Ok(Arc::new(DenyList::from_pointee(Revocations::new(entries))))
}
