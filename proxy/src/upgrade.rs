//! Upgrade without resetting flows. `idgate upgrade` asks the running idgate to start its
//! successor: the binary at the path it was started from (the new one, after a package
//! upgrade), as `run --takeover`. The successor binds the same ports beside it (SO_REUSEPORT),
//! installs the same table and passes its self-test; then it asks the old process to hand
//! over, and the old one closes its listeners (connections queued on them move to the
//! successor's with `net.ipv4.tcp_migrate_req`), sends GOAWAY on its inbound tunnel
//! connections (peers open new flows to the successor), names the successor as the service's
//! main process, and serves the flows it has until they end or `[tunnel] upgrade_drain`
//! passes. No listener is ever missing, no open flow is reset, and the table never leaves.
use anyhow::{Context, Result};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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

/// Starts the successor; its output goes where ours does (the journal). Returns its pid. A
/// thread waits for it so that a successor that fails is reaped and reported; the old process
/// then simply goes on serving.
/// `nft_owner`: the netlink socket that holds the owned nftables table; the successor
/// inherits it (its number in `IDGATE_NFT_OWNER_FD`), so the table never lapses.
pub fn spawn_successor(program: &Path, config: &Path, nft_owner: RawFd) -> Result<u32> {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(program);
    command.arg("run").arg("--config").arg(config).arg("--takeover").stdin(Stdio::null()).env(crate::intercept::OWNER_FD_ENV, nft_owner.to_string());
    // SAFETY: runs in the child between fork and exec, and only calls fcntl(2), which is
    // async-signal-safe: the one descriptor the successor inherits loses its close-on-exec flag.
    unsafe {
        command.pre_exec(move || {
            let flags = libc::fcntl(nft_owner, libc::F_GETFD);
            if flags < 0 || libc::fcntl(nft_owner, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().with_context(|| format!("starting {}", program.display()))?;
    let pid = child.id();
    std::thread::Builder::new().name("idgate-successor".into()).spawn(move || match child.wait() {
        Ok(status) if status.success() => tracing::info!(pid, "the successor idgate exited"),
        Ok(status) => tracing::error!(pid, %status, "the successor idgate failed; this process keeps serving"),
        Err(e) => tracing::error!(pid, error = %e, "waiting for the successor idgate"),
    })?;
    Ok(pid)
}

/// In an upgrade's successor: the nftables socket the predecessor handed over, if any.
pub fn inherited_nft_socket() -> Result<Option<OwnedFd>> {
    let Some(value) = std::env::var_os(crate::intercept::OWNER_FD_ENV) else { return Ok(None) };
    let fd: RawFd = value
        .to_str()
        .and_then(|v| v.parse().ok())
        .filter(|fd| *fd > 2)
        .with_context(|| format!("{} = {value:?} is not a descriptor number", crate::intercept::OWNER_FD_ENV))?;
    // SAFETY: the predecessor passed this descriptor for this process alone; validate that it is
    // open before taking ownership of it (Socket::from_fd checks what it is).
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        anyhow::bail!("{} names descriptor {fd}, which is not open", crate::intercept::OWNER_FD_ENV);
    }
    // SAFETY: as above: open, and nothing else in this process owns it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // Not passed on again to anything this process starts.
    // SAFETY: fcntl on a descriptor this process owns.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    Ok(Some(owned))
}

/// In the successor, once it serves: tells the old process to hand over.
pub fn request_handover(old_control: &Path) -> Result<()> {
    crate::commands::status::request(old_control, "POST", &format!("/handover/{}", std::process::id())).map(|_| ())
}

/// Whether this kernel moves connections queued on a closed listener to another of its
/// SO_REUSEPORT group (else they are reset at the handover).
pub fn migrates_queued_connections() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req").is_ok_and(|v| v.trim() == "1")
}
