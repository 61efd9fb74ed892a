//! One X.509-SVID: ECDSA P-256 key made in memory, URI SAN = SPIFFE ID, short lifetime.
use super::ca::CertificateAuthority;
use crate::spiffe::SpiffeId;
use anyhow::{bail, Context, Result};
use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType, SerialNumber};
use rustls::crypto::aws_lc_rs::sign::any_ecdsa_type;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use zeroize::Zeroizing;

pub struct Svid {
    pub id: SpiffeId,
    /// IP SANs (host SVIDs only).
    pub addresses: Vec<IpAddr>,
    pub certified: Arc<CertifiedKey>,
    pub serial: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// Changes with every mint; pooled connections remember it to retire on rotation.
    pub generation: u64,
}

/// Clock skew allowance between hosts.
const BACKDATE: Duration = Duration::from_secs(60);

impl Svid {
    /// `addresses` go in as IP SANs: a host SVID names the addresses it may be dialled on, and
    /// clients accept it only for those destinations (workload SVIDs carry none).
    pub fn mint(ca: &CertificateAuthority, id: &SpiffeId, addresses: &[IpAddr], ttl: Duration, generation: u64) -> Result<Svid> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![SanType::URI(id.as_str().try_into()?)];
        params.subject_alt_names.extend(addresses.iter().map(|ip| SanType::IpAddress(*ip)));
        // basicConstraints present with cA false, which DER writes as an empty SEQUENCE (the
        // default is never encoded): X509-SVID section 4.1 asks leaves to say they are no CA.
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyAgreement];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let serial = random_serial()?;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let now = SystemTime::now();
        let not_before = now - BACKDATE;
        if ca.not_after <= now {
            bail!("the CA certificate expired at {}: no SVID can be minted under it", humantime(ca.not_after));
        }
        let not_after = (now + ttl).min(ca.not_after);
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        let cert = params.signed_by(&key, &ca.issuer)?;
        // Our copy of the key is wiped once loaded (the key objects of rcgen and ring, which we
        // cannot wipe, live in memory only and the process is not dumpable).
        let key_der = Zeroizing::new(key.serialize_der());
        let signing_key = any_ecdsa_type(&PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der.as_slice()))).context("loading SVID key")?;
        let mut chain = vec![CertificateDer::from(cert.der().to_vec())];
        chain.extend(ca.chain.iter().cloned());
        Ok(Svid {
            id: id.clone(),
            addresses: addresses.to_vec(),
            certified: Arc::new(CertifiedKey::new(chain, signing_key)),
            serial: serial.iter().map(|b| format!("{b:02x}")).collect(),
            not_before,
            not_after,
            generation,
        })
    }

    /// Past its rotation point: time to mint the successor.
    pub fn needs_rotation(&self, now: SystemTime) -> bool {
        now >= rotation_point(self.not_before + BACKDATE, self.not_after, &self.serial)
    }
}

/// When an SVID valid from `issued` to `not_after` is replaced: between half and seven tenths
/// of its life, at a point its (random) serial picks. SVIDs minted together (a restart, a
/// burst of new workloads) are then renewed spread over a fifth of their life, not all in
/// the same second.
pub fn rotation_point(issued: SystemTime, not_after: SystemTime, serial: &str) -> SystemTime {
    let life = not_after.duration_since(issued).unwrap_or_default();
    let tail = serial.get(serial.len().saturating_sub(8)..).and_then(|h| u32::from_str_radix(h, 16).ok()).unwrap_or(0);
    let spread = life.mul_f64(0.2 * f64::from(tail) / f64::from(u32::MAX));
    issued + life / 2 + spread
}

fn random_serial() -> Result<[u8; 16]> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut b).map_err(|_| anyhow::anyhow!("the system's random number generator failed"))?;
    b[0] &= 0x7f; // positive serial
    b[0] |= 0x01;
    Ok(b)
}

fn humantime(t: SystemTime) -> String {
    time::OffsetDateTime::from(t).format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| format!("{t:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svids_minted_together_are_renewed_spread_over_a_fifth_of_their_life() {
        let issued = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let life = Duration::from_secs(3600);
        let mut per_second = std::collections::HashMap::<u64, u32>::new();
        let (mut first, mut last) = (u64::MAX, 0);
        for _ in 0..1000 {
            let serial: String = random_serial().unwrap().iter().map(|b| format!("{b:02x}")).collect();
            let at = rotation_point(issued, issued + life, &serial).duration_since(issued).unwrap().as_secs();
            assert!((1800..=2520).contains(&at), "rotation at {at} s of a 3600 s life");
            *per_second.entry(at).or_default() += 1;
            (first, last) = (first.min(at), last.max(at));
        }
        let busiest = per_second.values().max().copied().unwrap_or(0);
        assert!(busiest <= 15, "{busiest} of 1,000 SVIDs minted together fall due in the same second");
        assert!(last - first > 600, "renewals spread over only {} s", last - first);
    }
}
