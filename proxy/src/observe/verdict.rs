//! What became of a flow, as decision records, metrics labels and trail records name it.
use std::fmt;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Not decided yet (a decision record being filled in).
    #[default]
    #[serde(rename = "")]
    Undecided,
    /// Outbound: through the tunnel to the peer idgate.
    Tunneled,
    /// Outbound, HTTP-aware: idgate originated TLS to the destination itself.
    TlsOriginated,
    /// Outbound without an identity, let through as `default_action = "passthrough"` says.
    Passthrough,
    /// Inbound or local: the caller may reach the port.
    Allowed,
    /// Refused by this host's policy (or a revoked peer at the dial).
    Denied,
    /// The peer idgate refused the caller (403).
    DeniedByPeer,
    /// The process has no identity and the default action denies.
    DeniedNoIdentity,
    /// The identity or a certificate of the flow is on the deny list.
    Revoked,
    /// The peer's certificate did not verify.
    PeerUnverified,
    /// The peer idgate could not be reached or did not answer.
    PeerUnreachable,
    /// The local destination could not be reached.
    Unreachable,
    /// Closed by idgate while open (a reload or a revocation; the reason says which).
    Closed,
    /// The workload went away before its flow was set up.
    ClientGone,
    /// An HTTP request's credential could not be made.
    CredentialUnavailable,
    /// An HTTP request named a host its destination does not serve.
    Misdirected,
    /// A peer's stream was not a well-formed CONNECT.
    BadRequest,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Undecided => "",
            Verdict::Tunneled => "tunneled",
            Verdict::TlsOriginated => "tls_originated",
            Verdict::Passthrough => "passthrough",
            Verdict::Allowed => "allowed",
            Verdict::Denied => "denied",
            Verdict::DeniedByPeer => "denied_by_peer",
            Verdict::DeniedNoIdentity => "denied_no_identity",
            Verdict::Revoked => "revoked",
            Verdict::PeerUnverified => "peer_unverified",
            Verdict::PeerUnreachable => "peer_unreachable",
            Verdict::Unreachable => "unreachable",
            Verdict::Closed => "closed",
            Verdict::ClientGone => "client_gone",
            Verdict::CredentialUnavailable => "credential_unavailable",
            Verdict::Misdirected => "misdirected",
            Verdict::BadRequest => "bad_request",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Verdict;

    #[test]
    fn serialized_as_its_name() {
        for v in [Verdict::Undecided, Verdict::TlsOriginated, Verdict::DeniedNoIdentity, Verdict::BadRequest] {
            assert_eq!(serde_json::to_string(&v).unwrap(), format!("\"{}\"", v.as_str()));
        }
    }
}
