//! Credentials: the CA, X.509-SVIDs minted just in time, their rotation, and the TLS
//! configurations and verifiers built from them.
mod ca;
mod manager;
mod selftest;
mod svid;
mod verify;

pub use ca::{init_embedded_ca, CertificateAuthority, CA_KEY_FILE};
pub use manager::{Credentials, Issued, SvidSummary};
pub use svid::Svid;
pub use verify::{serial_of_cert, spiffe_id_of_cert, TrustBundle};

use std::sync::Arc;

pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// ALPN for the tunnel protocol: HTTP/2 CONNECT over mTLS.
pub const ALPN_H2: &[u8] = b"h2";
