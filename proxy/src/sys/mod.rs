//! Talking to the kernel and the file system, with nothing of idgate's policy in it: netlink
//! requests and subscriptions, the host's interfaces and addresses, marked sockets, and files
//! that must be private (secrets, keys).
pub mod netif;
pub(crate) mod netlink;
pub mod private_file;
pub mod socket;
