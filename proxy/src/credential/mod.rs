//! Credentials: the CA, X.509-SVIDs minted just in time, their rotation, and the TLS
//! configurations and verifiers built from them.
pub mod authority;
mod ca;
mod cert_fields;
mod chain;
pub mod deny_list;
pub mod expiry;
pub mod fleet;
pub mod fleet_jwks;
mod grant;
pub mod jwt_key;
mod key_pem;
mod manager;
mod selftest;
mod svid;
mod verify;

pub use ca::{init_embedded_ca, init_fleet_root, CertificateAuthority, CA_CERT_FILE, CA_KEY_FILE};
pub use cert_fields::{addresses_of_cert, spiffe_id_of_cert, SpiffeCertError};
pub use chain::PeerChain;
pub use grant::Grant;
pub use manager::{Credentials, HostAddresses, Issued, StagedAuthority, SvidSummary};
pub use svid::Svid;
pub use verify::{describe_tls_error, describe_tls_io_error, is_revoked_error, TrustBundle};

use std::sync::Arc;

/// The tunnel's crypto: aws-lc-rs, for its hybrid post-quantum key exchange (X25519MLKEM768;
/// ring has no ML-KEM), with `groups` offered in that order and TLS 1.3's AES-128-GCM/SHA-256
/// preferred (as BoringSSL and Go do): AES-256-GCM/SHA-384 takes 14 AES rounds instead of 10
/// on every byte, and a SHA-384 transcript that x86's SHA extensions do not cover.
pub fn crypto_provider(groups: &[crate::config::KeyExchange]) -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256;
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites.sort_by_key(|s| s.suite() != TLS13_AES_128_GCM_SHA256.suite());
    provider.kx_groups = groups.iter().map(|g| kx_group(*g)).collect();
    Arc::new(provider)
}

fn kx_group(g: crate::config::KeyExchange) -> &'static dyn rustls::crypto::SupportedKxGroup {
    use crate::config::KeyExchange::*;
    use rustls::crypto::aws_lc_rs::kx_group;
    match g {
        X25519Mlkem768 => kx_group::X25519MLKEM768,
        Secp256r1Mlkem768 => kx_group::SECP256R1MLKEM768,
        X25519 => kx_group::X25519,
        Secp256r1 => kx_group::SECP256R1,
        Secp384r1 => kx_group::SECP384R1,
    }
}

/// The name of the group a finished handshake used (for metrics and logs).
pub fn negotiated_group(conn: &rustls::CommonState) -> &'static str {
    use rustls::NamedGroup;
    match conn.negotiated_key_exchange_group().map(|g| g.name()) {
        Some(NamedGroup::X25519MLKEM768) => "X25519MLKEM768",
        Some(NamedGroup::secp256r1MLKEM768) => "SecP256r1MLKEM768",
        Some(NamedGroup::X25519) => "X25519",
        Some(NamedGroup::secp256r1) => "secp256r1",
        Some(NamedGroup::secp384r1) => "secp384r1",
        Some(_) => "other",
        None => "none",
    }
}

/// Private keys live in this process's memory only: a core dump (or a debugger attached by the
/// same user) must not carry them off. The service unit adds LimitCORE=0.
pub fn keep_keys_out_of_core_dumps() -> anyhow::Result<()> {
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(|e| anyhow::anyhow!("prctl(PR_SET_DUMPABLE, 0): {}", std::io::Error::from(e)))
}

/// ALPN for the tunnel protocol: HTTP/2 CONNECT over mTLS.
pub const ALPN_H2: &[u8] = b"h2";

#[cfg(test)]
#[path = "ca_tests.rs"]
mod ca_tests;

#[cfg(test)]
#[path = "manager_tests.rs"]
mod manager_tests;

#[cfg(test)]
pub(crate) mod test_pki;

#[cfg(test)]
mod tests {
    #[test]
    fn the_process_is_not_dumpable_once_keys_are_protected() {
        super::keep_keys_out_of_core_dumps().unwrap();
        assert_eq!(rustix::process::dumpable_behavior().unwrap(), rustix::process::DumpableBehavior::NotDumpable);
    }

    #[test]
    fn tunnel_prefers_aes128_gcm_sha256_and_offers_the_configured_groups_in_order() {
        use crate::config::KeyExchange::*;
        let p = super::crypto_provider(&[X25519Mlkem768, X25519]);
        assert_eq!(p.cipher_suites[0].suite(), rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        assert_eq!(p.cipher_suites.len(), rustls::crypto::aws_lc_rs::default_provider().cipher_suites.len(), "none dropped");
        let groups: Vec<_> = p.kx_groups.iter().map(|g| g.name()).collect();
        assert_eq!(groups, [rustls::NamedGroup::X25519MLKEM768, rustls::NamedGroup::X25519]);
    }
}
