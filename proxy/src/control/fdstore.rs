//! Listeners that outlive the process. Each listener idgate binds is also handed to systemd's
//! file descriptor store (`FDSTORE=1`, `FileDescriptorStoreMax=` in the unit), and the next
//! start (`systemctl restart`, a restart after a crash) gets it back (`LISTEN_FDS`) instead of
//! binding anew. While no idgate runs, the sockets go on listening in systemd's hands:
//! connections wait in their backlog and the next idgate accepts them, so a restart refuses
//! none. `systemctl stop` empties the store (the table then refuses flows, as always).
//!
//! Names are `<pid>.<role>` (role `out4-0`, `in-1`, `admin`, ...): an upgrade's two processes
//! have listeners of the same roles at once, and at the handover the old one takes exactly its
//! own out of the store before closing them. A stored listener no process adopts would stay in
//! its SO_REUSEPORT group with nobody accepting; leftovers are therefore removed and closed.
use sd_notify::NotifyState;
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};

/// Listeners passed in by the service manager, by role, with their stored names.
#[derive(Default)]
pub struct Inherited {
    by_role: HashMap<String, (String, OwnedFd)>,
}

/// The listeners this process has in the store, by name.
#[derive(Default)]
pub struct Owned {
    names: Vec<String>,
}

fn role_of(name: &str) -> &str {
    name.split_once('.').map(|(_, role)| role).unwrap_or(name)
}

impl Inherited {
    /// Takes the descriptors the service manager passed (and unsets its variables).
    pub fn from_env() -> Inherited {
        let mut by_role = HashMap::new();
        match sd_notify::listen_fds_with_names(true) {
            Ok(fds) => {
                for (fd, name) in fds {
                    // SAFETY: the service manager passed this descriptor to this process
                    // (LISTEN_PID is ours), and nothing else in it owns the number.
                    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                    by_role.insert(role_of(&name).to_string(), (name, owned));
                }
            }
            Err(e) => tracing::warn!(error = %e, "ignoring the descriptors passed by the service manager"),
        }
        if !by_role.is_empty() {
            tracing::info!(listeners = by_role.len(), "listeners handed back by the service manager: connections that arrived meanwhile are waiting");
        }
        Inherited { by_role }
    }

    pub fn is_empty(&self) -> bool {
        self.by_role.is_empty()
    }

    /// The listener of `role` if one was passed and listens on `addr`; `owned` records its
    /// stored name.
    pub fn take(&mut self, role: &str, addr: SocketAddr, owned: &mut Owned) -> Option<TcpListener> {
        let (name, fd) = self.by_role.remove(role)?;
        let listener = TcpListener::from(fd);
        match listener.local_addr() {
            Ok(at) if at == addr && listener.set_nonblocking(true).is_ok() => {
                owned.names.push(name);
                Some(listener)
            }
            _ => {
                tracing::info!(%role, "a stored listener no longer fits the config; closing it");
                remove(&[name]);
                None
            }
        }
    }

    /// Listeners of roles this start does not use (fewer workers, say): out of the store, closed.
    pub fn discard_rest(self) {
        let names: Vec<String> = self.by_role.into_values().map(|(name, _fd)| name).collect();
        if !names.is_empty() {
            tracing::info!(count = names.len(), "closing stored listeners this configuration does not use");
            remove(&names);
        }
    }
}

impl Owned {
    /// Hands `listener` to the store under `<pid>.<role>`.
    pub fn store(&mut self, role: &str, listener: &impl AsFd) {
        let name = format!("{}.{role}", std::process::id());
        let states = [NotifyState::FdStore, NotifyState::FdName(&name)];
        match sd_notify::notify_with_fds(false, &states, &[listener.as_fd()]) {
            Ok(()) => self.names.push(name),
            Err(e) => tracing::warn!(error = %e, "could not hand a listener to the service manager's store"),
        }
    }

    /// Takes this process's listeners out of the store (an upgrade's handover).
    pub fn remove_all(&mut self) {
        remove(&std::mem::take(&mut self.names));
    }
}

fn remove(names: &[String]) {
    for name in names {
        if let Err(e) = sd_notify::notify(false, &[NotifyState::FdStoreRemove, NotifyState::FdName(name)]) {
            tracing::warn!(error = %e, %name, "could not take a listener out of the service manager's store");
        }
    }
}
