//! Getting flows to the proxy: the nftables table idgate owns, and the original destination
//! of a redirected connection.
mod nftables;
mod orig_dst;
mod redirect_expr;

pub use nftables::{install, remove, RedirectMatch, Ruleset};
pub use orig_dst::original_dst;
