//! The P-256 key a host signs JWTs with (JWT-SVIDs, client assertions), its public JWK, and the
//! OpenID discovery document that points verifiers at the keys. A fleet's hosts each have
//! their own key (`idgate ca issue` writes it beside the host CA); `idgate ca jwks` publishes
//! them all under the fleet's one issuer.
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use std::path::Path;

/// The file `idgate ca issue` writes a host's JWT key to, beside its CA.
pub const JWT_KEY_FILE: &str = "jwt-key.pem";

pub struct JwtKey {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    /// The key's RFC 7638 thumbprint: verifiers pick the key by it.
    pub kid: String,
    /// The public key as a JWK (with `kid`, `alg`, `use`).
    pub jwk: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum JwtKeyError {
    #[error("{0}")]
    File(#[from] crate::sys::private_file::PrivateFileError),
    #[error("{path}: not a PKCS#8 P-256 private key in PEM ({why})")]
    Format { path: String, why: String },
    #[error("generating a P-256 key failed")]
    Generate,
}

impl JwtKey {
    /// A new key that lives in this process's memory only.
    pub fn generate() -> Result<Self, JwtKeyError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).map_err(|_| JwtKeyError::Generate)?;
        Self::from_pkcs8(pkcs8.as_ref(), rng).map_err(|_| JwtKeyError::Generate)
    }

    /// The key in `path` (PKCS#8 PEM, as `idgate ca issue` writes it), checked like every
    /// secret file (mode 0600, owned by root or idgate's user, no link on its way).
    pub fn load(path: &Path) -> Result<Self, JwtKeyError> {
        let file = crate::sys::private_file::read(path)?;
        let format = |why: &str| JwtKeyError::Format { path: path.display().to_string(), why: why.into() };
        let der = match rustls_pemfile::read_one_from_slice(&file.content) {
            Ok(Some((rustls_pemfile::Item::Pkcs8Key(der), _))) => der,
            _ => return Err(format("expected one PRIVATE KEY block")),
        };
        Self::from_pkcs8(der.secret_pkcs8_der(), SystemRandom::new()).map_err(|e| format(&e.to_string()))
    }

    fn from_pkcs8(der: &[u8], rng: SystemRandom) -> Result<Self, ring::error::KeyRejected> {
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)?;
        let (kid, jwk) = public_jwk(key.public_key().as_ref());
        Ok(JwtKey { key, rng, kid, jwk })
    }

    /// A compact JWS (ES256) of `claims`, with this key's `kid`.
    pub fn sign(&self, claims: &Value) -> Result<String, JwtKeyError> {
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        let mut jws = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
        let sig = self.key.sign(&self.rng, jws.as_bytes()).map_err(|_| JwtKeyError::Generate)?;
        jws.push('.');
        jws.push_str(&B64.encode(sig.as_ref()));
        Ok(jws)
    }
}

/// The JWK of an uncompressed P-256 point (`04 || x || y`) and its RFC 7638 thumbprint.
pub fn public_jwk(point: &[u8]) -> (String, Value) {
    let (x, y) = (B64.encode(&point[1..33]), B64.encode(&point[33..65]));
    // RFC 7638: the required members in lexicographic order, no whitespace.
    let thumbprint = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    let kid = B64.encode(ring::digest::digest(&ring::digest::SHA256, thumbprint.as_bytes()));
    let jwk = json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "alg": "ES256", "use": "sig"});
    (kid, jwk)
}

/// The public JWK of a PKCS#8 PEM private key file (what `ca issue` records for the fleet).
pub fn public_jwk_of_pem(pem: &[u8]) -> Option<Value> {
    let Ok(Some((rustls_pemfile::Item::Pkcs8Key(der), _))) = rustls_pemfile::read_one_from_slice(pem) else { return None };
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der.secret_pkcs8_der(), &SystemRandom::new()).ok()?;
    Some(public_jwk(key.public_key().as_ref()).1)
}

/// The OpenID Connect discovery document of an issuer whose keys are at `<issuer>/jwks.json`:
/// what cloud providers and authorization servers read to verify its JWTs.
pub fn discovery(issuer: &str) -> Value {
    json!({
        "issuer": issuer,
        "jwks_uri": format!("{}/jwks.json", issuer.trim_end_matches('/')),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "claims_supported": ["sub", "aud", "exp", "iat", "iss", "jti"],
    })
}
