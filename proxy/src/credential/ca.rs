//! The certificate authority that signs SVIDs: embedded (created once under the state dir,
//! key file 0600) or loaded from existing files.
use anyhow::{bail, Context, Result};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType};
use rustls::pki_types::CertificateDer;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use zeroize::Zeroizing;

pub struct CertificateAuthority {
    /// The CA's name, key identifier and key, as rcgen signs with them.
    pub(super) issuer: Issuer<'static, KeyPair>,
    /// The CA certificate as distributed (DER).
    pub cert_der: CertificateDer<'static>,
    /// Sent after every leaf so that peers can verify it through a shared root: the CA itself
    /// when it is an intermediate, then any further intermediates its file holds (roots,
    /// self-signed, are left out: peers have them or must not trust them).
    pub(super) chain: Vec<CertificateDer<'static>>,
    /// No SVID outlives its issuer.
    pub(super) not_after: SystemTime,
    /// What it may issue (a host CA from `idgate ca issue`); None for a CA without the grant.
    pub grant: Option<super::Grant>,
}

pub const CA_CERT_FILE: &str = "ca.pem";
/// A SPIFFE signing certificate signs certificates (and CRLs); digitalSignature is for leaves
/// only (X509-SVID section 4.3 and its appendix).
pub(super) const SIGNING_KEY_USAGES: [KeyUsagePurpose; 2] = [KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
pub const CA_KEY_FILE: &str = "ca-key.pem";

/// Creates `<dir>/ca.pem` and `<dir>/ca-key.pem` (0600) unless they exist: a CA that signs
/// SVIDs only (the embedded CA, or one shared by hosts). Returns the cert path.
pub fn init_embedded_ca(dir: &Path, trust_domain: &str) -> Result<PathBuf> {
    create_ca(dir, trust_domain, 0, "idgate CA")
}

/// The same files for a fleet's offline root, which signs per-host CAs (`ca issue`) and may
/// also sign SVIDs directly (what `ca-init` always made, so it stays its alias).
pub fn init_fleet_root(dir: &Path, trust_domain: &str) -> Result<PathBuf> {
    create_ca(dir, trust_domain, 1, "idgate root CA")
}

fn create_ca(dir: &Path, trust_domain: &str, path_len: u8, name: &str) -> Result<PathBuf> {
    let cert_path = dir.join(CA_CERT_FILE);
    let key_path = dir.join(CA_KEY_FILE);
    if cert_path.exists() && key_path.exists() {
        return Ok(cert_path);
    }
    fs::create_dir_all(dir).with_context(|| format!("creating state dir {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::OrganizationName, "idgate");
    params.distinguished_name.push(DnType::CommonName, format!("{name} {trust_domain} {}", name_suffix()?));
    params.subject_alt_names = vec![SanType::URI(format!("spiffe://{trust_domain}").try_into()?)];
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = SIGNING_KEY_USAGES.to_vec();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(3650);
    let cert = params.self_signed(&key)?;
    write_private(&key_path, Zeroizing::new(key.serialize_pem()).as_bytes())?;
    fs::write(&cert_path, cert.pem()).with_context(|| format!("writing {}", cert_path.display()))?;
    Ok(cert_path)
}

/// A random tag that makes a CA's name unique: verifiers find issuers by name, and two CAs of
/// one trust domain (old and new root during a rotation) must not be confused.
pub(super) fn name_suffix() -> Result<String> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 4];
    ring::rand::SystemRandom::new().fill(&mut b).map_err(|_| anyhow::anyhow!("the system random source failed"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn is_self_signed(der: &[u8]) -> bool {
    x509_parser::parse_x509_certificate(der).is_ok_and(|(_, c)| c.subject() == c.issuer())
}

pub(super) fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(data)?;
    Ok(())
}

impl CertificateAuthority {
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self> {
        let key_file = crate::sys::private_file::read(key_path).map_err(|why| anyhow::anyhow!("CA key {}: {why}", key_path.display()))?;
        let key_pem = Zeroizing::new(
            String::from_utf8(key_file.content.to_vec()).map_err(|_| anyhow::anyhow!("CA key {} is not PEM text", key_path.display()))?,
        );
        let cert_pem = fs::read_to_string(cert_path).with_context(|| format!("reading {}", cert_path.display()))?;
        let key = super::key_pem::key_pair_from_pem(&key_pem).with_context(|| key_path.display().to_string())?;
        let certs: Vec<CertificateDer<'static>> =
            rustls_pemfile::certs(&mut cert_pem.as_bytes()).collect::<Result<_, _>>().with_context(|| format!("{}: bad PEM", cert_path.display()))?;
        let cert_der = certs.first().cloned().with_context(|| format!("{}: no PEM certificate", cert_path.display()))?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert_der).map_err(|e| anyhow::anyhow!("{}: {e}", cert_path.display()))?;
        if parsed.public_key().raw != key.subject_public_key_info().as_slice() {
            bail!("{} does not belong to the certificate in {} (their public keys differ)", key_path.display(), cert_path.display());
        }
        let not_after = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(parsed.validity().not_after.timestamp().max(0) as u64);
        let grant = super::Grant::of_cert(&parsed).map_err(|e| anyhow::anyhow!("{}: {e}", cert_path.display()))?;
        if !parsed.basic_constraints().ok().flatten().is_some_and(|bc| bc.value.ca) {
            bail!("{} is not a CA certificate", cert_path.display());
        }
        let issuer =
            Issuer::from_ca_cert_der(&cert_der, key).with_context(|| format!("{}: not a CA certificate rcgen can use", cert_path.display()))?;
        let chain = certs.into_iter().filter(|c| !is_self_signed(c)).collect();
        Ok(CertificateAuthority { issuer, cert_der, chain, not_after, grant })
    }

    /// A self-signed CA: a root, which peers must have in their trust bundle.
    pub fn is_root(&self) -> bool {
        is_self_signed(&self.cert_der)
    }
}
