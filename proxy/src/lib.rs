//! idgate: transparent mTLS with per-process SPIFFE identities.
//!
//! One flow, top-down: `intercept` (nftables redirect, original destination) →
//! `identity` (which process opened it, which SPIFFE ID it gets) → `credential` (its SVID,
//! minted just in time) → `tunnel::outbound` → `tunnel::pool` (HTTP/2 CONNECT over mTLS) →
//! peer's `tunnel::inbound` → `policy` → local service.
pub mod admin;
pub mod app;
pub mod commands;
pub mod config;
pub mod credential;
pub mod decisions;
pub mod fdstore;
pub mod flows;
pub mod history_file;
pub mod http;
pub mod identity;
pub mod intercept;
pub mod journal;
pub mod listeners;
pub mod live;
pub mod main_process;
pub mod metrics;
pub mod netif;
mod netlink;
pub mod policy;
pub mod prewarm;
pub mod private_file;
pub mod reload;
pub mod revocation;
pub mod service;
pub mod socket;
pub mod spiffe;
pub mod supervise;
mod terminal;
pub mod trail;
pub mod tunnel;
pub mod upgrade;
pub mod workers;
