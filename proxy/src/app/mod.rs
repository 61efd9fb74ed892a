//! Wires one host's idgate together, top-down in `run`: a table that refuses flows until idgate
//! is ready, the data path's parts (credentials, identity backend, policy, pools), the sockets,
//! the tables kept in place, the control plane (reload, admin, process events), the worker
//! threads, then serving until a stop (drain; the table stays unless `on_stop = "release"`), a
//! fault, or an upgrade's handover.
mod backend;
mod background;

use crate::config::{Config, InboundMode, OnStop};
use crate::control::admin::Admin;
use crate::control::listeners::Binder;
use crate::control::reload::{Fixed, Parts, Reloader};
use crate::credential::authority::{deny_list, hostname, load_credentials};
use crate::identity::Identities;
use crate::intercept::guard::{self, Redirect};
use crate::intercept::Keeper;
use crate::intercept::Ruleset;
use crate::observe::decisions::DecisionLog;
use crate::observe::flows::FlowRegistry;
use crate::observe::metrics::Metrics;
use crate::observe::trail::Trail;
use crate::policy::live::{Live, Policy};
use crate::prewarm::{History, Prewarm};
use crate::runtime::supervise::Supervised;
use crate::runtime::workers;
use crate::tunnel::handshake_gate::HandshakeGate;
use crate::tunnel::inbound::Inbound;
use crate::tunnel::outbound::Outbound;
use crate::tunnel::pool::Pool;
use crate::tunnel::refusals::HandshakeRefusals;
use crate::tunnel::ProxyInputs;
use anyhow::{bail, Context, Result};
use background::{drain, shutdown_signal};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, watch};

const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

/// Runs on the control thread (admin, rotation, signals); the data path runs on `workers`
/// threads of its own (see `runtime::workers`).
/// `takeover`: started by `idgate upgrade` beside the running idgate, which hands over to it.
pub async fn run(workers: usize, config_path: &Path, config: Config, takeover: bool) -> Result<()> {
    refuse_until_ready(&config)?;
    let core = Core::build(&config, workers)?;
    let (mut sockets, listening) = Sockets::bind(&config, workers, takeover, core.inputs.mark)?;
    let keeper = keep_tables(&config, &core)?;
    let plane = ControlPlane::build(&config, config_path, &core, keeper)?;
    let mut running = start(&config, core, plane, listening)?;
    if takeover {
        take_over(&mut sockets).await?;
    }
    let (name, _) = &running.backend;
    crate::runtime::service::ready(&format!("ready: {workers} worker(s), identity backend {name}"));
    let ending = running.until_stop().await;
    match ending {
        Ending::HandedOver(successor) => running.hand_over(successor, &mut sockets.binder).await,
        Ending::Fault(fault) => {
            // The table stays: until the service manager restarts us, intercepted flows are
            // refused rather than sent around the proxy.
            crate::runtime::service::stopping(&format!("failed: {fault}"));
            tracing::error!(%fault, "stopping: {fault}; nftables table inet {} left in place (flows fail closed until restart)", running.ruleset.table);
            bail!("{fault}");
        }
        Ending::Stop => running.stop(config.intercept.on_stop).await,
    }
}

/// Before anything that can fail: if no table is in place yet, one that refuses every flow
/// either backend would intercept. A start that fails later then leaves flows refused.
fn refuse_until_ready(config: &Config) -> Result<()> {
    let early = guard::ruleset(config, Redirect::Either);
    if guard::ensure(&early).with_context(|| format!("installing nftables table inet {}", early.table))? {
        tracing::info!("nftables table inet {} installed: intercepted flows are refused until idgate is ready", early.table);
    }
    Ok(())
}

/// The data path's parts, shared by every worker thread.
struct Core {
    inputs: Arc<ProxyInputs>,
    /// The identity backend's name and why it is the one.
    backend: (&'static str, String),
    redirect: Redirect,
    ruleset: Ruleset,
    identities: Arc<Identities>,
    /// One per worker: a flow and its tunnel connection stay on one thread.
    pools: Vec<Arc<Pool>>,
    exchanges: Arc<crate::http::exchange::Exchanges>,
    inbound: Arc<Inbound>,
    refusals: Arc<HandshakeRefusals>,
    history: Arc<History>,
    flows: Arc<AtomicU64>,
}

impl Core {
    fn build(config: &Config, workers: usize) -> Result<Self> {
        let host = hostname(config);
        crate::credential::keep_keys_out_of_core_dumps()?;
        let revoked = deny_list(config)?;
        let credentials = Arc::new(load_credentials(config, &host, revoked.clone())?);
        credentials.self_test().context("TLS self-test (an in-memory mTLS handshake with this host's own SVID)")?;
        let mut metrics = Metrics::new();
        let exchange_stats = crate::http::exchange::Stats::default();
        exchange_stats.register(&mut metrics.registry);
        let metrics = Arc::new(metrics);
        let (backend, reason) = backend::identity_backend(config)?;
        let name = backend.name();
        metrics.identity_backend(name, &reason);
        let redirect = if name == "kmod" { Redirect::Either } else { Redirect::Destinations };
        let mark = config.intercept.bypass_mark;
        let limits = config.tunnel;
        let pools = (0..workers).map(|_| Arc::new(Pool::new(mark, limits, metrics.key_exchanges.clone(), revoked.clone()))).collect();
        let issuer = config.http.jwt_issuer.clone().unwrap_or_else(|| credentials.server_id().to_string());
        let jwt = Arc::new(crate::http::JwtIssuer::new(config.http.jwt_ttl.0, issuer, config.http.jwt_key.as_deref())?);
        let exchanges = crate::http::exchange::Exchanges::new(jwt, mark, exchange_stats);
        let policy = Policy::build(config, config.http.identity_header.0.clone(), exchanges.clone(), 0)?;
        let inputs = Arc::new(ProxyInputs {
            trail: Arc::new(Trail::open(host.clone(), config.trail.file.as_deref())?),
            host,
            credentials,
            live: Live::new(policy, revoked),
            mark,
            decisions: Arc::new(DecisionLog::new()),
            metrics: metrics.clone(),
            // One registry shard per worker thread, and one for flows outside them.
            registry: FlowRegistry::new(workers + 1),
        });
        let refusals = Arc::new(HandshakeRefusals::new(metrics));
        let inbound = Arc::new(Inbound {
            inputs: inputs.clone(),
            identity_header: crate::http::IdentityHeader::new(config.http.identity_header.0.clone(), config.http.identity_format),
            limits,
            handshakes: HandshakeGate::new(limits.max_handshakes, limits.max_handshakes_per_source),
            refusals: refusals.clone(),
            local: Default::default(),
            flows: Default::default(),
            retire: watch::channel(false).0,
        });
        Ok(Core {
            backend: (name, reason),
            redirect,
            ruleset: guard::ruleset(config, redirect),
            identities: Arc::new(Identities::new(backend)),
            pools,
            exchanges,
            inbound,
            refusals,
            history: load_history(&config.state_dir),
            flows: Arc::new(AtomicU64::new(0)),
            inputs,
        })
    }

    /// One worker's outbound side: its own pool, everything else shared.
    fn outbound(&self, pool: &Arc<Pool>, strict: bool) -> Arc<Outbound> {
        Arc::new(Outbound {
            inputs: self.inputs.clone(),
            identities: self.identities.clone(),
            pool: pool.clone(),
            flows: self.flows.clone(),
            inbound: self.inbound.clone(),
            strict,
            history: self.history.clone(),
        })
    }
}

/// Where flows went before a restart, so that known workloads find their connections dialled.
fn load_history(state_dir: &Path) -> Arc<History> {
    let history = Arc::new(History::default());
    match crate::prewarm::history_file::load(&history, state_dir) {
        Ok(what) => tracing::info!("{what}"),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "target history not read; starting without it (first flows dial their tunnel connections themselves)")
        }
    }
    history
}

/// The listening sockets and where they come from (the service manager's store, an upgrade).
struct Sockets {
    binder: Binder,
    control_path: PathBuf,
    /// Where an upgrade's successor binds its control socket until it took over.
    staging: PathBuf,
}

/// The listeners, bound (or adopted) before anything serves on them.
struct Listening {
    workers: Vec<workers::Listeners>,
    admin: TcpListener,
    control: UnixListener,
}

impl Sockets {
    fn bind(config: &Config, workers: usize, takeover: bool, mark: u32) -> Result<(Self, Listening)> {
        let mut binder = Binder::new(mark, takeover);
        let worker_listeners = binder.workers(workers, config.listen.outbound_port, config.listen.inbound, config.routes_flows())?;
        let admin = TcpListener::from_std(binder.admin(config.listen.admin)?)?;
        binder.finish();
        let control_path = config.control_socket();
        let staging = crate::control::upgrade::staging_socket(&control_path);
        let control = crate::control::admin::bind_control(if takeover { &staging } else { &control_path })?;
        if !crate::control::upgrade::migrates_queued_connections() {
            tracing::info!("net.ipv4.tcp_migrate_req is not 1: at an upgrade's handover, connections not yet accepted by the old idgate are reset");
        }
        if !config.containers.networks.is_empty() && !crate::identity::containers_have_own_tcp_tables() {
            tracing::info!(
                "net.ipv4.tcp_child_ehash_entries is 0: finding a container's connection reads the host's whole TCP table (milliseconds per new connection); \
                 set it (1024, say) before containers start, see docs/operations.md"
            );
        }
        Ok((Sockets { binder, control_path, staging }, Listening { workers: worker_listeners, admin, control }))
    }
}

/// The tables this process keeps in place (put back when another program removes the one that
/// outlives idgate), and the snapshot `idgate guard` installs at boot.
fn keep_tables(config: &Config, core: &Core) -> Result<Arc<Keeper>> {
    background::probe_conntrack()?;
    let ruleset = &core.ruleset;
    let keeper = Keeper::start(ruleset, crate::intercept::inherited_owner_socket()?)?;
    tracing::info!(
        "nftables tables inet {} (outlives idgate) and inet {} (held by this process, which no other program can flush) installed; cgroup guard: {}",
        ruleset.standing_name(),
        ruleset.owned_name(),
        keeper.status().guard
    );
    if let Err(e) = guard::save_snapshot(&config.state_dir, ruleset) {
        tracing::warn!(error = %format!("{e:#}"), "could not record the table for `idgate guard` at boot");
    }
    Ok(keeper)
}

/// What changes the data path from outside it: reloads, process events, the admin listeners.
struct ControlPlane {
    keeper: Arc<Keeper>,
    reloader: Arc<Reloader>,
    admin: Arc<Admin>,
    /// Warm-up requests, one queue per worker.
    warm: Vec<mpsc::Receiver<crate::prewarm::Warm>>,
    /// An upgrade's successor asking to take over (its pid).
    handovers: mpsc::UnboundedReceiver<u32>,
}

impl ControlPlane {
    fn build(config: &Config, config_path: &Path, core: &Core, keeper: Arc<Keeper>) -> Result<Self> {
        let inputs = &core.inputs;
        let reloader = Reloader::new(
            Fixed {
                path: config_path.to_path_buf(),
                exchanges: core.exchanges.clone(),
                identity_header: config.http.identity_header.0.clone(),
                intercept: config.intercept.clone(),
                mode: config.mode,
                state_dir: config.state_dir.clone(),
                redirect: core.redirect,
                routed_listeners: config.routes_flows(),
            },
            Parts {
                live: inputs.live.clone(),
                identities: core.identities.clone(),
                credentials: inputs.credentials.clone(),
                pools: core.pools.clone(),
                registry: inputs.registry.clone(),
                decisions: inputs.decisions.clone(),
                keeper: keeper.clone(),
            },
            config,
            core.ruleset.clone(),
        );
        let (senders, warm): (Vec<_>, Vec<_>) = core.pools.iter().map(|_| mpsc::channel(crate::prewarm::WARM_QUEUE)).unzip();
        let prewarm = Arc::new(Prewarm {
            identities: core.identities.clone(),
            credentials: inputs.credentials.clone(),
            live: inputs.live.clone(),
            history: core.history.clone(),
            workers: senders,
            stats: Arc::new(crate::prewarm::Stats { dropped: inputs.metrics.process_events_dropped.clone(), ..Default::default() }),
        });
        let process_events = prewarm.clone().start();
        let (handover_tx, handovers) = mpsc::unbounded_channel();
        let admin = Arc::new(Admin {
            inputs: inputs.clone(),
            trust_domain: config.trust_domain.0.clone(),
            identity_backend: core.backend.0,
            identity_backend_reason: core.backend.1.clone(),
            mode: config.mode,
            pools: core.pools.clone(),
            exchanges: core.exchanges.clone(),
            inbound: core.inbound.clone(),
            reloader: reloader.clone(),
            handovers: handover_tx,
            process_events,
            prewarm: prewarm.stats.clone(),
            keeper: keeper.clone(),
        });
        Ok(ControlPlane { keeper, reloader, admin, warm, handovers })
    }
}

/// A serving host: its worker threads and the control thread's tasks.
struct Running {
    inputs: Arc<ProxyInputs>,
    backend: (&'static str, String),
    ruleset: Ruleset,
    inbound: Arc<Inbound>,
    history: Arc<History>,
    keeper: Arc<Keeper>,
    reloader: Arc<Reloader>,
    state_dir: PathBuf,
    upgrade_drain: Duration,
    tasks: Supervised,
    /// Turns true when the workers stop accepting.
    stop: watch::Sender<bool>,
    faults: mpsc::UnboundedReceiver<String>,
    handovers: mpsc::UnboundedReceiver<u32>,
}

/// Starts the worker threads and the control thread's tasks.
fn start(config: &Config, core: Core, plane: ControlPlane, listening: Listening) -> Result<Running> {
    let (stop, stopped) = watch::channel(false);
    let (fatal, faults) = mpsc::unbounded_channel();
    let beats: Vec<Arc<AtomicU64>> = core.pools.iter().map(|_| Arc::new(AtomicU64::new(0))).collect();
    let strict = config.mode == InboundMode::Strict;
    for (i, ((listeners, pool), warm)) in listening.workers.into_iter().zip(&core.pools).zip(plane.warm).enumerate() {
        // On failure the table stays: flows are refused until a start succeeds.
        let path = workers::DataPath { outbound: core.outbound(pool, strict), inbound: core.inbound.clone(), warm };
        workers::spawn(i, listeners, path, stopped.clone(), fatal.clone(), beats[i].clone())?;
    }
    let mut tasks = Supervised::default();
    tasks.spawn("admin server", plane.admin.clone().serve_public(listening.admin));
    tasks.spawn("control socket", plane.admin.serve_control(listening.control));
    tasks.spawn("SVID rotation", background::rotate(core.inputs.credentials.clone()));
    tasks.spawn("pool sweep", background::sweep(core.pools.clone()));
    tasks.spawn("refusal summary", background::summarize_refusals(core.refusals));
    tasks.spawn("reload on SIGHUP", background::reload_on_hangup(plane.reloader.clone()));
    tasks.spawn("watchdog", crate::runtime::service::watchdog(beats));
    tasks.spawn("target history", crate::prewarm::history_file::keep(core.history.clone(), config.state_dir.clone()));
    // Not among `tasks`: after an upgrade's handover the old process still closes revoked
    // flows while it drains.
    tokio::spawn(background::watch_revocations(plane.reloader.clone()));
    let (name, reason) = &core.backend;
    tracing::info!(
        host = %core.inputs.host,
        identity_backend = name,
        mode = ?config.mode,
        server_id = %core.inputs.credentials.server_id(),
        outbound = config.listen.outbound_port,
        inbound = %config.listen.inbound,
        workers = core.pools.len(),
        admin = %config.listen.admin,
        "idgate ready (identity backend: {name}: {reason})"
    );
    Ok(Running {
        inputs: core.inputs,
        backend: core.backend,
        ruleset: core.ruleset,
        inbound: core.inbound,
        history: core.history,
        keeper: plane.keeper,
        reloader: plane.reloader,
        state_dir: config.state_dir.clone(),
        upgrade_drain: config.tunnel.upgrade_drain.0,
        tasks,
        stop,
        faults,
        handovers: plane.handovers,
    })
}

/// Serving beside the old idgate: now it may stop accepting, and the control socket is ours.
async fn take_over(sockets: &mut Sockets) -> Result<()> {
    let old = sockets.control_path.clone();
    tokio::task::spawn_blocking(move || crate::control::upgrade::request_handover(&old))
        .await?
        .context("asking the running idgate to hand over (it keeps serving)")?;
    std::fs::rename(&sockets.staging, &sockets.control_path)
        .with_context(|| format!("moving the control socket to {}", sockets.control_path.display()))?;
    sockets.binder.store_pending();
    crate::control::main_process::report_takeover();
    tracing::info!("took over from the previous idgate: new flows are this process's");
    Ok(())
}

enum Ending {
    Stop,
    Fault(String),
    HandedOver(u32),
}

impl Running {
    async fn until_stop(&mut self) -> Ending {
        tokio::select! {
            _ = shutdown_signal() => Ending::Stop,
            Some(fault) = self.faults.recv() => Ending::Fault(fault),
            fault = self.tasks.first_to_end() => Ending::Fault(fault),
            Some(successor) = self.handovers.recv() => Ending::HandedOver(successor),
        }
    }

    /// The successor serves: stop accepting, let peers move their new flows to it (GOAWAY),
    /// and serve what is open until it ends.
    async fn hand_over(mut self, successor: u32, binder: &mut Binder) -> Result<()> {
        // Out of the store first: once closed here, they must not listen on in its hands.
        binder.owned.remove_all();
        self.keeper.retire();
        self.reloader.retire();
        let _ = self.stop.send(true);
        let _ = self.inbound.retire.send(true);
        self.tasks.abort_all();
        // The open flows still follow policy changes (the successor passes its reloads on).
        tokio::spawn(background::reload_on_hangup(self.reloader.clone()));
        let metrics = &self.inputs.metrics;
        let open = metrics.active_flows.get();
        tracing::info!(
            successor,
            open_flows = open,
            "handed over to the successor idgate (pid {successor}); serving the {open} open flow(s) until they end"
        );
        // Until the flows end or the drain passes; a stop meanwhile gives them the stop's drain.
        let deadline = Instant::now() + self.upgrade_drain;
        tokio::select! {
            () = drain(metrics, &self.inputs.registry, deadline) => {}
            _ = shutdown_signal() => drain(metrics, &self.inputs.registry, Instant::now() + DRAIN_DEADLINE).await,
        }
        crate::prewarm::history_file::save_if_changed(&self.history, &self.state_dir).await;
        tracing::info!(remaining_flows = metrics.active_flows.get(), "exiting after the handover");
        Ok(())
    }

    async fn stop(mut self, on_stop: OnStop) -> Result<()> {
        crate::runtime::service::stopping("stopping: draining flows");
        let _ = self.stop.send(true);
        self.tasks.abort_all();
        let table = &self.ruleset.table;
        match on_stop {
            OnStop::Keep => {
                tracing::info!(
                    "shutting down: draining flows; nftables table inet {table} stays, so intercepted flows are refused until idgate runs again"
                )
            }
            OnStop::Release => {
                // Not put back by this process's own watch once removed.
                self.keeper.retire();
                tracing::warn!("shutting down: removing nftables table inet {table} (on_stop = \"release\"): intercepted flows now go out directly, in plaintext");
                if let Err(e) = crate::intercept::remove(table) {
                    tracing::error!(error = %e, "removing nftables table inet {table}");
                }
                if let Err(e) = crate::intercept::cgroup_guard::remove(&self.ruleset.guard_cgroup) {
                    tracing::error!(error = %format!("{e:#}"), "removing the cgroup guard");
                }
            }
        }
        drain(&self.inputs.metrics, &self.inputs.registry, Instant::now() + DRAIN_DEADLINE).await;
        crate::prewarm::history_file::save_if_changed(&self.history, &self.state_dir).await;
        tracing::info!(remaining_flows = self.inputs.metrics.active_flows.get(), "stopped");
        Ok(())
    }
}
