//! Getting flows to the proxy: the nftables table idgate owns (and leaves in place while it
//! is not running, so that intercepted flows are refused rather than sent in plaintext), and
//! the original tuple (source and destination, from conntrack) of a redirected connection.
mod conntrack;
pub mod guard;
mod nftables;
mod redirect_expr;

pub use conntrack::{original_tuple, OriginalTuple};
pub use nftables::{exists, install, remove, Ruleset};
