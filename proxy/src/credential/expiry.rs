//! When the certificates this host depends on expire: its CA (no SVID outlives it) and the
//! trust bundle's roots (a peer whose chain ends at an expired root is refused). Shown by
//! `idgate status` and exported as metrics, so that a fleet renews them before they lapse.
use rustls::pki_types::CertificateDer;

#[derive(Clone, Debug, serde::Serialize)]
pub struct CertExpiry {
    pub subject: String,
    pub not_after_unix: u64,
}

impl CertExpiry {
    /// None for a certificate that does not parse (one that does not parse is never loaded).
    pub fn of(der: &CertificateDer<'_>) -> Option<CertExpiry> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        Some(CertExpiry { subject: cert.subject().to_string(), not_after_unix: cert.validity().not_after.timestamp().max(0) as u64 })
    }
}
