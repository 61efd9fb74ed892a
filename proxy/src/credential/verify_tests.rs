//! Both sides' verifiers: a leaf's ID within the grant of the CA that issued it, a peer idgate
//! that is its CA's host, and every certificate of a chain checked against the deny list in
//! force at each handshake.
use super::{describe_tls_error, is_revoked_error, IdgateClientVerifier, IdgateServerVerifier};
use crate::config::deny_list::Entry;
use crate::credential::deny_list::Revocations;
use crate::credential::selftest::handshake;
use crate::credential::test_pki::{credentials, deny, host_id, id, Root};
use crate::credential::{CertificateAuthority, Credentials, Svid};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use std::path::Path;
use std::time::Duration;

const A_GRANT: &[&str] = &["spiffe://fleet.idgate/app/alice"];
const B_GRANT: &[&str] = &["spiffe://fleet.idgate/app/*"];

/// The host CA `host` in `dir` again: the key a compromised host holds.
fn stolen(dir: &Path, host: &str) -> CertificateAuthority {
    CertificateAuthority::load(&dir.join(format!("{host}.pem")), &dir.join(format!("{host}-key.pem"))).unwrap()
}

/// A leaf for `id` (and `addresses`) minted under `ca`, whatever its grant says, with its chain.
fn mint(ca: &CertificateAuthority, id: &crate::spiffe::SpiffeId, addresses: &[std::net::IpAddr]) -> Vec<CertificateDer<'static>> {
    Svid::mint(ca, id, addresses, Duration::from_secs(600), 0).unwrap().certified.cert.clone()
}

struct Fleet {
    dir: tempfile::TempDir,
    root: Root,
}

impl Fleet {
    fn new() -> Fleet {
        Fleet { dir: tempfile::tempdir().unwrap(), root: Root::new() }
    }

    fn host(&self, host: &str, grant: Option<&[&str]>) -> Credentials {
        let ca = self.root.host_ca(self.dir.path(), host, grant, time::Duration::days(1));
        credentials(ca, &[self.root.der()], host, Default::default())
    }
}

fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    crate::credential::crypto_provider(crate::config::TunnelConfig::default().key_exchange.as_slice())
}

fn as_server(creds: &Credentials, revoked: &[&str]) -> IdgateServerVerifier {
    IdgateServerVerifier::new(&creds.bundle(), provider(), deny(revoked))
}

fn as_client(creds: &Credentials, revoked: &[&str]) -> IdgateClientVerifier {
    IdgateClientVerifier::new(&creds.bundle(), provider(), deny(revoked)).unwrap()
}

/// The verifier's answer; an error with its reason in words.
fn server_check(v: &IdgateServerVerifier, chain: &[CertificateDer<'static>]) -> Result<(), (rustls::Error, String)> {
    let name = ServerName::IpAddress(std::net::IpAddr::from([127, 0, 0, 1]).into());
    v.verify_server_cert(&chain[0], &chain[1..], &name, &[], UnixTime::now()).map(|_| ()).map_err(words)
}

fn client_check(v: &IdgateClientVerifier, chain: &[CertificateDer<'static>]) -> Result<(), (rustls::Error, String)> {
    v.verify_client_cert(&chain[0], &chain[1..], UnixTime::now()).map(|_| ()).map_err(words)
}

fn words(e: rustls::Error) -> (rustls::Error, String) {
    let text = describe_tls_error(&e);
    (e, text)
}

#[test]
fn a_workload_id_outside_its_host_cas_grant_is_refused() {
    let fleet = Fleet::new();
    let (a, b) = (fleet.host("a", Some(A_GRANT)), fleet.host("b", Some(B_GRANT)));
    let alice = a.workload(&id("/app/alice")).unwrap();
    handshake(alice.client_config.clone(), b.server_config(), [127, 0, 0, 1].into()).unwrap();
    // The host itself refuses to mint it...
    let err = a.workload(&id("/app/payments")).err().unwrap().to_string();
    assert!(err.contains("this host's CA may not issue spiffe://fleet.idgate/app/payments"), "{err}");
    // ...and a compromised host that mints it anyway is refused by its peer.
    let forged = Svid::mint(&stolen(fleet.dir.path(), "a"), &id("/app/payments"), &[], Duration::from_secs(600), 0).unwrap();
    let client = a.client_config_for_test(forged.certified.clone()).unwrap();
    let err = format!("{:#}", handshake(std::sync::Arc::new(client), b.server_config(), [127, 0, 0, 1].into()).unwrap_err());
    assert!(
        err.contains(
            "spiffe://fleet.idgate/app/payments is outside the grant of the CA that issued it \
             (host spiffe://fleet.idgate/idgate/host/a; workloads spiffe://fleet.idgate/app/alice)"
        ),
        "{err}"
    );
}

#[test]
fn a_peer_idgate_must_be_the_host_its_ca_was_issued_for() {
    let fleet = Fleet::new();
    let (a, _b) = (fleet.host("a", Some(A_GRANT)), fleet.host("b", Some(B_GRANT)));
    let b_ca = stolen(fleet.dir.path(), "b");
    let local = [std::net::IpAddr::from([127, 0, 0, 1])];
    assert!(server_check(&as_server(&a, &[]), &mint(&b_ca, &host_id("b"), &local)).is_ok());
    let (_, err) = server_check(&as_server(&a, &[]), &mint(&b_ca, &host_id("z"), &local)).unwrap_err();
    assert!(err.contains("spiffe://fleet.idgate/idgate/host/z is not the host its CA was issued for (spiffe://fleet.idgate/idgate/host/b)"), "{err}");
}

#[test]
fn an_intermediate_without_a_grant_issues_nothing_unless_it_is_a_trust_anchor() {
    let fleet = Fleet::new();
    let a = fleet.host("a", Some(A_GRANT));
    let c = fleet.host("c", None);
    let alice_by_c = c.workload(&id("/app/alice")).unwrap().svid.certified.cert.clone();
    let (_, err) = client_check(&as_client(&a, &[]), &alice_by_c).unwrap_err();
    assert!(err.contains("spiffe://fleet.idgate/app/alice was issued by CA `CN=host CA c`, an intermediate without an idgate grant"), "{err}");
    assert!(err.contains("idgate ca issue --grant"), "{err}");
    // A host that trusts c itself (a CA the fleet shares) takes any ID from it.
    let shared = credentials(stolen(fleet.dir.path(), "a"), &[fleet.root.der(), alice_by_c[1].clone()], "a", Default::default());
    client_check(&as_client(&shared, &[]), &alice_by_c).unwrap();
}

#[test]
fn every_certificate_of_a_chain_is_checked_against_the_deny_list_on_both_sides() {
    let fleet = Fleet::new();
    let (a, b) = (fleet.host("a", Some(A_GRANT)), fleet.host("b", Some(B_GRANT)));
    let alice = a.workload(&id("/app/alice")).unwrap().svid.certified.cert.clone();
    let b_server = b.server_cert.0.read().cert.clone();
    let serial =
        |der: &CertificateDer<'_>| crate::credential::cert_fields::serial_hex(x509_parser::parse_x509_certificate(der).unwrap().1.raw_serial());
    let callers = [
        ("spiffe://fleet.idgate/app/alice".to_string(), "spiffe://fleet.idgate/app/alice is revoked".to_string()),
        (serial(&alice[0]), format!("certificate serial {} is revoked", serial(&alice[0]).trim_start_matches("00"))),
        (
            serial(&alice[1]),
            format!(
                "CA certificate serial {} in the chain of spiffe://fleet.idgate/app/alice is revoked",
                serial(&alice[1]).trim_start_matches("00")
            ),
        ),
        (
            "spiffe://fleet.idgate/idgate/host/a".to_string(),
            "spiffe://fleet.idgate/idgate/host/a is revoked: its CA issued spiffe://fleet.idgate/app/alice".to_string(),
        ),
    ];
    for (entry, why) in &callers {
        let (err, text) = client_check(&as_client(&b, &[entry.as_str()]), &alice).unwrap_err();
        assert!(is_revoked_error(&err) && text.contains(why.as_str()), "{entry}: {text}");
    }
    let servers = [host_id("b").to_string(), serial(&b_server[0]), serial(&b_server[1])];
    for entry in &servers {
        let (err, text) = server_check(&as_server(&a, &[entry.as_str()]), &b_server).unwrap_err();
        assert!(is_revoked_error(&err) && text.contains("revoked"), "{entry}: {text}");
    }
    // Others' entries refuse nothing.
    client_check(&as_client(&b, &["spiffe://fleet.idgate/app/bob", "spiffe://fleet.idgate/idgate/host/c", "0badc0de"]), &alice).unwrap();
    server_check(&as_server(&a, &["spiffe://fleet.idgate/idgate/host/c"]), &b_server).unwrap();
}

#[test]
fn the_verifiers_read_the_deny_list_in_force_at_each_handshake() {
    let fleet = Fleet::new();
    let dir = fleet.dir.path();
    let list = deny(&[]);
    let a = credentials(fleet.root.host_ca(dir, "a", Some(A_GRANT), time::Duration::days(1)), &[fleet.root.der()], "a", list.clone());
    let b = credentials(fleet.root.host_ca(dir, "b", Some(B_GRANT), time::Duration::days(1)), &[fleet.root.der()], "b", list.clone());
    let alice = a.workload(&id("/app/alice")).unwrap();
    handshake(alice.client_config.clone(), b.server_config(), [127, 0, 0, 1].into()).unwrap();
    list.store(std::sync::Arc::new(Revocations::new([Entry::parse("spiffe://fleet.idgate/idgate/host/b").unwrap()])));
    let err = format!("{:#}", handshake(alice.client_config.clone(), b.server_config(), [127, 0, 0, 1].into()).unwrap_err());
    assert!(err.contains("spiffe://fleet.idgate/idgate/host/b is revoked"), "{err}");
    list.store(Default::default());
    handshake(alice.client_config.clone(), b.server_config(), [127, 0, 0, 1].into()).unwrap();
}

#[test]
fn a_malformed_grant_is_refused() {
    let fleet = Fleet::new();
    let b = fleet.host("b", Some(B_GRANT));
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = crate::credential::test_pki::ca_params("host CA m", time::Duration::days(1));
    params.custom_extensions = vec![rcgen::CustomExtension::from_oid_content(crate::credential::grant::GRANT_OID, b"\x30\x03\x02\x01\x05".to_vec())];
    let ca_cert = params.signed_by(&key, &fleet.root.issuer).unwrap();
    let (cert, key_path) = (fleet.dir.path().join("m.pem"), fleet.dir.path().join("m-key.pem"));
    std::fs::write(&cert, ca_cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    std::fs::set_permissions(&key_path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let err = format!("{:#}", CertificateAuthority::load(&cert, &key_path).err().unwrap());
    assert!(err.contains("m.pem: the idgate grant extension does not parse"), "{err}");
    // A peer presenting a chain through it is refused too.
    let mut leaf = rcgen::CertificateParams::new(vec![]).unwrap();
    leaf.subject_alt_names = vec![rcgen::SanType::URI("spiffe://fleet.idgate/app/alice".try_into().unwrap())];
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let issuer = rcgen::Issuer::from_ca_cert_der(ca_cert.der(), key).unwrap();
    let leaf = leaf.signed_by(&rcgen::KeyPair::generate().unwrap(), &issuer).unwrap();
    let (_, err) = client_check(&as_client(&b, &[]), &[leaf.der().clone(), ca_cert.der().clone()]).unwrap_err();
    assert!(err.contains("CA `CN=host CA m`: the idgate grant extension does not parse"), "{err}");
}
