//! The HTTP-aware path (`protocol = "http"`): HTTP/1 requests have only their heads parsed
//! (httparse) and bodies move as bytes; HTTP/2 with prior knowledge goes through hyper.
//! Requests are rewritten by `[[http_rule]]`s with credentials from files, the environment or
//! JWT-SVIDs, and sent on through the tunnel or over TLS that idgate originates. The inbound
//! side adds the caller's verified identity header.
pub mod exchange;
pub mod forged;
pub mod forward;
mod h1;
pub mod h2_settings;
mod h2c;
mod identity_header;
pub mod jwt;
pub mod origin;
pub mod rules;
pub mod secrets;
pub mod upstream;

pub use forward::serve;
pub use upstream::{BoxIo, Failure, Upstream};

/// The peer idgate answered a CONNECT with this status instead of 200 (the tunnel's streams
/// fail with it; the HTTP-aware path answers the workload accordingly).
#[derive(Debug, thiserror::Error)]
#[error("peer idgate answered {0}")]
pub struct PeerRefused(pub http::StatusCode);
pub use identity_header::IdentityHeader;
pub use jwt::JwtIssuer;
pub use origin::Origin;
pub use rules::{Flow, RewriteError, Rewriter};
