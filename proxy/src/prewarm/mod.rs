//! Getting ready for a workload before its first `connect()`: the kernel's process events
//! (see `identity::proc_events`) report each exec; a process whose attributes give it an
//! identity has its SVID minted then, and each worker dials the peers that identity (or, for
//! one never seen, this host) used recently, so the flow finds a pooled connection. Exits
//! retire what was kept per process. All of it is an optimisation: nothing decides a flow on
//! it, and where the events are unavailable (containers) flows just do this work themselves.
pub mod history_file;

use crate::credential::Credentials;
use crate::identity::{read_process, Identities, ProcEvent, ProcEvents};
use crate::policy::live::Live;
use crate::spiffe::SpiffeId;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Peers (with the destination address each was verified for) kept per identity, and host-wide.
const TARGETS_KEPT: usize = 4;
/// Identities whose peers are remembered; beyond it the history starts over.
const IDENTITIES_KEPT: usize = 4096;
/// Batches of process events waiting for the runtime. A burst beyond it (a fork bomb, a
/// runtime stalled) is dropped and counted rather than held in memory: no flow depends on it.
const EVENT_QUEUE: usize = 1024;
/// Warm-up requests waiting for each worker; more are dropped and counted the same way.
pub const WARM_QUEUE: usize = 64;

/// A tunnel target: the peer idgate and the destination address it was verified as the host of.
pub type Target = (SocketAddr, IpAddr);

/// Where this host's flows went recently: per identity, and the latest few overall. It is
/// kept across restarts (see `history_file`).
#[derive(Default)]
pub struct History {
    by_identity: Mutex<HashMap<SpiffeId, VecDeque<Target>>>,
    any: Mutex<VecDeque<Target>>,
    /// Changed since it was last saved.
    changed: AtomicBool,
}

/// What a `History` holds, newest target first.
#[derive(Default, Debug, PartialEq)]
pub struct Snapshot {
    pub by_identity: Vec<(SpiffeId, Vec<Target>)>,
    pub any: Vec<Target>,
}

/// Puts `target` first; whether that changed the list.
fn remember(list: &mut VecDeque<Target>, target: Target) -> bool {
    if list.front() == Some(&target) {
        return false;
    }
    list.retain(|t| *t != target);
    list.push_front(target);
    list.truncate(TARGETS_KEPT);
    true
}

impl History {
    /// A flow of `id` was tunnelled to `target`.
    pub fn used(&self, id: &SpiffeId, target: Target) {
        let mut changed = {
            let mut by_identity = self.by_identity.lock();
            if let Some(list) = by_identity.get_mut(id) {
                remember(list, target)
            } else {
                if by_identity.len() >= IDENTITIES_KEPT {
                    by_identity.clear();
                }
                by_identity.insert(id.clone(), VecDeque::from([target]));
                true
            }
        };
        changed |= remember(&mut self.any.lock(), target);
        if changed {
            self.changed.store(true, Ordering::Release);
        }
    }

    /// Whether it changed since the last call.
    pub fn take_changed(&self) -> bool {
        self.changed.swap(false, Ordering::AcqRel)
    }

    pub fn snapshot(&self) -> Snapshot {
        let by_identity = self.by_identity.lock().iter().map(|(id, list)| (id.clone(), list.iter().copied().collect())).collect();
        Snapshot { by_identity, any: self.any.lock().iter().copied().collect() }
    }

    /// Starts from a saved history (within the same bounds as one built by flows).
    pub fn restore(&self, saved: Snapshot) {
        let bounded = |list: Vec<Target>| list.into_iter().take(TARGETS_KEPT).collect::<VecDeque<_>>();
        let mut by_identity = self.by_identity.lock();
        for (id, list) in saved.by_identity.into_iter().take(IDENTITIES_KEPT) {
            by_identity.insert(id, bounded(list));
        }
        *self.any.lock() = bounded(saved.any);
    }

    /// What to warm for `id`: its own recent targets, else the host's.
    pub fn targets(&self, id: &SpiffeId) -> Vec<Target> {
        match self.by_identity.lock().get(id) {
            Some(list) => list.iter().copied().collect(),
            None => self.any.lock().iter().copied().collect(),
        }
    }
}

/// A request to a worker: have a pooled connection of `source` to each target.
pub struct Warm {
    pub source: SpiffeId,
    pub targets: Vec<Target>,
}

/// What `idgate status` shows about it.
#[derive(Default)]
pub struct Stats {
    pub execs: AtomicU64,
    pub prepared: AtomicU64,
    pub warm_requests: AtomicU64,
    pub exits: AtomicU64,
    pub lost: AtomicU64,
    /// Events that arrived while the queue to the runtime was full (also a metric).
    pub dropped: prometheus_client::metrics::counter::Counter,
    /// Warm-up requests a worker's full queue turned away.
    pub warm_dropped: AtomicU64,
}

pub struct Prewarm {
    pub identities: Arc<Identities>,
    pub credentials: Arc<Credentials>,
    pub live: Arc<Live>,
    pub history: Arc<History>,
    pub workers: Vec<mpsc::Sender<Warm>>,
    pub stats: Arc<Stats>,
}

/// Whether process events are in use, and why not if they are not.
#[derive(Clone, serde::Serialize)]
pub struct EventsState {
    pub available: bool,
    pub reason: String,
}

/// Overrides the network namespace the connector socket is opened in (a path such as
/// `/proc/<pid>/ns/net` of a process there): for tests and benchmarks whose hosts are network namespaces of one
/// machine. A real host runs idgate in the initial namespace and needs nothing.
pub const NETNS_ENV: &str = "IDGATE_PROC_EVENTS_NETNS";

impl Prewarm {
    /// Subscribes on a thread of its own and handles events on the calling runtime.
    pub fn start(self: Arc<Self>) -> EventsState {
        let (tx, mut rx) = mpsc::channel::<Vec<ProcEvent>>(EVENT_QUEUE);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let stats = self.stats.clone();
        let spawned = std::thread::Builder::new().name("idgate-proc-events".into()).spawn(move || {
            let subscribed = enter_netns().and_then(|()| ProcEvents::subscribe());
            let mut events = match subscribed {
                Ok(e) => {
                    let _ = ready_tx.send(Ok(()));
                    e
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            loop {
                let mut batch = Vec::new();
                match events.next(&mut batch) {
                    Ok(true) => {}
                    Ok(false) => {
                        stats.lost.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "process events stopped; workloads are prepared at their first flow from now on");
                        return;
                    }
                }
                if !batch.is_empty() && !forward(&tx, batch, &stats) {
                    return;
                }
            }
        });
        let outcome = match spawned {
            Ok(_) => ready_rx.recv().unwrap_or_else(|_| Err(std::io::Error::other("the events thread ended"))),
            Err(e) => Err(e),
        };
        if let Err(e) = outcome {
            let reason = format!("process events unavailable ({e}): workloads are prepared at their first flow");
            tracing::info!("{reason}");
            return EventsState { available: false, reason };
        }
        tokio::spawn(async move {
            while let Some(batch) = rx.recv().await {
                for event in batch {
                    self.handle(event);
                }
            }
        });
        EventsState { available: true, reason: "subscribed to the kernel's process events (proc connector)".into() }
    }

    fn handle(&self, event: ProcEvent) {
        match event {
            ProcEvent::Exec(pid) => {
                self.stats.execs.fetch_add(1, Ordering::Relaxed);
                self.prepare(pid);
            }
            ProcEvent::Ids(_) => {} // flows re-read ids at connect time
            ProcEvent::Exit(pid) => {
                self.stats.exits.fetch_add(1, Ordering::Relaxed);
                self.identities.process_exited(pid);
            }
        }
    }

    /// A process just ran execve: if it is a workload, mint its SVID and warm its peers.
    fn prepare(&self, pid: u32) {
        let Ok(process) = read_process(pid) else { return }; // gone already
        let policy = self.live.policy();
        let Some(id) = policy.selector.select(&process) else { return };
        if self.live.revoked().why(Some(&id), None).is_some() {
            return;
        }
        self.identities.process_started(pid);
        if let Err(e) = self.credentials.workload(&id) {
            tracing::debug!(%id, error = %format!("{e:#}"), "minting ahead of the first flow failed; the flow will try again");
            return;
        }
        self.stats.prepared.fetch_add(1, Ordering::Relaxed);
        policy.rewriter.prefetch(&id);
        let targets = self.history.targets(&id);
        tracing::debug!(pid, %id, targets = targets.len(), "workload prepared before its first flow");
        if targets.is_empty() {
            return;
        }
        for worker in &self.workers {
            self.stats.warm_requests.fetch_add(1, Ordering::Relaxed);
            if let Err(mpsc::error::TrySendError::Full(_)) = worker.try_send(Warm { source: id.clone(), targets: targets.clone() }) {
                self.stats.warm_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Hands a batch to the runtime without waiting: a full queue drops it (counted). False once
/// the runtime is gone.
fn forward(tx: &mpsc::Sender<Vec<ProcEvent>>, batch: Vec<ProcEvent>, stats: &Stats) -> bool {
    match tx.try_send(batch) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(batch)) => {
            stats.dropped.inc_by(batch.len() as u64);
            true
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}

/// Moves this thread into the namespace `IDGATE_PROC_EVENTS_NETNS` names, if it is set.
fn enter_netns() -> std::io::Result<()> {
    let Ok(path) = std::env::var(NETNS_ENV) else { return Ok(()) };
    let file = std::fs::File::open(&path).map_err(|e| std::io::Error::new(e.kind(), format!("{NETNS_ENV}={path}: {e}")))?;
    rustix::thread::move_into_link_name_space(std::os::fd::AsFd::as_fd(&file), Some(rustix::thread::LinkNameSpaceType::Network)).map_err(|e| {
        let e = std::io::Error::from(e);
        std::io::Error::new(e.kind(), format!("{NETNS_ENV}={path}: setns: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_the_runtime_does_not_take_is_dropped_and_counted_not_queued() {
        let stats = Stats::default();
        let (tx, mut rx) = mpsc::channel(2);
        for pid in 0..5 {
            assert!(forward(&tx, vec![ProcEvent::Exec(pid), ProcEvent::Exit(pid)], &stats));
        }
        assert_eq!(stats.dropped.get(), 6, "three batches of two beyond the queue's two");
        assert_eq!(rx.try_recv().map(|b| b.len()), Ok(2));
        assert!(forward(&tx, vec![ProcEvent::Exec(9)], &stats), "room again once the runtime took one");
        assert_eq!(stats.dropped.get(), 6);
        drop(rx);
        assert!(!forward(&tx, vec![ProcEvent::Exec(10)], &stats), "the thread stops once the runtime is gone");
    }

    #[test]
    fn history_keeps_the_latest_targets_per_identity_and_falls_back_to_the_hosts() {
        let h = History::default();
        let alice = SpiffeId::parse("spiffe://td/app/alice").unwrap();
        let bob = SpiffeId::parse("spiffe://td/app/bob").unwrap();
        let t = |i: u8| (SocketAddr::from(([10, 0, 0, i], 15443)), IpAddr::from([10, 0, 0, i]));
        assert!(h.targets(&alice).is_empty());
        for i in 1..=6 {
            h.used(&alice, t(i));
        }
        h.used(&alice, t(4)); // used again: to the front, not twice
        assert_eq!(h.targets(&alice), vec![t(4), t(6), t(5), t(3)]);
        assert_eq!(h.targets(&bob), vec![t(4), t(6), t(5), t(3)], "an identity never seen gets the host's recent targets");
        h.used(&bob, t(9));
        assert_eq!(h.targets(&bob), vec![t(9)]);
    }
}
