//! What a peer's verified certificate chain says, for the deny list and the grants: the leaf's
//! SPIFFE ID, the serial of every certificate the peer presented, and the hosts its CAs were
//! issued for. Reading it also checks that the CA that issued the leaf may issue its ID.
use super::cert_fields::{serial_hex, spiffe_id_of_parsed, SpiffeCertError};
use super::grant::Grant;
use crate::spiffe::SpiffeId;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;
use x509_parser::certificate::X509Certificate;

/// One peer's chain as far as revocation cares: every certificate in it can be revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerChain {
    /// The leaf's SPIFFE ID.
    pub id: SpiffeId,
    /// Lowercase hex: the leaf's serial, then each presented intermediate's.
    pub serials: Vec<String>,
    /// The hosts the presented CAs were issued for (their grants).
    pub hosts: Vec<SpiffeId>,
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, SpiffeCertError> {
    x509_parser::parse_x509_certificate(der).map(|(_, c)| c).map_err(|e| SpiffeCertError::Parse(e.to_string()))
}

/// Whether `der` is one of `anchors` (same subject and key): a CA this host trusts outright.
fn is_anchor(der: &CertificateDer<'_>, anchors: &RootCertStore) -> bool {
    let mut one = RootCertStore::empty();
    if one.add(der.clone()).is_err() {
        return false;
    }
    let this = &one.roots[0];
    anchors.roots.iter().any(|a| a.subject == this.subject && a.subject_public_key_info == this.subject_public_key_info)
}

impl PeerChain {
    /// `leaf` and the `intermediates` a peer presented, which TLS verification has accepted
    /// through `anchors`. The leaf's ID must be within the grant of the CA that issued it when
    /// that CA is one of the presented intermediates (and not a trust anchor here); a leaf
    /// signed by a trust anchor (an embedded CA, a CA the fleet shares) has no grant to check.
    /// Issuers are found by name, as path building finds them; should several presented CAs
    /// bear the leaf's issuer name, each must permit the ID.
    pub fn inspect(leaf: &[u8], intermediates: &[CertificateDer<'_>], anchors: &RootCertStore) -> Result<PeerChain, SpiffeCertError> {
        Self::walk(leaf, intermediates, Some(anchors))
    }

    /// The facts of a chain whose handshake `inspect` already passed (to record with the
    /// connection or flow).
    pub fn read(leaf: &[u8], intermediates: &[CertificateDer<'_>]) -> Result<PeerChain, SpiffeCertError> {
        Self::walk(leaf, intermediates, None)
    }

    /// With `anchors`, the grant of the leaf's issuer is checked too.
    fn walk(leaf: &[u8], intermediates: &[CertificateDer<'_>], anchors: Option<&RootCertStore>) -> Result<PeerChain, SpiffeCertError> {
        let leaf_cert = parse(leaf)?;
        let id = spiffe_id_of_parsed(&leaf_cert)?;
        let mut serials = vec![serial_hex(leaf_cert.raw_serial())];
        let mut hosts = Vec::new();
        for der in intermediates {
            let ca = parse(der)?;
            serials.push(serial_hex(ca.raw_serial()));
            let grant = Grant::of_cert(&ca).map_err(|why| SpiffeCertError::BadGrant { ca: ca.subject().to_string(), why });
            if let Ok(Some(g)) = &grant {
                if !hosts.contains(&g.host) {
                    hosts.push(g.host.clone());
                }
            }
            let Some(anchors) = anchors else { continue };
            if ca.subject().as_raw() != leaf_cert.issuer().as_raw() || is_anchor(der, anchors) {
                continue;
            }
            match grant? {
                None => return Err(SpiffeCertError::NoGrant { id, ca: ca.subject().to_string() }),
                Some(g) if !g.permits(&id) => return Err(SpiffeCertError::OutsideGrant { id, grant: g }),
                Some(_) => {}
            }
        }
        Ok(PeerChain { id, serials, hosts })
    }
}

#[cfg(test)]
#[path = "chain_tests.rs"]
mod tests;
