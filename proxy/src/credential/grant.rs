//! What a host CA may issue, written into its certificate by `idgate ca issue`: the host it was
//! issued for and the SPIFFE IDs its workload SVIDs may carry. X.509 URI name constraints cannot
//! express paths, so this is an extension of idgate's own. It is not critical: software that
//! does not know it ignores it (rustls-webpki and most parsers refuse a whole chain over a
//! critical extension they do not know), and every idgate verifier enforces it.
//!
//! ```text
//! IdgateGrant ::= SEQUENCE {
//!     host      IA5String,              -- spiffe://<td>/idgate/host/<name>
//!     patterns  SEQUENCE OF IA5String   -- SPIFFE IDs, exact or a prefix ending in /*
//! }
//! ```
//!
//! Its OID is under the arc for identifiers made from a UUID without registration,
//! 1.2.840.113556.1.8000.2554 followed by the UUID in pieces of 16 and 24 bits (here UUID
//! 1a3ef60c-f739-404f-b8be-d421d6362d5f). The 2.25 arc would take the UUID as one 128-bit
//! number, which rcgen's DER writer (64-bit arcs) cannot encode.
use crate::config::AllowPattern;
use crate::spiffe::SpiffeId;
use std::fmt;

pub const GRANT_OID: &[u64] = &[1, 2, 840, 113556, 1, 8000, 2554, 6718, 62988, 63289, 16463, 47294, 13902294, 3550559];

/// The host a CA was issued for, and the workload IDs it may issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub host: SpiffeId,
    pub patterns: Vec<AllowPattern>,
}

/// Why a grant was refused, naming the pattern at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("{0} is not a host's idgate ID (spiffe://<td>/idgate/host/<name>)")]
    NotAHost(SpiffeId),
    #[error("grant `{pattern}`: {why}")]
    Malformed { pattern: String, why: String },
    #[error("grant `{pattern}` is outside trust domain {trust_domain}")]
    OtherTrustDomain { pattern: String, trust_domain: String },
    #[error("grant `{pattern}`: IDs under /idgate/ are idgate's own; a host CA issues only its host's ({host})")]
    IdgatesOwn { pattern: String, host: SpiffeId },
    #[error("the idgate grant extension does not parse (DER: {0})")]
    Der(String),
    #[error("the idgate grant's host: {0}")]
    Host(String),
}

/// The path under which SPIFFE IDs are idgate's own (hosts), never a workload's.
fn is_idgate(id: &SpiffeId) -> bool {
    id.path() == "/idgate" || id.path().starts_with("/idgate/")
}

impl Grant {
    /// A grant for `host` (`spiffe://<td>/idgate/host/<name>`) of `patterns`, each in the
    /// host's trust domain and none of idgate's own IDs (a host CA issues only its host's).
    pub fn new(host: SpiffeId, patterns: &[String]) -> Result<Grant, GrantError> {
        if !host.path().starts_with("/idgate/host/") {
            return Err(GrantError::NotAHost(host));
        }
        let td = host.trust_domain().to_string();
        let mut parsed = Vec::new();
        for text in patterns {
            let malformed = |why: String| GrantError::Malformed { pattern: text.clone(), why };
            let pattern = AllowPattern::try_from(text.clone()).map_err(malformed)?;
            let base = SpiffeId::parse(text.strip_suffix("/*").unwrap_or(text)).map_err(|e| malformed(e.to_string()))?;
            if base.trust_domain() != td {
                return Err(GrantError::OtherTrustDomain { pattern: text.clone(), trust_domain: td });
            }
            if is_idgate(&base) {
                return Err(GrantError::IdgatesOwn { pattern: text.clone(), host });
            }
            parsed.push(pattern);
        }
        Ok(Grant { host, patterns: parsed })
    }

    /// Whether a CA with this grant may issue `id`: its host's own ID, or a workload ID the
    /// patterns cover (never another idgate ID, whatever the patterns say).
    pub fn permits(&self, id: &SpiffeId) -> bool {
        if is_idgate(id) {
            return *id == self.host;
        }
        self.patterns.iter().any(|p| p.matches(id))
    }

    /// The extension's value (DER).
    pub fn to_der(&self) -> Vec<u8> {
        yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_ia5_string(self.host.as_str());
                w.next().write_sequence_of(|w| {
                    for p in &self.patterns {
                        w.next().write_ia5_string(&p.text());
                    }
                });
            })
        })
    }

    /// The extension for rcgen (not critical, see the module's comment).
    pub fn extension(&self) -> rcgen::CustomExtension {
        rcgen::CustomExtension::from_oid_content(GRANT_OID, self.to_der())
    }

    pub fn from_der(der: &[u8]) -> Result<Grant, GrantError> {
        let (host, patterns) = yasna::parse_der(der, |r| {
            r.read_sequence(|r| {
                let host = r.next().read_ia5_string()?;
                let patterns = r.next().collect_sequence_of(|r| r.read_ia5_string())?;
                Ok((host, patterns))
            })
        })
        .map_err(|e| GrantError::Der(format!("{:?}", e.kind())))?;
        let host = SpiffeId::parse(&host).map_err(|e| GrantError::Host(e.to_string()))?;
        Grant::new(host, &patterns)
    }

    /// The grant a certificate carries: None without the extension, an error if it is malformed.
    pub fn of_cert(cert: &x509_parser::certificate::X509Certificate<'_>) -> Result<Option<Grant>, GrantError> {
        let oid = x509_parser::der_parser::oid::Oid::from(GRANT_OID).expect("a valid OID");
        cert.extensions().iter().find(|e| e.oid == oid).map(|e| Grant::from_der(e.value)).transpose()
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let patterns: Vec<String> = self.patterns.iter().map(AllowPattern::text).collect();
        let patterns = if patterns.is_empty() { "no workload ID".to_string() } else { patterns.join(", ") };
        write!(f, "host {}; workloads {patterns}", self.host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SpiffeId {
        SpiffeId::parse(s).unwrap()
    }

    fn grant(patterns: &[&str]) -> Result<Grant, String> {
        Grant::new(id("spiffe://td/idgate/host/web-1"), &patterns.iter().map(|s| s.to_string()).collect::<Vec<_>>()).map_err(|e| e.to_string())
    }

    #[test]
    fn exact_ids_prefixes_and_the_hosts_own_id() {
        let g = grant(&["spiffe://td/app/alice", "spiffe://td/ci/*"]).unwrap();
        assert!(g.permits(&id("spiffe://td/app/alice")));
        assert!(!g.permits(&id("spiffe://td/app/alice2")) && !g.permits(&id("spiffe://td/app/payments")));
        assert!(g.permits(&id("spiffe://td/ci/runner")) && g.permits(&id("spiffe://td/ci/a/b")));
        assert!(!g.permits(&id("spiffe://td/ci")));
        assert!(g.permits(&id("spiffe://td/idgate/host/web-1")));
        assert!(!g.permits(&id("spiffe://td/idgate/host/web-2")));
        assert!(!g.permits(&id("spiffe://other/app/alice")));
    }

    #[test]
    fn a_grant_of_everything_still_names_one_host() {
        let g = grant(&["spiffe://td/*"]).unwrap();
        assert!(g.permits(&id("spiffe://td/app/anything")));
        assert!(!g.permits(&id("spiffe://td/idgate/host/web-2")));
    }

    #[test]
    fn refuses_other_trust_domains_idgate_ids_and_bad_patterns() {
        assert!(grant(&["spiffe://other/app/x"]).unwrap_err().contains("outside trust domain td"));
        assert!(grant(&["spiffe://td/idgate/*"]).unwrap_err().contains("idgate's own"));
        assert!(grant(&["spiffe://td/idgate/host/web-2"]).unwrap_err().contains("idgate's own"));
        assert!(grant(&["not-an-id"]).unwrap_err().contains("grant `not-an-id`"));
        assert!(Grant::new(id("spiffe://td/app/x"), &[]).unwrap_err().to_string().contains("not a host's idgate ID"));
    }

    #[test]
    fn survives_der_and_refuses_garbage() {
        let g = grant(&["spiffe://td/app/alice", "spiffe://td/ci/*"]).unwrap();
        assert_eq!(Grant::from_der(&g.to_der()).unwrap(), g);
        assert!(Grant::from_der(b"\x30\x03\x02\x01\x05").unwrap_err().to_string().contains("does not parse"));
        // Well-formed DER whose host is not a host ID.
        let bad = yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_ia5_string("spiffe://td/app/x");
                w.next().write_sequence_of(|_| {});
            })
        });
        assert!(Grant::from_der(&bad).unwrap_err().to_string().contains("not a host's idgate ID"));
    }
}
