//! While idgate runs, nothing another program does to the ruleset turns it off.
//!
//! Three layers, each enough alone to keep intercepted flows from leaving in plaintext:
//! - **the owned table** (`<table>_owned`, `NFT_TABLE_F_OWNER`): held by this process's netlink
//!   socket, so `flush ruleset`, `nft delete table` and firewall reloads from anyone else skip
//!   it or are refused; flows go on being redirected through them, none fails. The kernel
//!   deletes it when the socket closes (idgate stops), which is why there is also
//! - **the standing table** (`<table>`), which outlives the process: put back within a
//!   fraction of a millisecond whenever another program deletes or changes it (ruleset
//!   notifications), so that it is there when idgate stops; and
//! - **the cgroup guard** (`cgroup_guard`), outside the ruleset: drops what was not redirected
//!   when neither table is there (someone flushed the ruleset while idgate was stopped).
//!
//! The owning socket is opened by the service's main process (`main_process`), which outlives
//! the proxies and an upgrade's exec: each proxy inherits it, so the owned table never lapses
//! while one runs.
use super::cgroup_guard::{self, GuardState};
use super::nft::msg::Kind;
use super::nft::watch::{Event, Watch};
use super::nft::{Batch, Socket, NFPROTO_INET, NFT_TABLE_F_OWNER};
use super::table;
use super::Ruleset;
use anyhow::{Context, Result};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The environment variable naming the owning socket a proxy inherits from the main process.
pub const OWNER_FD_ENV: &str = "IDGATE_NFT_OWNER_FD";
/// Set ids within one transaction: the standing table's sets, then the owned table's.
const STANDING_SET_IDS: u32 = 1;
const OWNED_SET_IDS: u32 = 101;
/// Past this many put-backs in `FIGHT_WINDOW`, something keeps undoing them: slow down.
const FIGHT_LIMIT: usize = 20;
const FIGHT_WINDOW: Duration = Duration::from_secs(10);

pub struct Keeper {
    socket: Socket,
    installed: Mutex<Ruleset>,
    guard: Mutex<GuardState>,
    /// Held while the guard is installed: a reload and an interface that appeared do not
    /// install it at the same time (the older ruleset's could land last).
    guarding: Mutex<()>,
    stats: Mutex<Stats>,
    retired: AtomicBool,
}

#[derive(Default)]
struct Stats {
    put_back: u64,
    last_by: Option<String>,
    last_us: Option<u64>,
    recent: VecDeque<Instant>,
}

/// What `status` shows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeeperStatus {
    pub standing_table: String,
    pub owned_table: String,
    pub owner_port: u32,
    pub guard: GuardState,
    /// Times the standing table was put back after another program removed or changed it.
    pub put_back: u64,
    pub last_changed_by: Option<String>,
    pub last_put_back_us: Option<u64>,
}

impl Keeper {
    /// Installs both tables (one transaction) and the cgroup guard for `rs`, then watches the
    /// ruleset. `inherited`: the owning socket of the idgate this one takes over from.
    pub fn start(rs: &Ruleset, inherited: Option<OwnedFd>) -> Result<Arc<Keeper>> {
        let socket = match inherited {
            Some(fd) => Socket::from_fd(fd).context("the nftables socket handed over by the previous idgate")?,
            None => Socket::open().context("opening a netlink socket for nftables")?,
        };
        let keeper = Arc::new(Keeper {
            socket,
            installed: Mutex::new(rs.clone()),
            guard: Mutex::new(GuardState::Off),
            guarding: Mutex::new(()),
            stats: Mutex::default(),
            retired: AtomicBool::new(false),
        });
        keeper.install_tables(rs)?;
        *keeper.guard.lock() = install_guard(rs)?;
        let watching = keeper.clone();
        let watch = Watch::open().context("subscribing to nftables notifications")?;
        std::thread::Builder::new().name("idgate-nft-watch".into()).spawn(move || watching.watch(watch))?;
        follow_interfaces(&keeper);
        Ok(keeper)
    }

    /// Replaces both tables and the guard with what `rs` says (a reload): all of it, or, if
    /// the guard cannot follow, none of it (the tables go back to what they were). A retired
    /// keeper (an upgrade's predecessor) leaves them to its successor.
    pub fn apply(&self, rs: &Ruleset) -> Result<()> {
        if self.retired.load(Ordering::SeqCst) {
            return Ok(());
        }
        let old = std::mem::replace(&mut *self.installed.lock(), rs.clone());
        if let Err(e) = self.install_tables(rs) {
            *self.installed.lock() = old;
            return Err(e);
        }
        let _guarding = self.guarding.lock();
        match install_guard(rs) {
            Ok(guard) => {
                *self.guard.lock() = guard;
                Ok(())
            }
            Err(e) => {
                *self.installed.lock() = old.clone();
                if let Err(back) = self.install_tables(&old) {
                    tracing::error!(error = %format!("{back:#}"), "putting the previous tables back after the cgroup guard failed");
                }
                if let Err(back) = install_guard(&old) {
                    tracing::error!(error = %format!("{back:#}"), "putting the previous cgroup guard back");
                }
                Err(e)
            }
        }
    }

    /// Puts the uplink guard on interfaces that appeared since it was installed (see
    /// `follow_interfaces`).
    fn guard_new_interfaces(&self) {
        let _guarding = self.guarding.lock();
        if self.retired.load(Ordering::SeqCst) {
            return;
        }
        let guarded = match &*self.guard.lock() {
            GuardState::Attached { uplinks: cgroup_guard::Uplinks::Attached { interfaces }, .. } => interfaces.clone(),
            _ => return,
        };
        let new: Vec<String> = cgroup_guard::uplink_interfaces().into_iter().filter(|i| !guarded.contains(i)).collect();
        if new.is_empty() {
            return;
        }
        let rs = self.installed.lock().clone();
        match install_guard(&rs) {
            Ok(guard) => {
                tracing::info!(interfaces = ?new, "uplink guard: put on new interface(s)");
                *self.guard.lock() = guard;
            }
            Err(e) => tracing::error!(error = %format!("{e:#}"), interfaces = ?new, "uplink guard: could not put it on new interface(s)"),
        }
    }

    /// After an upgrade's handover the successor keeps the tables: this process stops
    /// watching and touches them no more.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
    }

    /// The owning socket, for an upgrade's successor to inherit.
    pub fn owner_fd(&self) -> RawFd {
        self.socket.raw_fd()
    }

    pub fn status(&self) -> KeeperStatus {
        let rs = self.installed.lock();
        let stats = self.stats.lock();
        KeeperStatus {
            standing_table: rs.standing_name().to_string(),
            owned_table: rs.owned_name(),
            owner_port: self.socket.portid(),
            guard: self.guard.lock().clone(),
            put_back: stats.put_back,
            last_changed_by: stats.last_by.clone(),
            last_put_back_us: stats.last_us,
        }
    }

    fn install_tables(&self, rs: &Ruleset) -> Result<()> {
        let mut batch = Batch::default();
        table::replace(&mut batch, rs, rs.standing_name(), 0, STANDING_SET_IDS)?;
        table::replace(&mut batch, rs, &rs.owned_name(), NFT_TABLE_F_OWNER, OWNED_SET_IDS)?;
        self.socket.run(batch).map_err(|e| self.explain(rs, e))
    }

    /// An owned table another socket holds means another idgate runs: say whose it is.
    fn explain(&self, rs: &Ruleset, e: std::io::Error) -> anyhow::Error {
        let owned = rs.owned_name();
        if e.raw_os_error() == Some(libc::EPERM) {
            if let Ok(tables) = self.socket.tables(NFPROTO_INET) {
                if let Some(owner) = tables.iter().find(|t| t.name == owned).and_then(|t| t.owner) {
                    return anyhow::anyhow!("table inet {owned} is held by netlink port {owner} (another idgate running?), not by this process: {e}");
                }
            }
        }
        anyhow::Error::new(e).context(format!("installing nftables tables inet {} and inet {owned}", rs.standing_name()))
    }

    fn watch(self: Arc<Self>, mut watch: Watch) {
        let mut touched: Option<&'static str> = None;
        loop {
            let events = match watch.next() {
                Ok(events) => events,
                Err(e) => {
                    tracing::error!(error = %e, "reading nftables notifications stopped; the owned table and the cgroup guard still hold");
                    return;
                }
            };
            if self.retired.load(Ordering::SeqCst) {
                return;
            }
            let standing = self.installed.lock().standing_name().to_string();
            for event in events {
                match event {
                    Event::Changed { kind, family, table, portid }
                        if family == NFPROTO_INET && table == standing && portid != self.socket.portid() =>
                    {
                        touched = Some(if kind == Kind::DelTable { "deleted" } else { touched.unwrap_or("changed") });
                    }
                    Event::Changed { .. } => {}
                    Event::Lost => {
                        touched = None;
                        self.put_back("possibly changed (notifications were lost)", "an unknown process".into());
                    }
                    Event::Generation { pid, name } => {
                        if let Some(how) = touched.take() {
                            self.put_back(how, format!("pid {pid} ({})", crate::terminal::escape_text(&name)));
                        }
                    }
                }
            }
        }
    }

    fn put_back(&self, how: &str, by: String) {
        let pace = {
            let mut stats = self.stats.lock();
            let now = Instant::now();
            stats.recent.push_back(now);
            while stats.recent.front().is_some_and(|t| now.duration_since(*t) > FIGHT_WINDOW) {
                stats.recent.pop_front();
            }
            stats.recent.len() > FIGHT_LIMIT
        };
        if pace {
            // Another program keeps undoing it: the owned table holds meanwhile, so slow down
            // rather than fight at full speed.
            std::thread::sleep(Duration::from_millis(500));
        }
        let rs = self.installed.lock().clone();
        let started = Instant::now();
        let mut batch = Batch::default();
        let result = table::replace(&mut batch, &rs, rs.standing_name(), 0, STANDING_SET_IDS).and_then(|()| self.socket.run(batch));
        let took = started.elapsed().as_micros() as u64;
        let mut stats = self.stats.lock();
        match result {
            Ok(()) => {
                stats.put_back += 1;
                stats.last_by = Some(by.clone());
                stats.last_us = Some(took);
                tracing::warn!(
                    by = %by,
                    micros = took,
                    "nftables table inet {} was {how} by {by}; put back in {took} us (table inet {} kept redirecting meanwhile)",
                    rs.standing_name(),
                    rs.owned_name()
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "putting nftables table inet {} back failed; table inet {} and the cgroup guard still hold", rs.standing_name(), rs.owned_name())
            }
        }
    }
}

/// Interfaces come and go (a new uplink, a VPN): at every address change the uplink guard
/// goes on those it is not on yet, as long as the keeper lives.
fn follow_interfaces(keeper: &Arc<Keeper>) {
    let events = match crate::sys::netif::AddressEvents::subscribe() {
        Ok(events) => events,
        Err(e) => {
            tracing::warn!(error = %e, "cannot follow this host's interfaces: the uplink guard reaches new ones at the next reload");
            return;
        }
    };
    let weak = Arc::downgrade(keeper);
    let spawned = std::thread::Builder::new().name("idgate-uplinks".into()).spawn(move || {
        while events.wait().is_ok() {
            let Some(keeper) = weak.upgrade() else { return };
            keeper.guard_new_interfaces();
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot follow this host's interfaces: the uplink guard reaches new ones at the next reload");
    }
}

fn install_guard(rs: &Ruleset) -> Result<GuardState> {
    let state = cgroup_guard::install(rs)?;
    match &state {
        GuardState::Unavailable { why } => tracing::warn!("the cgroup guard (second line of defence) is unavailable: {why}"),
        GuardState::Attached { uplinks: cgroup_guard::Uplinks::Unavailable { why }, .. } => {
            tracing::warn!("the uplink guard (second line of defence for flows forwarded through this host) is unavailable: {why}")
        }
        s => tracing::debug!("cgroup guard: {s}"),
    }
    Ok(state)
}

/// Installs the standing table alone (boot guard, early start), on a socket of its own.
pub fn install_standing(rs: &Ruleset) -> std::io::Result<()> {
    let socket = Socket::open()?;
    let mut batch = Batch::default();
    table::replace(&mut batch, rs, rs.standing_name(), 0, STANDING_SET_IDS)?;
    socket.run(batch)
}

/// Whether table inet `name` exists.
pub fn exists(name: &str) -> std::io::Result<bool> {
    Ok(Socket::open()?.tables(NFPROTO_INET)?.iter().any(|t| t.name == name))
}

/// Deletes table inet `name` (a missing one is no error).
pub fn remove(name: &str) -> std::io::Result<()> {
    let socket = Socket::open()?;
    let mut batch = Batch::default();
    table::delete(&mut batch, name)?;
    socket.run(batch)
}

/// In the main process: opens the socket that owns the table, to be inherited by every proxy it
/// starts (its number in `IDGATE_NFT_OWNER_FD`). After an upgrade's exec the socket is already
/// open and named there; it is kept.
pub fn hold_owner_socket_for_proxies() -> std::io::Result<()> {
    if let Some(fd) = std::env::var(OWNER_FD_ENV).ok().and_then(|v| v.parse::<RawFd>().ok()) {
        // SAFETY: fcntl only reads the flags of a descriptor number.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0 {
            return Ok(());
        }
    }
    let socket = Socket::open()?;
    let fd = socket.into_raw_fd();
    // SAFETY: fcntl on the descriptor just opened: it is to be inherited by the proxies (and
    // kept across the exec of an upgrade), so it loses its close-on-exec flag.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // The main process has no other thread (see main_process).
    std::env::set_var(OWNER_FD_ENV, fd.to_string());
    Ok(())
}

/// In a proxy: the owning socket the main process passed, if any (a proxy started on its own
/// opens one itself).
pub fn inherited_owner_socket() -> Result<Option<OwnedFd>> {
    let Some(value) = std::env::var_os(OWNER_FD_ENV) else { return Ok(None) };
    let fd: RawFd = value
        .to_str()
        .and_then(|v| v.parse().ok())
        .filter(|fd| *fd > 2)
        .with_context(|| format!("{OWNER_FD_ENV} = {value:?} is not a descriptor number"))?;
    // SAFETY: fcntl only reads the flags of a descriptor number.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        anyhow::bail!("{OWNER_FD_ENV} names descriptor {fd}, which is not open");
    }
    // SAFETY: the main process passed this descriptor to this process, and nothing else in it
    // owns the number (Socket::from_fd then checks what it is).
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: fcntl on a descriptor this process now owns: not passed on to what it may start.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    Ok(Some(owned))
}
