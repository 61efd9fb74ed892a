//! Running the data path: worker threads (one runtime, listeners and pool each), tasks that
//! must never stop, and the service manager's protocol (readiness, watchdog).
pub mod service;
pub mod supervise;
pub mod workers;
