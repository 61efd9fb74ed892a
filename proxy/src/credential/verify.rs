//! Peer verification: certificates must chain to the trust bundle and carry exactly one
//! SPIFFE ID (URI SAN) in our trust domain, which the CA that issued it may issue (its grant),
//! and no certificate of the chain may be on the deny list. Host names play no part, so the
//! stock server-name check is replaced by a SPIFFE ID check.
use super::cert_fields::{addresses_of_cert, spiffe_id_of_cert, SpiffeCertError};
use super::chain::PeerChain;
use crate::credential::deny_list::DenyList;
use crate::spiffe::SpiffeId;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, OtherError, RootCertStore, SignatureScheme};
use std::net::IpAddr;
use std::sync::Arc;

pub struct TrustBundle {
    pub roots: Arc<RootCertStore>,
    pub trust_domain: String,
    /// When the trust bundle files' certificates expire (for status and metrics).
    pub expiries: Vec<super::expiry::CertExpiry>,
}

impl TrustBundle {
    /// Checks a verified peer leaf's SPIFFE ID belongs to our trust domain.
    pub fn peer_id(&self, leaf: &[u8]) -> Result<SpiffeId, SpiffeCertError> {
        let id = spiffe_id_of_cert(leaf)?;
        if id.trust_domain() != self.trust_domain {
            return Err(SpiffeCertError::WrongTrustDomain { id, expected: self.trust_domain.clone() });
        }
        Ok(id)
    }
}

/// A TLS error in words: rustls shows our verifiers' reasons in their Debug form.
pub fn describe_tls_error(e: &Error) -> String {
    match e {
        Error::InvalidCertificate(CertificateError::Other(OtherError(why))) if why.to_string() == "NameConstraintViolation" => {
            "invalid peer certificate: it names an address (or name) its CA may not issue for: a host CA from `idgate ca issue` \
             covers only the addresses it was issued with (--address)"
                .into()
        }
        Error::InvalidCertificate(CertificateError::Other(OtherError(why))) => format!("invalid peer certificate: {why}"),
        other => other.to_string(),
    }
}

/// A failed handshake's I/O error in words (tokio-rustls wraps the TLS error in it).
pub fn describe_tls_io_error(e: &std::io::Error) -> String {
    match e.get_ref().and_then(|e| e.downcast_ref::<Error>()) {
        Some(tls) => describe_tls_error(tls),
        None => e.to_string(),
    }
}

fn reject(e: SpiffeCertError) -> Error {
    Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
}

/// What both sides check of a peer's chain once it verified: the leaf's ID within its issuer's
/// grant, and no certificate of the chain (nor the host its CA was issued for) on the deny
/// list in force.
fn check_chain(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    roots: &RootCertStore,
    revoked: &DenyList,
) -> Result<PeerChain, SpiffeCertError> {
    let chain = PeerChain::inspect(end_entity, intermediates, roots)?;
    match revoked.load().why_chain(&chain) {
        Some(why) => Err(SpiffeCertError::Revoked(why)),
        None => Ok(chain),
    }
}

/// Whether a failed handshake failed because the peer's chain is on the deny list.
pub fn is_revoked_error(e: &Error) -> bool {
    matches!(e, Error::InvalidCertificate(CertificateError::Other(OtherError(why)))
        if matches!(why.downcast_ref::<SpiffeCertError>(), Some(SpiffeCertError::Revoked(_))))
}

/// Client-side check of the peer idgate: chain to the bundle, `spiffe://<td>/idgate/...`
/// within its CA's grant and not revoked, and an IP SAN equal to the address the flow was
/// going to (the server name the pool dials with). Without the last check any host of the
/// trust domain could terminate every other host's flows once a route or DNS pointed them at it.
#[derive(Debug)]
pub struct IdgateServerVerifier {
    roots: Arc<RootCertStore>,
    trust_domain: String,
    provider: Arc<CryptoProvider>,
    revoked: Arc<DenyList>,
}

impl IdgateServerVerifier {
    pub fn new(bundle: &TrustBundle, provider: Arc<CryptoProvider>, revoked: Arc<DenyList>) -> Self {
        IdgateServerVerifier { roots: bundle.roots.clone(), trust_domain: bundle.trust_domain.clone(), provider, revoked }
    }
}

impl ServerCertVerifier for IdgateServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        let id = check_chain(end_entity, intermediates, &self.roots, &self.revoked).map_err(reject)?.id;
        if id.trust_domain() != self.trust_domain {
            return Err(reject(SpiffeCertError::WrongTrustDomain { id, expected: self.trust_domain.clone() }));
        }
        if !id.path().starts_with("/idgate/") {
            return Err(reject(SpiffeCertError::NotIdgate(id)));
        }
        let dialled = match server_name {
            ServerName::IpAddress(ip) => IpAddr::from(*ip),
            other => return Err(reject(SpiffeCertError::NotAnAddress(other.to_str().into_owned()))),
        };
        let named = addresses_of_cert(end_entity).map_err(reject)?;
        if !named.contains(&dialled) {
            let named = if named.is_empty() { "no address".into() } else { named.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ") };
            return Err(reject(SpiffeCertError::NotDestinationHost { id, dialled, named }));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Server-side check of a calling idgate: rustls' WebPKI client verification (chain to the
/// bundle, client-auth usage), then the same grant and deny-list checks as the client side.
#[derive(Debug)]
pub struct IdgateClientVerifier {
    webpki: Arc<dyn ClientCertVerifier>,
    roots: Arc<RootCertStore>,
    revoked: Arc<DenyList>,
}

impl IdgateClientVerifier {
    pub fn new(bundle: &TrustBundle, provider: Arc<CryptoProvider>, revoked: Arc<DenyList>) -> anyhow::Result<Self> {
        let webpki = rustls::server::WebPkiClientVerifier::builder_with_provider(bundle.roots.clone(), provider).build()?;
        Ok(IdgateClientVerifier { webpki, roots: bundle.roots.clone(), revoked })
    }
}

impl ClientCertVerifier for IdgateClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.webpki.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.webpki.verify_client_cert(end_entity, intermediates, now)?;
        check_chain(end_entity, intermediates, &self.roots, &self.revoked).map_err(reject)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
