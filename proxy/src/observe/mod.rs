//! What idgate tells operators: open flows (`idgate flows`), decisions, the attribution trail,
//! Prometheus metrics, and log lines with journald's priorities.
pub mod decisions;
pub mod flows;
pub mod journal;
pub mod metrics;
pub mod trail;
pub mod verdict;

pub use verdict::Verdict;
