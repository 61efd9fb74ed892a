//! Upgrade without resetting flows. `idgate upgrade` asks the serving proxy, which asks the
//! service's main process (`main_process`): that executes the binary at the path it was
//! started from (the new one, after a package upgrade) in place, and starts its proxy as
//! `run --worker --takeover`. The successor binds the same ports beside it (SO_REUSEPORT),
//! installs the same table and passes its self-test; then it asks the old process to hand
//! over, and the old one closes its listeners (connections queued on them move to the
//! successor's with `net.ipv4.tcp_migrate_req`), sends GOAWAY on its inbound tunnel
//! connections (peers open new flows to the successor), and serves the flows it has until
//! they end or `[tunnel] upgrade_drain` passes. No listener is ever missing, no open flow is
//! reset before the drain ends, and the table never leaves.
use anyhow::Result;
use std::path::{Path, PathBuf};

/// The successor's control socket until the handover: the old process still owns the path.
pub fn staging_socket(control: &Path) -> PathBuf {
    let mut name = control.as_os_str().to_owned();
    name.push(".next");
    PathBuf::from(name)
}

/// The program to run as the successor: the path this process was started from, so that a
/// package upgrade's new binary is the one started (this process's own image may be gone).
pub fn own_program() -> PathBuf {
    let argv0 = std::env::args_os().next().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/bin/idgate"));
    if argv0.components().count() > 1 {
        std::fs::canonicalize(&argv0).unwrap_or(argv0)
    } else {
        argv0 // found on PATH, as it was the first time
    }
}

/// In the successor, once it serves: tells the old process to hand over.
pub fn request_handover(old_control: &Path) -> Result<()> {
    crate::control::client::request(old_control, "POST", &format!("/handover/{}", std::process::id())).map(|_| ())
}

/// Whether this kernel moves connections queued on a closed listener to another of its
/// SO_REUSEPORT group (else they are reset at the handover).
pub fn migrates_queued_connections() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req").is_ok_and(|v| v.trim() == "1")
}
