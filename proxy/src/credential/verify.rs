//! Peer verification: certificates must chain to the trust bundle and carry exactly one
//! SPIFFE ID (URI SAN) in our trust domain. Host names play no part, so the stock
//! server-name check is replaced by a SPIFFE ID check.
use crate::spiffe::SpiffeId;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, Error, OtherError, RootCertStore, SignatureScheme};
use std::net::IpAddr;
use std::sync::Arc;

pub struct TrustBundle {
    pub roots: Arc<RootCertStore>,
    pub trust_domain: String,
    /// When the trust bundle files' certificates expire (for status and metrics).
    pub expiries: Vec<super::expiry::CertExpiry>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpiffeCertError {
    #[error("certificate does not parse: {0}")]
    Parse(String),
    #[error("certificate must carry exactly one URI SAN, found {0}")]
    UriSanCount(usize),
    #[error("URI SAN is not a SPIFFE ID: {0}")]
    NotSpiffe(#[from] crate::spiffe::SpiffeIdError),
    #[error("SPIFFE ID {id} is outside trust domain {expected}")]
    WrongTrustDomain { id: SpiffeId, expected: String },
    #[error("SPIFFE ID {0} is not an idgate host identity")]
    NotIdgate(SpiffeId),
    #[error("peer {id} is not the host of {dialled}: its certificate names {named}")]
    NotDestinationHost { id: SpiffeId, dialled: IpAddr, named: String },
    #[error("peer idgates are dialled by address, not by name ({0})")]
    NotAnAddress(String),
}

/// The IP SANs of a certificate.
pub fn addresses_of_cert(der: &[u8]) -> Result<Vec<IpAddr>, SpiffeCertError> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| SpiffeCertError::Parse(e.to_string()))?;
    let san = cert.subject_alternative_name().map_err(|e| SpiffeCertError::Parse(e.to_string()))?;
    let mut out = Vec::new();
    for name in san.iter().flat_map(|s| s.value.general_names.iter()) {
        match name {
            GeneralName::IPAddress(b) if b.len() == 4 => out.push(IpAddr::from(<[u8; 4]>::try_from(*b).expect("4 bytes"))),
            GeneralName::IPAddress(b) if b.len() == 16 => out.push(IpAddr::from(<[u8; 16]>::try_from(*b).expect("16 bytes"))),
            _ => {}
        }
    }
    Ok(out)
}

/// Hex serial number of a certificate (for logs: which SVID a peer presented).
pub fn serial_of_cert(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.raw_serial().iter().map(|b| format!("{b:02x}")).collect())
}

/// The SPIFFE ID of a leaf certificate (its single URI SAN).
pub fn spiffe_id_of_cert(der: &[u8]) -> Result<SpiffeId, SpiffeCertError> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| SpiffeCertError::Parse(e.to_string()))?;
    let san = cert.subject_alternative_name().map_err(|e| SpiffeCertError::Parse(e.to_string()))?;
    let uris: Vec<&str> = san
        .map(|s| s.value.general_names.iter().filter_map(|n| if let GeneralName::URI(u) = n { Some(*u) } else { None }).collect())
        .unwrap_or_default();
    match uris.as_slice() {
        [one] => Ok(SpiffeId::parse(one)?),
        _ => Err(SpiffeCertError::UriSanCount(uris.len())),
    }
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

/// Client-side check of the peer idgate: chain to the bundle, `spiffe://<td>/idgate/...`, and
/// an IP SAN equal to the address the flow was going to (the server name the pool dials
/// with). Without the last check any host of the trust domain could terminate every other
/// host's flows once a route or DNS pointed them at it.
#[derive(Debug)]
pub struct IdgateServerVerifier {
    roots: Arc<RootCertStore>,
    trust_domain: String,
    provider: Arc<CryptoProvider>,
}

impl IdgateServerVerifier {
    pub fn new(bundle: &TrustBundle, provider: Arc<CryptoProvider>) -> Self {
        IdgateServerVerifier { roots: bundle.roots.clone(), trust_domain: bundle.trust_domain.clone(), provider }
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
        let id = spiffe_id_of_cert(end_entity).map_err(reject)?;
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
