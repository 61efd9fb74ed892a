//! The service's main process: the one the service manager started, for the service's whole
//! life. `idgate run` starts the proxy as its child (`run --worker`) and stays its parent. At
//! an upgrade it executes the new binary in place (same pid, so the proxies stay its
//! children) and starts the new proxy beside the old one, which drains and exits; at a stop
//! it passes the signal on and exits once every proxy has, with the serving proxy's status.
//! systemd therefore always supervises a child of its own, and a stop or restart after an
//! upgrade goes exactly as before one (a main process that is not systemd's child is neither
//! waited for at a stop nor noticed when it exits). haproxy's master process and Envoy's
//! hot restarter keep one stable parent for the same reason. This process loads no config
//! and holds no key: whatever can fail does so in the proxy, which reports it. It holds one
//! thing for the proxies: the netlink socket that owns the nftables table no other program
//! may flush (see `intercept::keeper`), so that the table lasts while any proxy runs.
use crate::runtime::service::{parent_pid, supervised, PARENT_ENV};
use anyhow::{bail, Context, Result};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// How long a new proxy may take to take over before it is given up.
const TAKEOVER_LIMIT: Duration = Duration::from_secs(60);
const LISTEN_VARS: [&str; 3] = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"];

/// In a proxy, before any thread exists: the descriptors the service manager passed to the
/// main process (its listeners, back from the store) are this process's to adopt.
pub fn adopt_passed_descriptors() {
    if supervised() && std::env::var("LISTEN_PID").ok().and_then(|p| p.parse::<u32>().ok()) == Some(parent_pid()) {
        std::env::set_var("LISTEN_PID", std::process::id().to_string());
    }
}

fn signal_parent(signal: libc::c_int) -> Result<()> {
    if !supervised() {
        bail!("this idgate was not started by `idgate run` (no main process to ask)");
    }
    kill(parent_pid(), signal).context("signalling the main process")
}

fn kill(pid: u32, signal: libc::c_int) -> std::io::Result<()> {
    let pid = rustix::process::Pid::from_raw(pid as i32).ok_or_else(|| std::io::Error::other(format!("no process {pid}")))?;
    let signal = rustix::process::Signal::from_named_raw(signal).ok_or_else(|| std::io::Error::other(format!("no signal {signal}")))?;
    Ok(rustix::process::kill_process(pid, signal)?)
}

/// In the serving proxy (`idgate upgrade`): asks the main process to upgrade.
pub fn request_upgrade() -> Result<()> {
    signal_parent(libc::SIGUSR2)
}

/// In the serving proxy, after a reload applied: the main process passes it on to the proxies
/// still draining after an upgrade (their open flows get the new policy too).
pub fn reload_draining() {
    if supervised() {
        if let Err(e) = signal_parent(libc::SIGHUP) {
            tracing::warn!(error = %format!("{e:#}"), "could not pass the reload on to the proxies still draining");
        }
    }
}

/// In a new proxy that took over: tells the main process that it serves now.
pub fn report_takeover() {
    if let Err(e) = signal_parent(libc::SIGUSR1) {
        tracing::warn!(error = %format!("{e:#}"), "could not tell the main process that this proxy took over");
    }
}

/// The proxies the main process has, by role.
#[derive(Default)]
pub struct Proxies {
    /// The one that serves (takes new flows).
    pub current: Option<u32>,
    /// An upgrade's new proxy, until it took over.
    pending: Option<(u32, Instant)>,
    /// Old proxies serving their open flows until they end.
    pub draining: Vec<u32>,
}

impl Proxies {
    fn all(&self) -> impl Iterator<Item = u32> + '_ {
        self.current.into_iter().chain(self.pending.map(|(p, _)| p)).chain(self.draining.iter().copied())
    }

    fn is_empty(&self) -> bool {
        self.all().next().is_none()
    }
}

const HANDLED: [libc::c_int; 6] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGCHLD, libc::SIGUSR1, libc::SIGUSR2];

/// Blocks the signals this process takes with `sigtimedwait` (an exec keeps the mask, so none
/// is lost across the upgrade's; the proxies are started with an empty one).
fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data initialised by sigemptyset before use; sigprocmask
    // changes only this (single-threaded) process's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in HANDLED {
            libc::sigaddset(&mut set, s);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// The next signal (its number and sender), or None after `timeout`.
fn next_signal(set: &libc::sigset_t, timeout: Duration) -> Option<(libc::c_int, u32)> {
    let ts = libc::timespec { tv_sec: timeout.as_secs() as libc::time_t, tv_nsec: timeout.subsec_nanos() as libc::c_long };
    // SAFETY: siginfo_t is plain data the kernel fills; set and ts are valid for the call.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let signo = libc::sigtimedwait(set, &mut info, &ts);
        (signo > 0).then(|| (signo, info.si_pid() as u32))
    }
}

fn send(pid: u32, signal: libc::c_int) {
    if let Err(e) = kill(pid, signal) {
        tracing::debug!(pid, signal, error = %e, "signal not delivered (the process has exited)");
    }
}

/// Exited children: pid and a status to exit with (the code, or 128 + the signal).
fn reap() -> Vec<(u32, u8, String)> {
    let mut out = Vec::new();
    // Until none is left to reap (None), or there is no child at all (ECHILD).
    while let Ok(Some((pid, status))) = rustix::process::waitpid(None, rustix::process::WaitOptions::NOHANG) {
        let (code, how) = match (status.exit_status(), status.terminating_signal()) {
            (Some(code), _) => (code as u8, format!("exit status {code}")),
            (None, Some(sig)) => ((128 + sig) as u8, format!("signal {sig}")),
            (None, None) => continue, // stopped or continued: not an exit
        };
        out.push((pid.as_raw_nonzero().get() as u32, code, how));
    }
    out
}

/// Starts a proxy: `run --worker` (with `--takeover` beside a serving one). It dies with this
/// process (a main process killed outright must not leave a proxy no one supervises).
fn start_proxy(program: &Path, config: &Path, takeover: bool) -> Result<u32> {
    let mut cmd = Command::new(program);
    cmd.arg("run").arg("--worker").arg("--config").arg(config);
    if takeover {
        cmd.arg("--takeover");
    }
    cmd.env(PARENT_ENV, std::process::id().to_string());
    // SAFETY: sigprocmask and prctl(PR_SET_PDEATHSIG) are async-signal-safe and touch only
    // the child: it starts with no signal blocked (this process blocks those it waits for).
    unsafe {
        cmd.pre_exec(|| {
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            if libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut()) != 0
                || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().with_context(|| format!("starting {}", program.display()))?;
    Ok(child.id())
}

/// The passed listeners went to the first proxy: later ones bind beside it or get them from
/// the store at the next start, never from this process.
fn drop_passed_descriptors() {
    let ours = std::env::var("LISTEN_PID").ok().and_then(|p| p.parse::<u32>().ok()) == Some(std::process::id());
    let count: i32 = std::env::var("LISTEN_FDS").ok().and_then(|n| n.parse().ok()).unwrap_or(0);
    if ours {
        for fd in 3..3 + count {
            // SAFETY: these descriptors were passed to this process and nothing in it uses them.
            unsafe { libc::close(fd) };
        }
    }
    for var in LISTEN_VARS {
        std::env::remove_var(var);
    }
}

/// Executes `program` in place of this process (same pid), to go on with `proxies`. The
/// blocked signal mask carries over, so a stop asked for meanwhile is not lost. Returns only
/// when the exec failed.
fn reexec(program: &Path, config: &Path, proxies: &Proxies) -> std::io::Error {
    let mut args = vec![program.as_os_str().as_bytes().to_vec(), b"run".to_vec(), b"--config".to_vec(), config.as_os_str().as_bytes().to_vec()];
    if let Some(current) = proxies.current {
        args.push(b"--upgrade-from".to_vec());
        args.push(current.to_string().into_bytes());
    }
    for pid in &proxies.draining {
        args.push(b"--draining".to_vec());
        args.push(pid.to_string().into_bytes());
    }
    let Ok(args) = args.into_iter().map(CString::new).collect::<Result<Vec<_>, _>>() else {
        return std::io::Error::new(std::io::ErrorKind::InvalidInput, "a NUL byte in the program or config path");
    };
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    // SAFETY: argv is a NULL-terminated array of NUL-terminated strings that outlive the
    // call; execv returns only on failure, and this process has no other thread.
    unsafe { libc::execv(argv[0], argv.as_ptr()) };
    std::io::Error::last_os_error()
}

/// What the main process goes on with after an upgrade's exec: the proxy that served, and
/// older ones still draining.
pub struct Resume {
    pub current: u32,
    pub draining: Vec<u32>,
}

/// The main process: starts the proxy (or, resumed after an upgrade's exec, the new one beside
/// the serving one) and supervises them until they have all exited. Returns the status to
/// exit with: the serving proxy's.
pub fn run(config: &Path, resume: Option<Resume>) -> Result<u8> {
    let program = crate::control::upgrade::own_program();
    let set = block_signals();
    // Held here for the service's life (and across an upgrade's exec), so that the table it
    // owns outlives every proxy: each inherits it and installs through it.
    crate::intercept::hold_owner_socket_for_proxies().context("opening the netlink socket that will own idgate's nftables table")?;
    let proxies = start_proxies(&program, config, resume)?;
    let mut main = Supervisor { program, config, proxies, stopping: false, status: 0 };
    loop {
        if let Some(code) = main.reap() {
            return Ok(code);
        }
        if main.stopping && main.proxies.is_empty() {
            return Ok(main.status);
        }
        main.stop_late_takeover();
        if let Some((signal, from)) = next_signal(&set, Duration::from_secs(1)) {
            main.on_signal(signal, from);
        }
    }
}

/// The proxies at the start: a fresh one, or after an upgrade's exec the serving and draining
/// ones this process inherited and a new one started beside them.
fn start_proxies(program: &Path, config: &Path, resume: Option<Resume>) -> Result<Proxies> {
    let mut proxies = Proxies::default();
    match resume {
        None => {
            proxies.current = Some(start_proxy(program, config, false)?);
            drop_passed_descriptors();
        }
        Some(Resume { current, draining }) => {
            proxies.current = Some(current);
            proxies.draining = draining;
            match start_proxy(program, config, true) {
                Ok(pid) => {
                    tracing::info!(
                        pid,
                        serving = current,
                        "upgrade: the main process runs {} now; started the new proxy beside the serving one",
                        program.display()
                    );
                    proxies.pending = Some((pid, Instant::now()));
                }
                Err(e) => tracing::error!(error = %format!("{e:#}"), "upgrade: the new proxy did not start; pid {current} goes on serving"),
            }
        }
    }
    Ok(proxies)
}

/// The main process's state between signals.
struct Supervisor<'a> {
    program: std::path::PathBuf,
    config: &'a Path,
    proxies: Proxies,
    /// Asked to stop: the proxies were passed the signal.
    stopping: bool,
    /// What to exit with: the serving proxy's status.
    status: u8,
}

impl Supervisor<'_> {
    /// Reaps exited proxies. Returns the status to exit with at once if the serving proxy
    /// exited without being asked to.
    fn reap(&mut self) -> Option<u8> {
        let proxies = &mut self.proxies;
        for (pid, code, how) in reap() {
            if proxies.current == Some(pid) {
                proxies.current = None;
                self.status = code;
                if !self.stopping {
                    // The service ends with it: the service manager restarts it (and the
                    // proxies still draining die with this process).
                    tracing::error!(pid, "the proxy exited ({how}) without being asked to: the service stops so that it is restarted");
                    return Some(code.max(1));
                }
                tracing::info!(pid, "the proxy exited ({how})");
            } else if proxies.pending.is_some_and(|(p, _)| p == pid) {
                proxies.pending = None;
                let serving = proxies.current.map(|p| format!("pid {p} goes on serving")).unwrap_or_default();
                tracing::error!(pid, "upgrade: the new proxy exited ({how}) before taking over; {serving}");
            } else if let Some(i) = proxies.draining.iter().position(|p| *p == pid) {
                proxies.draining.remove(i);
                tracing::info!(pid, "the previous proxy exited ({how}) after serving its open flows");
            }
        }
        None
    }

    /// An upgrade's new proxy that has not taken over in time is stopped.
    fn stop_late_takeover(&mut self) {
        if let Some((pid, since)) = self.proxies.pending {
            if since.elapsed() > TAKEOVER_LIMIT {
                tracing::error!(pid, "upgrade: the new proxy did not take over within {} s; stopping it", TAKEOVER_LIMIT.as_secs());
                send(pid, libc::SIGTERM);
                self.proxies.pending = Some((pid, Instant::now()));
            }
        }
    }

    fn on_signal(&mut self, signal: libc::c_int, from: u32) {
        let proxies = &mut self.proxies;
        match signal {
            libc::SIGTERM | libc::SIGINT => {
                if !self.stopping {
                    tracing::info!("stopping: passing the signal on to the proxies (pids {:?})", proxies.all().collect::<Vec<_>>());
                }
                self.stopping = true;
                proxies.all().for_each(|p| send(p, signal));
            }
            // From the serving proxy: it reloaded, the draining ones follow. From anyone else
            // (`systemctl reload`, kill -HUP): the serving proxy reloads, then passes it on.
            libc::SIGHUP if proxies.current == Some(from) => proxies.draining.iter().for_each(|p| send(*p, libc::SIGHUP)),
            libc::SIGHUP => proxies.current.into_iter().for_each(|p| send(p, libc::SIGHUP)),
            libc::SIGUSR1 => {
                if let Some((pid, _)) = proxies.pending.filter(|(p, _)| *p == from) {
                    proxies.draining.extend(proxies.current.replace(pid));
                    proxies.pending = None;
                    tracing::info!(pid, draining = ?proxies.draining, "upgrade: the new proxy took over");
                }
            }
            libc::SIGUSR2 if self.stopping || proxies.pending.is_some() => {
                tracing::warn!("upgrade asked for while stopping or while another upgrade is under way: ignored");
            }
            libc::SIGUSR2 => {
                tracing::info!("upgrade: executing {} in place of the main process", self.program.display());
                let e = reexec(&self.program, self.config, proxies);
                tracing::error!(error = %e, "upgrade: could not execute {}; the serving proxy goes on", self.program.display());
            }
            _ => {} // SIGCHLD: reaped at the top of the loop
        }
    }
}
