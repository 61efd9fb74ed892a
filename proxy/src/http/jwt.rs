//! JWT-SVIDs (ES256) minted just in time for a workload's SPIFFE ID and one audience, cached
//! until half their lifetime has passed. The signing key lives in memory only; verifiers get
//! its public half as a JWKS document from the admin listener, which they find by each token's
//! `iss` (this host's SPIFFE ID, or `http.jwt_issuer`).
use super::secrets::Secret;
use crate::credential::jwt_key::JwtKey;
use crate::spiffe::SpiffeId;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Past this many cached tokens the cache starts over (bounds memory under identity churn).
const MAX_CACHED: usize = 10_000;
/// Lifetime of a client assertion: one token request.
const ASSERTION_TTL: u64 = 60;

pub struct JwtIssuer {
    key: JwtKey,
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
    /// `key`: the host's JWT key (`[http] jwt_key`), else a new one in memory.
    pub fn new(ttl: Duration, issuer: String, key: Option<&std::path::Path>) -> anyhow::Result<Self> {
        let key = match key {
            Some(path) => JwtKey::load(path)?,
            None => JwtKey::generate()?,
        };
        Ok(JwtIssuer { key, issuer, ttl, cache: Mutex::new(HashMap::new()), minted: Default::default() })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The JWKS document (`{"keys": [...]}`) verifiers fetch.
    pub fn jwks(&self) -> String {
        serde_json::json!({ "keys": [self.key.jwk] }).to_string()
    }

    /// The OpenID discovery document for this issuer (its keys at `<issuer>/jwks.json`).
    pub fn discovery(&self) -> String {
        crate::credential::jwt_key::discovery(&self.issuer).to_string()
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
        let token = self.mint(subject, audience)?;
        let mut cache = self.cache.lock();
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(key, Cached { token: token.clone(), refresh_at: now + self.ttl / 2 });
        Ok(token)
    }

    /// A fresh JWT-SVID (never cached): a subject token sent once to a token service.
    pub fn mint(&self, subject: &SpiffeId, audience: &str) -> anyhow::Result<Secret> {
        let iat = unix_now();
        let claims = serde_json::json!({"iss": self.issuer, "sub": subject.as_str(), "aud": [audience], "iat": iat, "exp": iat + self.ttl.as_secs()});
        self.signed(&claims, subject)
    }

    /// An RFC 7523 client assertion: `iss` and `sub` the client ID, for one token request
    /// at `audience` (the token endpoint), with a `jti` of its own.
    pub fn client_assertion(&self, client_id: &str, audience: &str, for_id: &SpiffeId) -> anyhow::Result<Secret> {
        let iat = unix_now();
        let jti =
            B64.encode(ring::rand::generate::<[u8; 16]>(&ring::rand::SystemRandom::new()).map_err(|_| anyhow::anyhow!("no randomness"))?.expose());
        let claims = serde_json::json!({"iss": client_id, "sub": client_id, "aud": audience, "iat": iat, "exp": iat + ASSERTION_TTL, "jti": jti});
        self.signed(&claims, for_id)
    }

    fn signed(&self, claims: &serde_json::Value, subject: &SpiffeId) -> anyhow::Result<Secret> {
        let jws = self.key.sign(claims).map_err(|e| anyhow::anyhow!("signing a JWT for {subject}: {e}"))?;
        self.minted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Secret::from_bytes(Bytes::from(jws)))
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};

    #[test]
    fn token_verifies_with_the_published_key_and_is_cached() {
        let issuer = JwtIssuer::new(Duration::from_secs(60), "spiffe://td/idgate/host/a".into(), None).unwrap();
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
