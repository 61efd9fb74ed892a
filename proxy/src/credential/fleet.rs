//! Fleet trust: one offline root per trust domain (`idgate ca init`), and for each host an
//! intermediate CA signed by it (`idgate ca issue`), which that host's idgate mints its SVIDs
//! under. Each intermediate carries IP name constraints: the host's addresses. A host's SVID
//! naming any other address fails verification at every peer (and at the host's own start-up
//! self-test), so a compromised host cannot mint a certificate that passes for another host's
//! address. It also carries a grant (see `grant`): the host's own ID and the workload IDs it
//! may issue, which every peer checks too. Peers trust the root (one bundle for the fleet);
//! two roots during a rotation.
use super::ca::{write_private, CertificateAuthority};
use super::Grant;
use crate::spiffe::SpiffeId;
use anyhow::{bail, Context, Result};
use ipnet::IpNet;
use rcgen::{BasicConstraints, CertificateParams, CidrSubnet, DnType, GeneralSubtree, IsCa, KeyPair, NameConstraints, SanType};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// What `ca issue` writes: the host's CA certificate and key, for its `[ca]` section.
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The host's JWT signing key (`[http] jwt_key`), its public half recorded for `ca jwks`.
    pub jwt_key: PathBuf,
}

/// What a host CA is issued for.
pub struct HostCa<'a> {
    /// The host's name: its idgate ID is `spiffe://<td>/idgate/host/<host>`.
    pub host: &'a str,
    /// The only addresses its SVIDs may name.
    pub addresses: &'a [IpNet],
    /// The workload SPIFFE IDs it may issue (exact, or prefixes ending in `/*`).
    pub grants: &'a [String],
    pub days: u32,
}

/// Signs an intermediate CA for `for_host` with the root in `root_dir` (its `ca.pem` and
/// `ca-key.pem`); writes `out/ca.pem` and `out/ca-key.pem` (0600).
pub fn issue_host_ca(root_dir: &Path, for_host: &HostCa<'_>, out: &Path) -> Result<Issued> {
    let HostCa { host, addresses, grants, days } = *for_host;
    if addresses.is_empty() {
        bail!("give the host's addresses (--address, repeatable): its SVIDs may name only those");
    }
    let root = CertificateAuthority::load(&root_dir.join(super::CA_CERT_FILE), &root_dir.join(super::CA_KEY_FILE))
        .with_context(|| format!("loading the root CA from {}", root_dir.display()))?;
    let trust_domain = super::spiffe_id_of_cert(&root.cert_der)
        .map(|id| id.trust_domain().to_string())
        .context("the root CA carries no SPIFFE trust domain (URI SAN spiffe://<td>): was it made by `idgate ca init`?")?;
    let host_id = SpiffeId::parse(&format!("spiffe://{trust_domain}/idgate/host/{host}"))
        .ok()
        .filter(|_| !host.contains('/'))
        .with_context(|| format!("--host `{host}` is not a host name idgate can put in a SPIFFE ID (letters, digits, '.', '-', '_')"))?;
    let grant = Grant::new(host_id.clone(), grants).map_err(|e| anyhow::anyhow!("--grant: {e}"))?;
    let (cert, key) = (out.join(super::CA_CERT_FILE), out.join(super::CA_KEY_FILE));
    if cert.exists() || key.exists() {
        bail!("{} already holds a CA: issue into an empty directory (rotation keeps the old one until it is retired)", out.display());
    }
    let key_pair = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::OrganizationName, "idgate");
    // Each CA's name is its own (a rotation has two of a host's CAs, and two roots, alive at
    // once), and points at its issuer's key, so that verifiers pick the right one.
    params.distinguished_name.push(DnType::CommonName, format!("idgate host CA {host} ({trust_domain}) {}", super::ca::name_suffix()?));
    params.use_authority_key_identifier_extension = true;
    params.subject_alt_names = vec![SanType::URI(format!("spiffe://{trust_domain}").try_into()?)];
    // Signs SVIDs only, never another CA.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = super::ca::SIGNING_KEY_USAGES.to_vec();
    params.name_constraints = Some(NameConstraints {
        permitted_subtrees: addresses.iter().map(|n| GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(n.network(), n.prefix_len()))).collect(),
        excluded_subtrees: vec![],
    });
    params.custom_extensions = vec![grant.extension()];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days.into());
    let signed = params.signed_by(&key_pair, &root.issuer).context("signing the host CA with the root")?;
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    fs::set_permissions(out, fs::Permissions::from_mode(0o700))?;
    write_private(&key, Zeroizing::new(key_pair.serialize_pem()).as_bytes())?;
    fs::write(&cert, signed.pem()).with_context(|| format!("writing {}", cert.display()))?;
    let jwt_key = out.join(super::jwt_key::JWT_KEY_FILE);
    let jwt_pair = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    write_private(&jwt_key, Zeroizing::new(jwt_pair.serialize_pem()).as_bytes())?;
    super::fleet_jwks::record_host_key(root_dir, host, &host_id, grants, out)?;
    Ok(Issued { cert, key, jwt_key })
}
