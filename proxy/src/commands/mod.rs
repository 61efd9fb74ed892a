//! The command-line subcommands other than `run` (see `main.rs`).
pub mod guard;
pub mod reload;
pub mod status;
