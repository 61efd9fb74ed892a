//! idgate: transparent mTLS with per-process SPIFFE identities.
//!
//! One flow, top-down: `intercept` (nftables redirect, original destination) → `identity`
//! (which process opened it, which SPIFFE ID it gets) → `credential` (its SVID, minted just in
//! time) → `tunnel::outbound` → `tunnel::pool` (HTTP/2 CONNECT over mTLS) → the peer's
//! `tunnel::inbound` → `policy` → the local service.
//!
//! The modules are layers. A module may use modules of its own layer or a lower one, never a
//! higher one, and no two modules may use each other (`tests/architecture.rs` fails on either):
//!
//! | layer | modules | what they are |
//! |---|---|---|
//! | 0 | `spiffe`, `terminal` | vocabulary: SPIFFE IDs, text made safe for a terminal |
//! | 1 | `sys` | the kernel and the file system: netlink, interfaces, sockets, private files |
//! | 2 | `config` | the config file, its values and errors (and the deny list's file) |
//! | 3 | `intercept`, `identity`, `credential` | the stages: get the flow, name its process, give it an SVID |
//! | 4 | `http` | the HTTP-aware path: parsing, rewriting, credentials, TLS origination |
//! | 5 | `policy` | the policy in force: selectors, routes, rules, who may reach what |
//! | 6 | `observe` | flows, decisions, the trail, metrics, logs |
//! | 7 | `prewarm` | preparing workloads before their first flow |
//! | 8 | `tunnel` | the data path: outbound, the pool, inbound |
//! | 9 | `runtime` | worker threads, tasks that must not stop, the service manager |
//! | 10 | `control` | admin and control socket, preflight, reload, upgrade, the main process |
//! | 11 | `commands` | the CLI's subcommands |
//! | 12 | `app` | wiring one host's idgate together |
pub mod spiffe;
pub(crate) mod terminal;

pub mod sys;

pub mod config;

pub mod credential;
pub mod identity;
pub mod intercept;

pub mod http;

pub mod policy;

pub mod observe;

pub mod prewarm;

pub mod tunnel;

pub mod runtime;

pub mod control;

pub mod commands;

pub mod app;
