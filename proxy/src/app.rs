//! Wires one host's idgate together: credentials, identity backend, listeners, nftables,
//! background rotation, and graceful shutdown (stop accepting, drain flows, exit; the table
//! stays unless `on_stop = "release"`).
use crate::config::{Config, IdentityBackendChoice, InboundMode, OnStop};
use crate::control::admin::Admin;
use crate::control::reload::{Fixed, Parts, Reloader};
use crate::credential::authority::{deny_list, hostname, load_credentials};
use crate::credential::Credentials;
use crate::identity::{FlowIdentity, Identities, ProcfsBackend};
use crate::intercept::guard::{self, Redirect};
use crate::observe::decisions::DecisionLog;
use crate::observe::flows::FlowRegistry;
use crate::observe::metrics::Metrics;
use crate::observe::trail::Trail;
use crate::policy::live::{Live, Policy};
use crate::runtime::supervise::Supervised;
use crate::runtime::workers;
use crate::tunnel::handshake_gate::HandshakeGate;
use crate::tunnel::inbound::Inbound;
use crate::tunnel::outbound::Outbound;
use crate::tunnel::pool::Pool;
use crate::tunnel::refusals::HandshakeRefusals;
use crate::tunnel::ProxyInputs;
use anyhow::{bail, Context, Result};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

/// The identity backend, and why it is the one: an operator must be able to tell a host that
/// fell back to procfs (module absent, one whose API this idgate does not speak, or a kernel
/// outside the module's support window) from one that never had the module. Only an explicit
/// `identity_backend = "kmod"` refuses to start.
fn identity_backend(config: &Config) -> Result<(Box<dyn FlowIdentity>, String)> {
    let device = crate::identity::kmod_device();
    // The module's API first (a device that does not speak it is no module of ours), then the
    // kernel it runs on.
    let open = || -> Result<(crate::identity::KmodBackend, String)> {
        let kmod = crate::identity::KmodBackend::open(&device, &config.outbound, &config.intercept)
            .with_context(|| format!("the kernel module at {} is not usable", device.display()))?;
        let note = crate::identity::kmod_envelope::check_running().map_err(anyhow::Error::msg)?;
        Ok((kmod, note))
    };
    match config.identity_backend {
        IdentityBackendChoice::Procfs => Ok((Box::new(ProcfsBackend::default()), "identity_backend = \"procfs\" in the config".into())),
        IdentityBackendChoice::Kmod => match open() {
            Ok((kmod, note)) => Ok((Box::new(kmod), format!("identity_backend = \"kmod\" in the config; {note}"))),
            Err(e) => Err(e.context("identity_backend = \"kmod\" but the kernel module cannot be trusted")),
        },
        IdentityBackendChoice::Auto if !device.exists() => {
            Ok((Box::new(ProcfsBackend::default()), format!("{} does not exist (idgate.ko is not loaded)", device.display())))
        }
        IdentityBackendChoice::Auto => match open() {
            Ok((kmod, note)) => Ok((Box::new(kmod), format!("{} is usable; {note}", device.display()))),
            Err(e) => {
                let why = format!("{e:#}; falling back to procfs");
                tracing::warn!("{why}");
                Ok((Box::new(ProcfsBackend::default()), why))
            }
        },
    }
}

/// Runs on the control thread (admin, rotation, signals); the data path runs on `workers`
/// threads of its own (see `workers`).
/// `takeover`: started by `idgate upgrade` beside the running idgate, which hands over to it.
pub async fn run(workers: usize, config_path: &std::path::Path, config: Config, takeover: bool) -> Result<()> {
    // Before anything that can fail: if no table is in place yet, one that refuses every flow
    // either backend would intercept. A start that fails below then leaves flows refused.
    let early = guard::ruleset(&config, Redirect::Either);
    if guard::ensure(&early).with_context(|| format!("installing nftables table inet {}", early.table))? {
        tracing::info!("nftables table inet {} installed: intercepted flows are refused until idgate is ready", early.table);
    }
    let host = hostname(&config);
    crate::credential::keep_keys_out_of_core_dumps()?;
    let revoked = deny_list(&config)?;
    let credentials = Arc::new(load_credentials(&config, &host, revoked.clone())?);
    credentials.self_test().context("TLS self-test (an in-memory mTLS handshake with this host's own SVID)")?;
    let metrics = Arc::new(Metrics::new());
    let (backend, backend_reason) = identity_backend(&config)?;
    let backend_name = backend.name();
    metrics.identity_backend(backend_name, &backend_reason);
    let redirect = if backend_name == "kmod" { Redirect::Either } else { Redirect::Destinations };
    let ruleset = guard::ruleset(&config, redirect);
    let on_stop = config.intercept.on_stop;
    let state_dir = config.state_dir.clone();
    let control_path = config.control_socket();
    let identities = Arc::new(Identities::new(backend));
    let mark = config.intercept.bypass_mark;
    // One pool per worker: a flow and its tunnel connection stay on one thread.
    let limits = config.tunnel;
    let pools: Vec<Arc<Pool>> = (0..workers).map(|_| Arc::new(Pool::new(mark, limits, metrics.key_exchanges.clone(), revoked.clone()))).collect();
    let decisions = Arc::new(DecisionLog::new());
    let issuer = config.http.jwt_issuer.clone().unwrap_or_else(|| credentials.server_id().to_string());
    let jwt = Arc::new(crate::http::JwtIssuer::new(config.http.jwt_ttl.0, issuer)?);
    let policy = Policy::build(&config, config.http.identity_header.0.clone(), jwt.clone(), 0)?;
    let live = Live::new(policy, revoked);
    let identity_header = crate::http::IdentityHeader::new(config.http.identity_header.0.clone(), config.http.identity_format);

    let port = config.listen.outbound_port;
    let mut binder = crate::control::listeners::Binder::new(mark, takeover);
    let worker_listeners = binder.workers(workers, port, config.listen.inbound)?;
    let admin_listener = TcpListener::from_std(binder.admin(config.listen.admin)?)?;
    binder.finish();
    let staging = crate::control::upgrade::staging_socket(&control_path);
    let control_listener = crate::control::admin::bind_control(if takeover { &staging } else { &control_path })?;
    if !crate::control::upgrade::migrates_queued_connections() {
        tracing::info!("net.ipv4.tcp_migrate_req is not 1: at an upgrade's handover, connections not yet accepted by the old idgate are reset");
    }

    probe_conntrack()?;
    let keeper = crate::intercept::Keeper::start(&ruleset, crate::intercept::inherited_owner_socket()?)?;
    tracing::info!(
        "nftables tables inet {} (outlives idgate) and inet {} (held by this process, which no other program can flush) installed; cgroup guard: {}",
        ruleset.standing_name(),
        ruleset.owned_name(),
        keeper.status().guard
    );
    if let Err(e) = guard::save_snapshot(&state_dir, &ruleset) {
        tracing::warn!(error = %format!("{e:#}"), "could not record the table for `idgate guard` at boot");
    }

    let flows = Arc::new(AtomicU64::new(0));
    let refusals = Arc::new(HandshakeRefusals::new(metrics.clone()));
    // One registry shard per worker thread, and one for flows outside them.
    let registry = FlowRegistry::new(workers + 1);
    let trail = Arc::new(Trail::open(host.clone(), config.trail.file.as_deref())?);
    let inputs = Arc::new(ProxyInputs {
        host: host.clone(),
        credentials: credentials.clone(),
        live: live.clone(),
        mark,
        decisions: decisions.clone(),
        metrics: metrics.clone(),
        registry: registry.clone(),
        trail,
    });
    let inbound = Arc::new(Inbound {
        inputs: inputs.clone(),
        identity_header,
        limits,
        handshakes: HandshakeGate::new(limits.max_handshakes, limits.max_handshakes_per_source),
        refusals: refusals.clone(),
        local: Default::default(),
        flows: Default::default(),
        retire: tokio::sync::watch::channel(false).0,
    });
    let history = Arc::new(crate::prewarm::History::default());
    match crate::prewarm::history_file::load(&history, &state_dir) {
        Ok(what) => tracing::info!("{what}"),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "target history not read; starting without it (first flows dial their tunnel connections themselves)")
        }
    }
    let outbound_for = |pool: &Arc<Pool>| {
        Arc::new(Outbound {
            inputs: inputs.clone(),
            identities: identities.clone(),
            pool: pool.clone(),
            flows: flows.clone(),
            inbound: inbound.clone(),
            strict: config.mode == InboundMode::Strict,
            history: history.clone(),
        })
    };
    let reloader = Reloader::new(
        Fixed {
            path: config_path.to_path_buf(),
            jwt: jwt.clone(),
            identity_header: config.http.identity_header.0.clone(),
            intercept: config.intercept.clone(),
            mode: config.mode,
            state_dir: state_dir.clone(),
            redirect,
        },
        Parts {
            live: live.clone(),
            identities: identities.clone(),
            credentials: credentials.clone(),
            pools: pools.clone(),
            registry: registry.clone(),
            decisions: decisions.clone(),
            keeper: keeper.clone(),
        },
        &config,
        ruleset.clone(),
    );
    let (warm_senders, warm_receivers): (Vec<_>, Vec<_>) = (0..workers).map(|_| tokio::sync::mpsc::channel(crate::prewarm::WARM_QUEUE)).unzip();
    let prewarm = Arc::new(crate::prewarm::Prewarm {
        identities: identities.clone(),
        credentials: credentials.clone(),
        live: live.clone(),
        history: history.clone(),
        workers: warm_senders,
        stats: Arc::new(crate::prewarm::Stats { dropped: metrics.process_events_dropped.clone(), ..Default::default() }),
    });
    let process_events = prewarm.clone().start();
    let (handover_tx, mut handovers) = tokio::sync::mpsc::unbounded_channel();
    let admin = Arc::new(Admin {
        host: host.clone(),
        trust_domain: config.trust_domain.0.clone(),
        identity_backend: backend_name,
        identity_backend_reason: backend_reason.clone(),
        mode: config.mode,
        credentials: credentials.clone(),
        pools: pools.clone(),
        jwt,
        decisions: decisions.clone(),
        metrics: metrics.clone(),
        inbound: inbound.clone(),
        registry: registry.clone(),
        reloader: reloader.clone(),
        live: live.clone(),
        handovers: handover_tx,
        process_events: process_events.clone(),
        prewarm: prewarm.stats.clone(),
        keeper: keeper.clone(),
    });

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (fatal, mut faults) = tokio::sync::mpsc::unbounded_channel();
    let beats: Vec<Arc<AtomicU64>> = (0..workers).map(|_| Arc::new(AtomicU64::new(0))).collect();
    for (i, ((listeners, pool), warm)) in worker_listeners.into_iter().zip(&pools).zip(warm_receivers).enumerate() {
        // On failure the table stays: flows are refused until a start succeeds.
        let path = workers::DataPath { outbound: outbound_for(pool), inbound: inbound.clone(), warm };
        workers::spawn(i, listeners, path, stopped.clone(), fatal.clone(), beats[i].clone())?;
    }
    let mut tasks = Supervised::default();
    tasks.spawn("admin server", admin.clone().serve_public(admin_listener));
    tasks.spawn("control socket", admin.serve_control(control_listener));
    tasks.spawn("SVID rotation", rotate(credentials.clone()));
    tasks.spawn("pool sweep", sweep(pools));
    tasks.spawn("refusal summary", summarize_refusals(refusals));
    tasks.spawn("reload on SIGHUP", reload_on_hangup(reloader.clone()));
    tasks.spawn("watchdog", crate::runtime::service::watchdog(beats));
    tasks.spawn("target history", crate::prewarm::history_file::keep(history.clone(), state_dir.clone()));
    // Not among `tasks`: after an upgrade's handover the old process still closes revoked
    // flows while it drains.
    tokio::spawn(watch_revocations(reloader.clone()));
    tracing::info!(
        %host,
        identity_backend = backend_name,
        mode = ?config.mode,
        server_id = %credentials.server_id(),
        outbound = port,
        inbound = %config.listen.inbound,
        workers,
        admin = %config.listen.admin,
        "idgate ready (identity backend: {backend_name}: {backend_reason})"
    );
    if takeover {
        // Serving beside the old idgate: now it may stop accepting.
        let old = control_path.clone();
        tokio::task::spawn_blocking(move || crate::control::upgrade::request_handover(&old))
            .await?
            .context("asking the running idgate to hand over (it keeps serving)")?;
        std::fs::rename(&staging, &control_path).with_context(|| format!("moving the control socket to {}", control_path.display()))?;
        binder.store_pending();
        crate::control::main_process::report_takeover();
        tracing::info!("took over from the previous idgate: new flows are this process's");
    }
    crate::runtime::service::ready(&format!("ready: {workers} worker(s), identity backend {backend_name}"));

    let fault = tokio::select! {
        _ = shutdown_signal() => None,
        Some(fault) = faults.recv() => Some(fault),
        fault = tasks.first_to_end() => Some(fault),
        Some(successor) = handovers.recv() => {
            // The successor serves: stop accepting, let peers move their new flows to it
            // (GOAWAY), and serve what is open until it ends.
            // Out of the store first: once closed here, they must not listen on in its hands.
            binder.owned.remove_all();
            keeper.retire();
            reloader.retire();
            let _ = stop.send(true);
            let _ = inbound.retire.send(true);
            tasks.abort_all();
            // The open flows still follow policy changes (the successor passes its reloads on).
            tokio::spawn(reload_on_hangup(reloader.clone()));
            let open = metrics.active_flows.get();
            tracing::info!(successor, open_flows = open, "handed over to the successor idgate (pid {successor}); serving the {open} open flow(s) until they end");
            // Until the flows end or the drain passes; a stop meanwhile gives them the stop's drain.
            let deadline = Instant::now() + limits.upgrade_drain.0;
            tokio::select! {
                () = drain(&metrics, &registry, deadline) => {}
                _ = shutdown_signal() => drain(&metrics, &registry, Instant::now() + DRAIN_DEADLINE).await,
            }
            crate::prewarm::history_file::save_if_changed(&history, &state_dir).await;
            tracing::info!(remaining_flows = metrics.active_flows.get(), "exiting after the handover");
            return Ok(());
        }
    };
    if let Some(fault) = fault {
        // The table stays: until the service manager restarts us, intercepted flows are
        // refused rather than sent around the proxy.
        crate::runtime::service::stopping(&format!("failed: {fault}"));
        tracing::error!(%fault, "stopping: {fault}; nftables table inet {} left in place (flows fail closed until restart)", ruleset.table);
        bail!("{fault}");
    }
    crate::runtime::service::stopping("stopping: draining flows");
    let _ = stop.send(true);
    tasks.abort_all();
    match on_stop {
        OnStop::Keep => tracing::info!(
            "shutting down: draining flows; nftables table inet {} stays, so intercepted flows are refused until idgate runs again",
            ruleset.table
        ),
        OnStop::Release => {
            // Not put back by this process's own watch once removed.
            keeper.retire();
            tracing::warn!(
                "shutting down: removing nftables table inet {} (on_stop = \"release\"): intercepted flows now go out directly, in plaintext",
                ruleset.table
            );
            if let Err(e) = crate::intercept::remove(&ruleset.table) {
                tracing::error!(error = %e, "removing nftables table inet {}", ruleset.table);
            }
            if let Err(e) = crate::intercept::cgroup_guard::remove(&ruleset.guard_cgroup) {
                tracing::error!(error = %format!("{e:#}"), "removing the cgroup guard");
            }
        }
    }
    drain(&metrics, &registry, Instant::now() + DRAIN_DEADLINE).await;
    crate::prewarm::history_file::save_if_changed(&history, &state_dir).await;
    tracing::info!(remaining_flows = metrics.active_flows.get(), "stopped");
    Ok(())
}

/// Waits until the open flows have ended or `deadline` passed; those still open then are reset
/// at both ends: closed plainly, a cut stream would look complete to a client that reads to
/// its end (a response without a length, say).
async fn drain(metrics: &Metrics, registry: &FlowRegistry, deadline: Instant) {
    while metrics.active_flows.get() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reset = registry.close_where(|_| Some("the drain ended with the flow still open (idgate stopping)".into()));
    if reset > 0 {
        tracing::info!(flows = reset, "the drain ended: resetting the {reset} flow(s) still open at both ends");
        let until = Instant::now() + Duration::from_secs(1);
        while metrics.active_flows.get() > 0 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Identity needs each flow's original tuple from ctnetlink; refuse to start without it
/// rather than guess from addresses NAT may have rewritten.
fn probe_conntrack() -> Result<()> {
    let nowhere: SocketAddr = (Ipv4Addr::LOCALHOST, 1).into();
    match crate::intercept::original_tuple(nowhere, nowhere) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Ok(_) => Ok(()),
        Err(e) => {
            bail!("conntrack netlink (ctnetlink) is not usable: {e}; load nf_conntrack_netlink")
        }
    }
}

async fn rotate(credentials: Arc<Credentials>) {
    let mut tick = tokio::time::interval(credentials.rotation_check_interval());
    loop {
        tick.tick().await;
        credentials.rotate_due();
    }
}

async fn sweep(pools: Vec<Arc<Pool>>) {
    let mut tick = tokio::time::interval(Duration::from_secs(15));
    loop {
        tick.tick().await;
        pools.iter().for_each(|p| p.sweep());
    }
}

/// One log line per interval for refused tunnel connections, however many there were. After
/// a burst of them, the memory their tasks held goes back to the system: glibc keeps freed
/// memory of its per-thread arenas otherwise, and a flood would leave the process large.
async fn summarize_refusals(refusals: Arc<HandshakeRefusals>) {
    const EVERY: Duration = Duration::from_secs(10);
    const BURST: u64 = 256;
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tick.tick().await;
        if refusals.log_summary(EVERY.as_secs()) >= BURST {
            // SAFETY: malloc_trim only returns free memory to the system; any thread may call it.
            unsafe { libc::malloc_trim(0) };
        }
    }
}

/// `systemctl reload` (and config tools) send SIGHUP; a refused file is logged by `reload`.
async fn reload_on_hangup(reloader: Arc<Reloader>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).expect("installing SIGHUP handler");
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the config");
        let _ = reloader.reload();
    }
}

/// The deny list is read again as soon as its file changes (a rename into place or a write):
/// a revocation reaches open flows within this interval plus the time to close them.
async fn watch_revocations(reloader: Arc<Reloader>) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if reloader.revocations_changed() {
            let _ = reloader.revocations();
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
