//! The control plane: the admin server and control socket (and its client), the checks `run`
//! makes before it binds a socket, reload, upgrade, listeners kept across restarts, and the
//! service's main process that outlives the proxies.
pub mod admin;
pub mod client;
pub mod fdstore;
pub mod listeners;
pub mod main_process;
pub mod preflight;
pub mod reload;
pub mod upgrade;
