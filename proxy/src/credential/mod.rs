//! Credentials: the CA, X.509-SVIDs minted just in time, their rotation, and the TLS
//! configurations and verifiers built from them.
mod ca;
pub mod expiry;
pub mod fleet;
mod key_pem;
mod manager;
mod selftest;
mod svid;
mod verify;

pub use ca::{init_embedded_ca, init_fleet_root, CertificateAuthority, CA_CERT_FILE, CA_KEY_FILE};
pub use manager::{Credentials, HostAddresses, Issued, SvidSummary};
pub use svid::Svid;
pub use verify::{addresses_of_cert, describe_tls_error, describe_tls_io_error, serial_of_cert, spiffe_id_of_cert, SpiffeCertError, TrustBundle};

use std::sync::Arc;

/// The tunnel's crypto: ring, with TLS 1.3's AES-128-GCM/SHA-256 preferred (as BoringSSL and
/// Go do). ring's default puts AES-256-GCM/SHA-384 first: 14 AES rounds instead of 10 on every
/// byte, and a SHA-384 transcript that x86's SHA extensions do not cover. (aws-lc-rs was
/// measured too: its X25519 is twice as fast, but a whole handshake gained 7% and minting an
/// SVID lost 20%, for a second C library in the build.)
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256;
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.sort_by_key(|s| s.suite() != TLS13_AES_128_GCM_SHA256.suite());
    Arc::new(provider)
}

/// Private keys live in this process's memory only: a core dump (or a debugger attached by the
/// same user) must not carry them off. The service unit adds LimitCORE=0.
pub fn keep_keys_out_of_core_dumps() -> anyhow::Result<()> {
    // SAFETY: PR_SET_DUMPABLE takes one integer argument and changes only this process's flag.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        anyhow::bail!("prctl(PR_SET_DUMPABLE, 0): {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// ALPN for the tunnel protocol: HTTP/2 CONNECT over mTLS.
pub const ALPN_H2: &[u8] = b"h2";

#[cfg(test)]
#[path = "ca_tests.rs"]
mod ca_tests;

#[cfg(test)]
mod tests {
    #[test]
    fn the_process_is_not_dumpable_once_keys_are_protected() {
        super::keep_keys_out_of_core_dumps().unwrap();
        // SAFETY: PR_GET_DUMPABLE takes no argument and returns the flag.
        assert_eq!(unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) }, 0);
    }

    #[test]
    fn tunnel_prefers_aes128_gcm_sha256() {
        let p = super::crypto_provider();
        assert_eq!(p.cipher_suites[0].suite(), rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        assert_eq!(p.cipher_suites.len(), rustls::crypto::ring::default_provider().cipher_suites.len(), "none dropped");
    }
}
