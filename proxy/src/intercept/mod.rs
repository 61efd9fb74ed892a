//! Getting flows to the proxy: idgate's nftables tables (one that outlives the process, so that
//! intercepted flows are refused rather than sent in plaintext while idgate is not running,
//! and one that the running idgate holds, which no other program can flush), the cgroup guard
//! that stands in for both if they are gone, and the original tuple (source and destination,
//! from conntrack) of a redirected connection.
pub mod cgroup_guard;
mod conntrack;
mod destinations;
pub mod guard;
mod keeper;
mod nft;
mod table;

pub use conntrack::{original_tuple, OriginalTuple};
pub use keeper::{exists, hold_owner_socket_for_proxies, inherited_owner_socket, install_standing, remove, Keeper, KeeperStatus, OWNER_FD_ENV};
pub use table::{owned_name, Ruleset};
