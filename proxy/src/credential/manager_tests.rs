//! The credential manager: SVIDs minted just in time and once per identity, held to the host
//! CA's grant, forgotten on revocation, rotated past half life, and a CA rotation that changes
//! nothing until it is committed.
use super::test_pki::{self, host_id, id, Root, TD};
use super::{Credentials, HostAddresses, TrustBundle};
use std::sync::Arc;
use std::time::Duration;

fn bundle(root: &Root) -> TrustBundle {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.der()).unwrap();
    TrustBundle { roots: Arc::new(roots), trust_domain: TD.into(), expiries: Vec::new() }
}

fn host(root: &Root, grant: &[&str], ttl: Duration) -> (tempfile::TempDir, Credentials) {
    let dir = tempfile::tempdir().unwrap();
    let ca = root.host_ca(dir.path(), "a", Some(grant), time::Duration::days(1));
    let addresses = HostAddresses::Configured(vec![[127, 0, 0, 1].into()]);
    let creds = Credentials::new(ca, bundle(root), host_id("a"), addresses, ttl, test_pki::deny(&[])).unwrap();
    (dir, creds)
}

fn serial_of(creds: &Credentials, who: &str) -> Option<String> {
    creds.summaries().into_iter().find(|s| s.spiffe_id == who).map(|s| s.serial)
}

#[test]
fn an_identity_is_minted_at_its_first_use_and_only_once() {
    let root = Root::new();
    let (_dir, creds) = host(&root, &["spiffe://fleet.idgate/app/*"], Duration::from_secs(3600));
    let alice = id("/app/alice");
    assert_eq!(serial_of(&creds, alice.as_str()), None, "nothing before the first flow");
    let first = creds.workload(&alice).unwrap();
    let again = creds.workload(&alice).unwrap();
    assert!(Arc::ptr_eq(&first, &again), "a second flow takes the same SVID");
    let bob = creds.workload(&id("/app/bob")).unwrap();
    assert_ne!(first.svid.serial, bob.svid.serial);
    assert_eq!(serial_of(&creds, alice.as_str()).as_deref(), Some(first.svid.serial.as_str()));
}

#[test]
fn a_host_ca_mints_nothing_outside_its_grant() {
    let root = Root::new();
    let (_dir, creds) = host(&root, &["spiffe://fleet.idgate/app/*"], Duration::from_secs(3600));
    let e = creds.workload(&id("/payments")).err().expect("outside the grant").to_string();
    assert!(e.contains("may not issue spiffe://fleet.idgate/payments"), "{e}");
    assert_eq!(serial_of(&creds, id("/payments").as_str()), None, "nothing kept");
}

#[test]
fn a_forgotten_svid_leaves_and_the_next_flow_gets_a_new_one() {
    let root = Root::new();
    let (_dir, creds) = host(&root, &["spiffe://fleet.idgate/app/*"], Duration::from_secs(3600));
    let (alice, bob) = (id("/app/alice"), id("/app/bob"));
    let old = creds.workload(&alice).unwrap().svid.serial.clone();
    let kept = creds.workload(&bob).unwrap().svid.serial.clone();
    assert_eq!(creds.forget(|i, _| *i == alice), vec![old.clone()]);
    assert_eq!(serial_of(&creds, alice.as_str()), None, "its key left memory");
    assert_eq!(serial_of(&creds, bob.as_str()), Some(kept));
    assert_ne!(creds.workload(&alice).unwrap().svid.serial, old);
}

#[test]
fn svids_past_half_life_are_replaced_and_idle_ones_dropped() {
    let root = Root::new();
    let ttl = Duration::from_secs(2);
    let (_dir, creds) = host(&root, &["spiffe://fleet.idgate/app/*"], ttl);
    let (busy, idle) = (id("/app/busy"), id("/app/idle"));
    let host_serial = serial_of(&creds, host_id("a").as_str()).unwrap();
    let busy_serial = creds.workload(&busy).unwrap().svid.serial.clone();
    creds.workload(&idle).unwrap();
    creds.rotate_due();
    assert_eq!(serial_of(&creds, busy.as_str()).as_deref(), Some(busy_serial.as_str()), "not due before half life");
    // Past a whole TTL (last use is kept in whole seconds): the busy one was used meanwhile.
    std::thread::sleep(ttl + Duration::from_millis(1100));
    creds.workload(&busy).unwrap();
    creds.rotate_due();
    let rotated = serial_of(&creds, busy.as_str()).expect("still held");
    assert_ne!(rotated, busy_serial, "replaced past half life");
    assert_eq!(serial_of(&creds, idle.as_str()), None, "unused for a whole TTL: dropped");
    assert_ne!(serial_of(&creds, host_id("a").as_str()).unwrap(), host_serial, "the host's own SVID too");
}

#[test]
fn a_staged_authority_changes_nothing_until_committed() {
    let root = Root::new();
    let (dir, creds) = host(&root, &["spiffe://fleet.idgate/app/*"], Duration::from_secs(3600));
    let narrower = root.host_ca(dir.path(), "a", Some(&["spiffe://fleet.idgate/db/*"]), time::Duration::days(1));
    let host_serial = serial_of(&creds, host_id("a").as_str()).unwrap();
    let staged = creds.stage_authority(narrower, bundle(&root)).unwrap();
    assert_eq!(serial_of(&creds, host_id("a").as_str()).unwrap(), host_serial, "staged only");
    creds.workload(&id("/app/alice")).expect("the CA in force still issues its grant");
    drop(creds.forget(|_, _| true));
    creds.commit_authority(staged);
    assert_ne!(serial_of(&creds, host_id("a").as_str()).unwrap(), host_serial, "the host SVID of the new CA");
    assert!(creds.workload(&id("/app/alice")).is_err(), "the new CA's grant is in force");
    creds.workload(&id("/db/x")).unwrap();
    creds.self_test().unwrap();
}
