//! A CA loaded from files: intermediates send their chain, SVIDs never outlive their issuer,
//! and a key that is not the certificate's is refused.
use super::selftest::handshake;
use super::test_pki::{credentials, id, Root};
use super::CertificateAuthority;
use std::time::{Duration, SystemTime};

const GRANTED: &[&str] = &["spiffe://fleet.idgate/app/*"];

fn intermediate(dir: &std::path::Path, root: &Root, name: &str, lifetime: time::Duration) -> CertificateAuthority {
    root.host_ca(dir, name, Some(GRANTED), lifetime)
}

#[test]
fn hosts_with_their_own_intermediates_verify_each_other_through_the_shared_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::new();
    let a = credentials(intermediate(dir.path(), &root, "a", time::Duration::days(30)), &[root.der()], "a", Default::default());
    let b = credentials(intermediate(dir.path(), &root, "b", time::Duration::days(30)), &[root.der()], "b", Default::default());
    let alice = a.workload(&id("/app/alice")).unwrap();
    assert_eq!(alice.svid.certified.cert.len(), 2, "the leaf and its intermediate (not the root)");
    let seen = handshake(alice.client_config.clone(), b.server_config(), [127, 0, 0, 1].into()).unwrap();
    assert_eq!(crate::credential::spiffe_id_of_cert(&seen).unwrap().as_str(), "spiffe://fleet.idgate/app/alice");
}

#[test]
fn an_svid_never_outlives_its_issuer() {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::new();
    let ca = intermediate(dir.path(), &root, "a", time::Duration::minutes(10));
    let issuer_end = ca.not_after;
    let creds = credentials(ca, &[root.der()], "a", Default::default());
    let svid = &creds.workload(&id("/app/alice")).unwrap().svid;
    assert!(svid.not_after <= issuer_end, "SVID ends {:?}, its issuer {:?}", svid.not_after, issuer_end);
    assert!(svid.not_after > SystemTime::now() + Duration::from_secs(9 * 60));
}

#[test]
fn a_key_that_is_not_the_certificates_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::new();
    intermediate(dir.path(), &root, "a", time::Duration::days(1));
    intermediate(dir.path(), &root, "b", time::Duration::days(1));
    let err = CertificateAuthority::load(&dir.path().join("a.pem"), &dir.path().join("b-key.pem")).err().unwrap().to_string();
    assert!(err.contains("b-key.pem does not belong to the certificate in") && err.contains("a.pem"), "{err}");
}
