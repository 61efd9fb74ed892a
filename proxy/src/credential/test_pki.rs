//! Certificates for tests: a fleet root, host CAs under it (with a grant or without), the
//! credentials of a host, and deny lists.
use super::{CertificateAuthority, Credentials, Grant, HostAddresses, TrustBundle};
use crate::config::deny_list::Entry;
use crate::credential::deny_list::{DenyList, Revocations};
use crate::spiffe::SpiffeId;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::CertificateDer;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub const TD: &str = "fleet.idgate";

/// `spiffe://fleet.idgate<path>`.
pub fn id(path: &str) -> SpiffeId {
    SpiffeId::parse(&format!("spiffe://{TD}{path}")).unwrap()
}

pub fn host_id(host: &str) -> SpiffeId {
    id(&format!("/idgate/host/{host}"))
}

pub fn ca_params(name: &str, lifetime: time::Duration) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::hours(1);
    p.not_after = now + lifetime;
    p
}

pub struct Root {
    pub cert: rcgen::Certificate,
    pub issuer: rcgen::Issuer<'static, KeyPair>,
}

impl Root {
    pub fn new() -> Root {
        let key = KeyPair::generate().unwrap();
        let params = ca_params("test root", time::Duration::days(365));
        Root { cert: params.self_signed(&key).unwrap(), issuer: rcgen::Issuer::new(params, key) }
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// A CA for `host` under this root, written as `<dir>/<host>.pem` (itself, then the root)
    /// and `<host>-key.pem`; granted `patterns` (and its host's ID), or carrying no grant.
    pub fn host_ca(&self, dir: &Path, host: &str, patterns: Option<&[&str]>, lifetime: time::Duration) -> CertificateAuthority {
        let key = KeyPair::generate().unwrap();
        let mut params = ca_params(&format!("host CA {host}"), lifetime);
        if let Some(patterns) = patterns {
            let grant = Grant::new(host_id(host), &patterns.iter().map(|p| p.to_string()).collect::<Vec<_>>()).unwrap();
            params.custom_extensions = vec![grant.extension()];
        }
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (cert_path, key_path) = (dir.join(format!("{host}.pem")), dir.join(format!("{host}-key.pem")));
        std::fs::write(&cert_path, format!("{}{}", cert.pem(), self.cert.pem())).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        std::fs::set_permissions(&key_path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        CertificateAuthority::load(&cert_path, &key_path).unwrap()
    }
}

/// A deny list of `entries` (SPIFFE IDs or serials), in a slot of its own.
pub fn deny(entries: &[&str]) -> Arc<DenyList> {
    Arc::new(DenyList::from_pointee(Revocations::new(entries.iter().map(|e| Entry::parse(e).unwrap()).collect::<Vec<_>>())))
}

/// Host `host`'s credentials under `ca`, trusting `anchors`, dialled on 127.0.0.1.
pub fn credentials(ca: CertificateAuthority, anchors: &[CertificateDer<'static>], host: &str, revoked: Arc<DenyList>) -> Credentials {
    let mut roots = rustls::RootCertStore::empty();
    for a in anchors {
        roots.add(a.clone()).unwrap();
    }
    let bundle = TrustBundle { roots: Arc::new(roots), trust_domain: TD.into(), expiries: Vec::new() };
    Credentials::new(ca, bundle, host_id(host), HostAddresses::Configured(vec![[127, 0, 0, 1].into()]), Duration::from_secs(3600), revoked).unwrap()
}
