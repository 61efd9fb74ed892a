//! A chain's facts, and which of its CAs must grant the leaf's ID.
use super::PeerChain;
use crate::credential::test_pki::{host_id, id, Root};
use crate::credential::{CertificateAuthority, Svid};
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;
use std::time::Duration;

fn anchors(certs: &[CertificateDer<'static>]) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    for c in certs {
        roots.add(c.clone()).unwrap();
    }
    roots
}

fn leaf(ca: &CertificateAuthority, path: &str) -> CertificateDer<'static> {
    Svid::mint(ca, &id(path), &[], Duration::from_secs(600), 0).unwrap().certified.cert[0].clone()
}

#[test]
fn a_chain_names_its_leaf_every_serial_and_its_cas_host() {
    let (dir, root) = (tempfile::tempdir().unwrap(), Root::new());
    let ca = root.host_ca(dir.path(), "a", Some(&["spiffe://fleet.idgate/app/*"]), time::Duration::days(1));
    let alice = Svid::mint(&ca, &id("/app/alice"), &[], Duration::from_secs(600), 0).unwrap();
    let chain = PeerChain::inspect(&alice.certified.cert[0], &alice.certified.cert[1..], &anchors(&[root.der()])).unwrap();
    assert_eq!(chain.id, id("/app/alice"));
    assert_eq!(chain.serials.len(), 2);
    assert_eq!(chain.serials[0], alice.serial);
    assert_eq!(chain.hosts, [host_id("a")]);
    assert_eq!(PeerChain::read(&alice.certified.cert[0], &alice.certified.cert[1..]).unwrap(), chain);
}

#[test]
fn every_presented_ca_bearing_the_issuers_name_must_grant_the_id() {
    // Two CAs of one name (each "host CA a"), one granted alice, the other bob: presented
    // together, in either order, they cannot pass a leaf of one off under the other's grant.
    let (dir, other_dir, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), Root::new());
    let for_alice = root.host_ca(dir.path(), "a", Some(&["spiffe://fleet.idgate/app/alice"]), time::Duration::days(1));
    let for_bob = root.host_ca(other_dir.path(), "a", Some(&["spiffe://fleet.idgate/app/bob"]), time::Duration::days(1));
    let roots = anchors(&[root.der()]);
    let alice = leaf(&for_alice, "/app/alice");
    assert!(PeerChain::inspect(&alice, std::slice::from_ref(&for_alice.cert_der), &roots).is_ok());
    for cas in [[for_alice.cert_der.clone(), for_bob.cert_der.clone()], [for_bob.cert_der.clone(), for_alice.cert_der.clone()]] {
        let err = PeerChain::inspect(&alice, &cas, &roots).unwrap_err().to_string();
        assert!(err.contains("spiffe://fleet.idgate/app/alice is outside the grant"), "{err}");
    }
    // Facts alone are read whatever the grants (the handshake checked them).
    assert_eq!(PeerChain::read(&alice, &[for_alice.cert_der.clone(), for_bob.cert_der.clone()]).unwrap().serials.len(), 3);
}

#[test]
fn a_leaf_signed_by_a_trust_anchor_has_no_grant_to_check() {
    let (dir, root) = (tempfile::tempdir().unwrap(), Root::new());
    let ungranted = root.host_ca(dir.path(), "c", None, time::Duration::days(1));
    let alice = leaf(&ungranted, "/app/alice");
    let presented = [ungranted.cert_der.clone()];
    assert!(PeerChain::inspect(&alice, &presented, &anchors(&[root.der()])).is_err());
    let chain = PeerChain::inspect(&alice, &presented, &anchors(&[root.der(), ungranted.cert_der.clone()])).unwrap();
    assert!(chain.hosts.is_empty());
    // Nor one whose issuer was not presented at all (verification found it among the anchors).
    assert!(PeerChain::inspect(&alice, &[], &anchors(std::slice::from_ref(&ungranted.cert_der))).is_ok());
}
