//! The header through which the inbound side tells the local HTTP service who called.
use super::forged::Protected;
use crate::config::IdentityFormat;
use crate::spiffe::SpiffeId;
use http::{HeaderName, HeaderValue};
use std::fmt::Write;
use std::sync::Arc;

#[derive(Clone)]
pub struct IdentityHeader {
    pub name: HeaderName,
    pub format: IdentityFormat,
    /// The name under every spelling a service may read as it: what is stripped from callers.
    pub protected: Arc<Protected>,
}

impl IdentityHeader {
    pub fn new(name: HeaderName, format: IdentityFormat) -> Self {
        let protected = Arc::new(Protected::new([&name]));
        IdentityHeader { name, format, protected }
    }

    /// `xfcc` follows Envoy: `By=<this host's ID>;Hash=<sha256 of the caller's certificate>;URI=<caller ID>`.
    pub fn value(&self, server: &SpiffeId, caller: &SpiffeId, caller_cert: &[u8]) -> HeaderValue {
        let text = match self.format {
            IdentityFormat::Uri => caller.to_string(),
            IdentityFormat::Xfcc => {
                let digest = ring::digest::digest(&ring::digest::SHA256, caller_cert);
                let mut hash = String::with_capacity(64);
                for b in digest.as_ref() {
                    let _ = write!(hash, "{b:02x}");
                }
                format!("By={server};Hash={hash};URI={caller}")
            }
        };
        // SPIFFE IDs are validated to URI-safe ASCII, so this always succeeds.
        HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
    }
}
