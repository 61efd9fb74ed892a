//! What idgate reads from a certificate (its SPIFFE ID, its addresses, its serial) and the
//! errors a peer's certificate can earn.
use super::grant::Grant;
use crate::spiffe::SpiffeId;
use std::net::IpAddr;
use x509_parser::certificate::X509Certificate;

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
    #[error("{id} was issued by CA `{ca}`, an intermediate without an idgate grant: re-issue that CA with `idgate ca issue --grant ...`")]
    NoGrant { id: SpiffeId, ca: String },
    #[error("CA `{ca}`: {why}")]
    BadGrant { ca: String, why: super::grant::GrantError },
    #[error("{}", outside_grant(id, grant))]
    OutsideGrant { id: SpiffeId, grant: Grant },
    #[error("{0}")]
    Revoked(String),
}

fn outside_grant(id: &SpiffeId, grant: &Grant) -> String {
    if id.path().starts_with("/idgate/") {
        format!("{id} is not the host its CA was issued for ({})", grant.host)
    } else {
        format!("{id} is outside the grant of the CA that issued it ({grant})")
    }
}

/// A serial number in lowercase hex, as the trail, `idgate status` and the deny list print it.
pub(super) fn serial_hex(raw: &[u8]) -> String {
    raw.iter().map(|b| format!("{b:02x}")).collect()
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

/// The SPIFFE ID of a leaf certificate (its single URI SAN).
pub fn spiffe_id_of_cert(der: &[u8]) -> Result<SpiffeId, SpiffeCertError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| SpiffeCertError::Parse(e.to_string()))?;
    spiffe_id_of_parsed(&cert)
}

pub(super) fn spiffe_id_of_parsed(cert: &X509Certificate<'_>) -> Result<SpiffeId, SpiffeCertError> {
    use x509_parser::extensions::GeneralName;
    let san = cert.subject_alternative_name().map_err(|e| SpiffeCertError::Parse(e.to_string()))?;
    let uris: Vec<&str> = san
        .map(|s| s.value.general_names.iter().filter_map(|n| if let GeneralName::URI(u) = n { Some(*u) } else { None }).collect())
        .unwrap_or_default();
    match uris.as_slice() {
        [one] => Ok(SpiffeId::parse(one)?),
        _ => Err(SpiffeCertError::UriSanCount(uris.len())),
    }
}
