//! JWT-SVIDs (ES256) minted just in time for a workload's SPIFFE ID and one audience, cached
//! until half their lifetime has passed. The signing key lives in memory only; verifiers get
//! its public half as a JWKS document from the admin listener, which they find by each token's
//! `iss` (this host's SPIFFE ID, or `http.jwt_issuer`).
use super::secrets::Secret;
use crate::spiffe::SpiffeId;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use bytes::Bytes;
use parking_lot::Mutex;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Past this many cached tokens the cache starts over (bounds memory under identity churn).
const MAX_CACHED: usize = 10_000;

pub struct JwtIssuer {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    kid: String,
    jwk: serde_json::Value,
    /// `iss` of every token: which host's JWKS verifies it.
    issuer: String,
    ttl: Duration,
    cache: Mutex<HashMap<(SpiffeId, String), Cached>>,
    pub minted: std::sync::atomic::AtomicU64,
}

struct Cached {
    token: Secret,
    refresh_at: Instant,
}

impl JwtIssuer {
    pub fn new(ttl: Duration, issuer: String) -> anyhow::Result<Self> {
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).map_err(|_| anyhow::anyhow!("generating the JWT signing key"))?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|_| anyhow::anyhow!("loading the JWT signing key"))?;
        // Uncompressed point: 0x04 || x || y.
        let point = key.public_key().as_ref();
        let (x, y) = (B64.encode(&point[1..33]), B64.encode(&point[33..65]));
        // RFC 7638 thumbprint: members in lexicographic order, no whitespace.
        let thumbprint = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = B64.encode(ring::digest::digest(&ring::digest::SHA256, thumbprint.as_bytes()));
        let jwk = serde_json::json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "alg": "ES256", "use": "sig"});
        Ok(JwtIssuer { key, rng, kid, jwk, issuer, ttl, cache: Mutex::new(HashMap::new()), minted: Default::default() })
    }

    /// The JWKS document (`{"keys": [...]}`) verifiers fetch.
    pub fn jwks(&self) -> String {
        serde_json::json!({ "keys": [self.jwk] }).to_string()
    }

    /// A token for (subject, audience): the cached one while it is young, else a new one.
    pub fn token(&self, subject: &SpiffeId, audience: &str) -> anyhow::Result<Secret> {
        let key = (subject.clone(), audience.to_string());
        let now = Instant::now();
        if let Some(c) = self.cache.lock().get(&key) {
            if now < c.refresh_at {
                return Ok(c.token.clone());
            }
        }
        let token = self.mint(subject, audience, SystemTime::now())?;
        let mut cache = self.cache.lock();
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(key, Cached { token: token.clone(), refresh_at: now + self.ttl / 2 });
        Ok(token)
    }

    fn mint(&self, subject: &SpiffeId, audience: &str, now: SystemTime) -> anyhow::Result<Secret> {
        let iat = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        let claims = serde_json::json!({"iss": self.issuer, "sub": subject.as_str(), "aud": [audience], "iat": iat, "exp": iat + self.ttl.as_secs()});
        let mut jws = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
        let sig = self.key.sign(&self.rng, jws.as_bytes()).map_err(|_| anyhow::anyhow!("signing a JWT-SVID for {subject}"))?;
        jws.push('.');
        jws.push_str(&B64.encode(sig.as_ref()));
        self.minted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Secret::from_bytes(Bytes::from(jws)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};

    #[test]
    fn token_verifies_with_the_published_key_and_is_cached() {
        let issuer = JwtIssuer::new(Duration::from_secs(60), "spiffe://td/idgate/host/a".into()).unwrap();
        let id = SpiffeId::parse("spiffe://td/app/a").unwrap();
        let token = issuer.token(&id, "billing").unwrap();
        let text = std::str::from_utf8(token.expose()).unwrap().to_string();
        let (signed, sig) = text.rsplit_once('.').unwrap();
        let jwks: serde_json::Value = serde_json::from_str(&issuer.jwks()).unwrap();
        let jwk = &jwks["keys"][0];
        let mut point = vec![4u8];
        point.extend(B64.decode(jwk["x"].as_str().unwrap()).unwrap());
        point.extend(B64.decode(jwk["y"].as_str().unwrap()).unwrap());
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point).verify(signed.as_bytes(), &B64.decode(sig).unwrap()).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&B64.decode(signed.split('.').nth(1).unwrap()).unwrap()).unwrap();
        assert_eq!(claims["sub"], "spiffe://td/app/a");
        assert_eq!(claims["iss"], "spiffe://td/idgate/host/a");
        assert_eq!(claims["aud"][0], "billing");
        assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 60);
        assert_eq!(issuer.token(&id, "billing").unwrap(), token);
        assert_ne!(issuer.token(&id, "other").unwrap(), token);
    }
}
