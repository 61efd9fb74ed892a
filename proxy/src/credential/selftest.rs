//! A full mTLS handshake in memory at start, between this host's own client and server
//! configurations: a CA that does not chain to the trust bundle, or an SVID the verifiers
//! reject, stops the start with a clear error instead of failing every flow later. It also
//! runs the handshake code once, so the first real flow does not pay for cold code pages and
//! first-use crypto set-up.
use anyhow::{bail, Context, Result};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};
use std::io::{Read, Write};
use std::net::IpAddr;
use std::sync::Arc;

/// The leaf certificate the server side received from the client, which dialled `dialled`.
pub fn handshake(client: Arc<ClientConfig>, server: Arc<ServerConfig>, dialled: IpAddr) -> Result<Vec<u8>> {
    let name = ServerName::IpAddress(dialled.into());
    let mut client = Connection::Client(ClientConnection::new(client, name).context("starting the client side")?);
    let mut server = Connection::Server(ServerConnection::new(server).context("starting the server side")?);
    // TLS 1.3 with client certificates finishes in two flights each way; allow a few more.
    for _ in 0..8 {
        if !client.is_handshaking() && !server.is_handshaking() {
            // One application record each way proves both sides derived the same keys.
            client.writer().write_all(b"ping")?;
            pump(&mut client, &mut server).context("server side")?;
            let mut got = [0u8; 4];
            server.reader().read_exact(&mut got).context("reading the client's first record")?;
            if &got != b"ping" {
                bail!("application data corrupted");
            }
            let leaf = server.peer_certificates().and_then(|c| c.first()).context("no client certificate")?;
            return Ok(leaf.to_vec());
        }
        pump(&mut client, &mut server).context("server side")?;
        pump(&mut server, &mut client).context("client side")?;
    }
    bail!("handshake did not finish")
}

/// Moves everything `from` has to send into `to`, and lets `to` process it.
fn pump(from: &mut Connection, to: &mut Connection) -> Result<()> {
    let mut wire = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut wire)?;
    }
    let mut slice = wire.as_slice();
    while !slice.is_empty() {
        to.read_tls(&mut slice)?;
        to.process_new_packets().map_err(|e| anyhow::anyhow!(super::describe_tls_error(&e)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::credential::{init_embedded_ca, CertificateAuthority, Credentials, HostAddresses, TrustBundle, CA_KEY_FILE};
    use crate::spiffe::SpiffeId;
    use std::sync::Arc;
    use std::time::Duration;

    fn ca(dir: &std::path::Path) -> CertificateAuthority {
        let cert = init_embedded_ca(dir, "selftest.idgate").unwrap();
        CertificateAuthority::load(&cert, &dir.join(CA_KEY_FILE)).unwrap()
    }

    fn credentials(ca: CertificateAuthority, trusted: &CertificateAuthority) -> Credentials {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(trusted.cert_der.clone()).unwrap();
        let bundle = TrustBundle { roots: Arc::new(roots), trust_domain: "selftest.idgate".into(), expiries: Vec::new() };
        let id = SpiffeId::parse("spiffe://selftest.idgate/idgate/host/a").unwrap();
        Credentials::new(ca, bundle, id, HostAddresses::Configured(vec![[127, 0, 0, 1].into()]), Duration::from_secs(600)).unwrap()
    }

    #[test]
    fn passes_when_the_bundle_trusts_our_ca() {
        let dir = tempfile::tempdir().unwrap();
        let trusted = ca(dir.path());
        credentials(ca(dir.path()), &trusted).self_test().unwrap();
    }

    #[test]
    fn workload_handshake_prefers_aes128_and_sends_no_session_tickets() {
        use rustls::{ClientConnection, Connection, ServerConnection};
        let dir = tempfile::tempdir().unwrap();
        let trusted = ca(dir.path());
        let creds = credentials(ca(dir.path()), &trusted);
        let issued = creds.workload(&SpiffeId::parse("spiffe://selftest.idgate/w").unwrap()).unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut client = Connection::Client(ClientConnection::new(issued.client_config.clone(), name).unwrap());
        let mut server = Connection::Server(ServerConnection::new(creds.server_config()).unwrap());
        loop {
            super::pump(&mut client, &mut server).unwrap();
            if !server.is_handshaking() {
                break; // the client's Finished was just processed
            }
            super::pump(&mut server, &mut client).unwrap();
        }
        assert_eq!(client.negotiated_cipher_suite().unwrap().suite(), rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        // Tickets would be queued right after the client's Finished; none may be.
        assert!(!server.wants_write(), "the server queued post-handshake messages (session tickets)");
    }

    #[test]
    fn a_host_certificate_is_refused_for_an_address_it_does_not_name() {
        let dir = tempfile::tempdir().unwrap();
        let trusted = ca(dir.path());
        let creds = credentials(ca(dir.path()), &trusted);
        let client = creds.client_config_for_test(creds.server_cert.0.read().clone()).unwrap();
        let err = super::handshake(std::sync::Arc::new(client), creds.server_config(), [10, 9, 9, 9].into()).unwrap_err();
        assert!(
            format!("{err:#}").contains("spiffe://selftest.idgate/idgate/host/a is not the host of 10.9.9.9: its certificate names 127.0.0.1"),
            "{err:#}"
        );
    }

    #[test]
    fn fails_when_the_bundle_does_not_trust_our_ca() {
        let (ours, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let err = credentials(ca(ours.path()), &ca(other.path())).self_test().unwrap_err();
        // Both CAs share a subject, so the chain is built and its signature fails.
        assert!(format!("{err:#}").contains("invalid peer certificate"), "{err:#}");
    }
}
