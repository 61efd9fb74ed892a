//! Getting flows to the proxy: the nftables table idgate owns, and the original tuple (source
//! and destination, from conntrack) of a redirected connection.
mod conntrack;
mod nftables;
mod redirect_expr;

pub use conntrack::{original_tuple, OriginalTuple};
pub use nftables::{install, remove, RedirectMatch, Ruleset};
