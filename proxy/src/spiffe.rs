//! SPIFFE IDs: `spiffe://<trust-domain>/<path>`, validated once, then shared cheaply.
use std::fmt;
use std::sync::Arc;

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId(Arc<str>);

#[derive(Debug, thiserror::Error)]
pub enum SpiffeIdError {
    #[error("SPIFFE ID `{0}` must start with spiffe://")]
    Scheme(String),
    #[error("SPIFFE ID `{0}` has an invalid trust domain (lowercase letters, digits, '.', '-', '_')")]
    TrustDomain(String),
    #[error("SPIFFE ID `{0}` has an invalid path (segments of letters, digits, '.', '-', '_'; no empty, '.' or '..' segment)")]
    Path(String),
}

pub fn valid_trust_domain(td: &str) -> bool {
    !td.is_empty() && td.len() <= 255 && td.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b))
}

impl SpiffeId {
    pub fn parse(s: &str) -> Result<Self, SpiffeIdError> {
        let rest = s.strip_prefix("spiffe://").ok_or_else(|| SpiffeIdError::Scheme(s.into()))?;
        let (td, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if !valid_trust_domain(td) {
            return Err(SpiffeIdError::TrustDomain(s.into()));
        }
        if !path.is_empty() {
            let ok = path[1..]
                .split('/')
                .all(|seg| !seg.is_empty() && seg != "." && seg != ".." && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)));
            if !ok {
                return Err(SpiffeIdError::Path(s.into()));
            }
        }
        Ok(SpiffeId(Arc::from(s)))
    }

    pub fn trust_domain(&self) -> &str {
        let rest = &self.0["spiffe://".len()..];
        rest.split('/').next().unwrap_or(rest)
    }

    pub fn path(&self) -> &str {
        let rest = &self.0["spiffe://".len()..];
        rest.find('/').map(|i| &rest[i..]).unwrap_or("")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for SpiffeId {
    type Error = SpiffeIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        SpiffeId::parse(&s)
    }
}

impl serde::Serialize for SpiffeId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_splits() {
        let id = SpiffeId::parse("spiffe://example.org/ns/web").unwrap();
        assert_eq!(id.trust_domain(), "example.org");
        assert_eq!(id.path(), "/ns/web");
    }

    #[test]
    fn rejects_bad_ids() {
        for bad in ["http://x/y", "spiffe://Ex.org/a", "spiffe://x.org//a", "spiffe://x.org/a/../b", "spiffe:///a"] {
            assert!(SpiffeId::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
