//! A CA loaded from files: intermediates send their chain, SVIDs never outlive their issuer,
//! and a key that is not the certificate's is refused.
use super::selftest::handshake;
use super::{CertificateAuthority, Credentials, HostAddresses, TrustBundle};
use crate::spiffe::SpiffeId;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

fn ca_params(name: &str, lifetime: time::Duration) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::hours(1);
    p.not_after = now + lifetime;
    p
}

struct Root {
    cert: rcgen::Certificate,
    issuer: rcgen::Issuer<'static, KeyPair>,
}

fn root() -> Root {
    let key = KeyPair::generate().unwrap();
    let params = ca_params("test root", time::Duration::days(365));
    Root { cert: params.self_signed(&key).unwrap(), issuer: rcgen::Issuer::new(params, key) }
}

/// An intermediate under `root`, written as `<name>.pem` (itself, then the root) and `<name>-key.pem`.
fn intermediate(dir: &Path, root: &Root, name: &str, lifetime: time::Duration) -> CertificateAuthority {
    let key = KeyPair::generate().unwrap();
    let cert = ca_params(name, lifetime).signed_by(&key, &root.issuer).unwrap();
    let (cert_path, key_path) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}-key.pem")));
    std::fs::write(&cert_path, format!("{}{}", cert.pem(), root.cert.pem())).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    std::fs::set_permissions(&key_path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    CertificateAuthority::load(&cert_path, &key_path).unwrap()
}

fn credentials(ca: CertificateAuthority, root: &Root, host: &str) -> Credentials {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.cert.der().clone()).unwrap(); // the shared root only
    let bundle = TrustBundle { roots: Arc::new(roots), trust_domain: "fleet.idgate".into(), expiries: Vec::new() };
    let id = SpiffeId::parse(&format!("spiffe://fleet.idgate/idgate/host/{host}")).unwrap();
    Credentials::new(ca, bundle, id, HostAddresses::Configured(vec![[127, 0, 0, 1].into()]), Duration::from_secs(3600)).unwrap()
}

#[test]
fn hosts_with_their_own_intermediates_verify_each_other_through_the_shared_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = root();
    let a = credentials(intermediate(dir.path(), &root, "a", time::Duration::days(30)), &root, "a");
    let b = credentials(intermediate(dir.path(), &root, "b", time::Duration::days(30)), &root, "b");
    let alice = a.workload(&SpiffeId::parse("spiffe://fleet.idgate/app/alice").unwrap()).unwrap();
    assert_eq!(alice.svid.certified.cert.len(), 2, "the leaf and its intermediate (not the root)");
    let seen = handshake(alice.client_config.clone(), b.server_config(), [127, 0, 0, 1].into()).unwrap();
    assert_eq!(crate::credential::spiffe_id_of_cert(&seen).unwrap().as_str(), "spiffe://fleet.idgate/app/alice");
}

#[test]
fn an_svid_never_outlives_its_issuer() {
    let dir = tempfile::tempdir().unwrap();
    let root = root();
    let ca = intermediate(dir.path(), &root, "short", time::Duration::minutes(10));
    let issuer_end = ca.not_after;
    let creds = credentials(ca, &root, "a");
    let svid = &creds.workload(&SpiffeId::parse("spiffe://fleet.idgate/app/alice").unwrap()).unwrap().svid;
    assert!(svid.not_after <= issuer_end, "SVID ends {:?}, its issuer {:?}", svid.not_after, issuer_end);
    assert!(svid.not_after > SystemTime::now() + Duration::from_secs(9 * 60));
}

#[test]
fn a_key_that_is_not_the_certificates_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = root();
    intermediate(dir.path(), &root, "a", time::Duration::days(1));
    intermediate(dir.path(), &root, "b", time::Duration::days(1));
    let err = CertificateAuthority::load(&dir.path().join("a.pem"), &dir.path().join("b-key.pem")).err().unwrap().to_string();
    assert!(err.contains("b-key.pem does not belong to the certificate in") && err.contains("a.pem"), "{err}");
}
