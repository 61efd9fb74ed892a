use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "idgate", version, about = "Transparent mTLS with per-process SPIFFE identities")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Which running idgate a command talks to: the one the config file names, or a socket.
#[derive(clap::Args)]
struct Running {
    /// The config file.
    #[arg(short, long, default_value = "/etc/idgate/idgate.toml")]
    config: PathBuf,
    /// The control socket, if not the one the config names.
    #[arg(long)]
    socket: Option<PathBuf>,
}

impl Running {
    fn socket(self) -> PathBuf {
        self.socket.unwrap_or_else(|| idgate::commands::status::control_socket(&self.config))
    }
}

#[derive(Subcommand)]
enum Command {
    /// Write the man pages (idgate.1 and one per subcommand) and bash, zsh and fish
    /// completions under DIR: what the packages ship.
    #[command(hide = true)]
    GenerateDocs {
        /// Where to write them.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Run the proxy (both directions) with this host's config. This process stays the
    /// service's main process and runs the proxy as its child, also across upgrades.
    Run {
        /// The config file.
        #[arg(short, long, default_value = "/etc/idgate/idgate.toml")]
        config: PathBuf,
        /// The proxy itself, started by the main process.
        #[arg(long, hide = true)]
        worker: bool,
        /// Started at an upgrade: bind beside the serving proxy, then have it hand over.
        #[arg(long, hide = true, requires = "worker")]
        takeover: bool,
        /// The main process after an upgrade's exec: the proxy that serves.
        #[arg(long, hide = true, conflicts_with = "worker")]
        upgrade_from: Option<u32>,
        /// The main process after an upgrade's exec: older proxies still draining.
        #[arg(long, hide = true, requires = "upgrade_from")]
        draining: Vec<u32>,
    },
    /// Validate a config file as `run` would before binding sockets (CA, trust bundles, secret
    /// files and variables, ...): every problem with its file:line:col; exit 1 if any.
    Check {
        /// The config file.
        #[arg(short, long, default_value = "/etc/idgate/idgate.toml")]
        config: PathBuf,
    },
    /// Install the nftables table (if none is in place) so that intercepted flows are refused
    /// until idgate runs; run at boot before the network comes up. Falls back to the table
    /// idgate last installed when the config is broken.
    Guard {
        /// The config file.
        #[arg(short, long, default_value = "/etc/idgate/idgate.toml")]
        config: PathBuf,
    },
    /// Remove the nftables table: intercepted destinations are then reached directly, in
    /// plaintext. For package removal or taking idgate off a host (stop idgate first).
    Uninstall {
        /// The config file.
        #[arg(short, long, default_value = "/etc/idgate/idgate.toml")]
        config: PathBuf,
    },
    /// Show what the running idgate reports: identity backend, SVIDs, pools, recent decisions
    /// and refused connections (from its control socket; root only).
    Status {
        #[command(flatten)]
        to: Running,
        /// The whole status document as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Apply the config file again without dropping flows: policy, workload rules, outbound
    /// destinations and the table, HTTP rules, the deny list. Open flows the new policy denies
    /// are closed. A file with errors changes nothing (exit 1, its errors printed).
    Reload {
        #[command(flatten)]
        to: Running,
    },
    /// Upgrade without resetting flows: the running idgate starts the binary at its path (the
    /// new one after a package upgrade), which binds beside it and takes over new flows; the
    /// old process serves its open flows until they end. The table stays throughout.
    Upgrade {
        #[command(flatten)]
        to: Running,
    },
    /// Revoke SPIFFE IDs (exact, or prefixes ending in /*) or certificate serials (hex): they
    /// are added to the deny-list file ([revocation] file) and the running idgate closes their
    /// open flows and pooled connections and refuses new ones at once. A peer host's ID
    /// (spiffe://TD/idgate/host/NAME) or the serial of its CA cuts that host off.
    Revoke {
        #[command(flatten)]
        to: Running,
        #[arg(required = true, value_name = "ID_OR_SERIAL")]
        entries: Vec<String>,
    },
    /// List the open flows: process (pid, exe, uid), SPIFFE ID, destination, peer, bytes, age.
    Flows {
        #[command(flatten)]
        to: Running,
        /// The list as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Fleet trust: an offline root, and a CA per host under it.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Same as `idgate ca init`.
    CaInit {
        /// The directory to create the root in (created 0700 if absent).
        #[arg(long)]
        dir: PathBuf,
        /// The fleet's trust domain: SPIFFE IDs are spiffe://TRUST_DOMAIN/...
        #[arg(long)]
        trust_domain: String,
    },
}

#[derive(Subcommand)]
enum CaCommand {
    /// Create the fleet's root CA in DIR (ca.pem, and ca-key.pem with mode 0600: keep it
    /// offline). Its ca.pem is the fleet's trust bundle. It may also serve hosts directly as a
    /// CA they all share.
    Init {
        /// The directory to create the root in (created 0700 if absent).
        #[arg(long)]
        dir: PathBuf,
        /// The fleet's trust domain: SPIFFE IDs are spiffe://TRUST_DOMAIN/...
        #[arg(long)]
        trust_domain: String,
    },
    /// Issue a CA for one host, signed by the root in DIR, that may name only the host's
    /// addresses in its SVIDs (IP name constraints) and issue only its host's ID and the
    /// granted workload IDs: OUT/ca.pem and OUT/ca-key.pem for the host's [ca] section
    /// (source = "files"), with the root's ca.pem as its trust_bundle.
    Issue {
        /// The root's directory (`ca init --dir`).
        #[arg(long)]
        dir: PathBuf,
        /// The host's name (web-1, say), as the CA's subject names it: its CA may issue its
        /// idgate ID, spiffe://<td>/idgate/host/<HOST> (a host's default when its `hostname` is HOST).
        #[arg(long)]
        host: String,
        /// An address (or CIDR) of the host; repeat for each.
        #[arg(long = "address", required = true, value_parser = address_or_net)]
        addresses: Vec<ipnet::IpNet>,
        /// A workload SPIFFE ID the host may issue, exact or a prefix ending in /*
        /// (spiffe://<td>/app/*); repeat for each. Peers refuse any other from this host.
        #[arg(long = "grant", value_name = "SPIFFE_ID")]
        grants: Vec<String>,
        /// How long the host CA is valid; its SVIDs never outlive it.
        #[arg(long, default_value_t = 90)]
        days: u32,
        /// Where to write the host's ca.pem and ca-key.pem, and jwt-key.pem for its
        /// [http] jwt_key (created 0700 if absent).
        #[arg(long)]
        out: PathBuf,
    },
    /// Publish the fleet's JWT issuer: OUT/jwks.json (every host's JWT key that `ca issue`
    /// recorded in DIR) and OUT/.well-known/openid-configuration, to serve at ISSUER, the
    /// https:// URL each host's [http] jwt_issuer names.
    Jwks {
        /// The root's directory (`ca init --dir`).
        #[arg(long)]
        dir: PathBuf,
        /// The issuer URL (https://...), where OUT's files are served.
        #[arg(long)]
        issuer: String,
        /// Only the keys of hosts granted this workload SPIFFE ID (for an authorization
        /// server that registers that workload as a client).
        #[arg(long = "for", value_name = "SPIFFE_ID")]
        for_id: Option<String>,
        /// The directory to write to.
        #[arg(long)]
        out: PathBuf,
    },
}

/// glibc's defaults hand every 256 KiB copy buffer and 1 MiB frame its own mmap, and trim freed
/// heap tops at once: a bulk flow then page-faults its buffers in again on every read (9% of a
/// host's CPU in `benches/e2e/profile.py idgate bulk`). Serve those sizes from the heap and keep
/// a little free memory at the top instead. Fixed values also end glibc's dynamic threshold.
/// `10.0.0.7` (that address alone) or `10.0.0.0/24`.
fn address_or_net(s: &str) -> Result<ipnet::IpNet, String> {
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("`{s}` is neither an IP address nor a CIDR"))
}

/// Man pages under `dir/man/man1`, completions under `dir/completions`.
fn generate_docs(dir: &std::path::Path) -> anyhow::Result<()> {
    use clap::CommandFactory;
    let man = dir.join("man/man1");
    let completions = dir.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    let cmd = Cli::command();
    clap_mangen::generate_to(cmd.clone(), &man)?;
    for shell in [clap_complete::Shell::Bash, clap_complete::Shell::Zsh, clap_complete::Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd.clone(), "idgate", &completions)?;
    }
    println!("{}: man pages and completions", dir.display());
    Ok(())
}

fn tune_malloc() {
    // SAFETY: mallopt only sets allocator parameters; called before any thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 2 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 4 << 20);
    }
}

/// Every flow holds two or three sockets: take the whole open-file allowance the service
/// manager (or shell) grants, not just its soft part.
fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    // None is unlimited.
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    if current.is_some() && current != maximum {
        let _ = setrlimit(Resource::Nofile, Rlimit { current: maximum, maximum });
    }
}

/// Logs to stderr (journald under systemd: then each line carries its priority and no
/// timestamp, see `idgate::observe::journal`). Trail records are printed unsanitized: they are escaped
/// JSON already (see `idgate::observe::trail::TARGET`).
fn init_logging() {
    use tracing_subscriber::{filter::filter_fn, filter::LevelFilter, fmt, layer::Layered, layer::SubscriberExt, util::SubscriberInitExt};
    use tracing_subscriber::{EnvFilter, Layer, Registry};
    type Base = Layered<EnvFilter, Registry>;
    let env = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // Without a hint a per-layer filter makes the whole subscriber "maybe any level", and then
    // every disabled debug and trace call site (h2 has several per frame) is looked up instead
    // of being turned away by one comparison.
    let most = env.max_level_hint().unwrap_or(LevelFilter::TRACE);
    let journal = idgate::observe::journal::stderr_is_journal();
    let ansi = !journal && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let is_trail = |m: &tracing::Metadata<'_>| m.target() == idgate::observe::trail::TARGET;
    let lines = |sanitize: bool| -> Box<dyn Layer<Base> + Send + Sync> {
        let layer = fmt::layer().with_writer(std::io::stderr).with_ansi(ansi).with_ansi_sanitization(sanitize);
        if journal {
            layer.without_time().map_event_format(idgate::observe::journal::WithPriority).boxed()
        } else {
            layer.boxed()
        }
    };
    let others = lines(true).with_filter(filter_fn(move |m| !is_trail(m)).with_max_level_hint(most));
    let trail = lines(false).with_filter(filter_fn(is_trail).with_max_level_hint(most));
    tracing_subscriber::registry().with(env).with(vec![others.boxed(), trail.boxed()]).init();
}

fn main() -> ExitCode {
    tune_malloc();
    raise_fd_limit();
    let cli = Cli::parse();
    // Before any thread: a proxy adopts the listeners passed to the main process.
    if matches!(cli.command, Command::Run { worker: true, .. }) {
        idgate::control::main_process::adopt_passed_descriptors();
    }
    init_logging();
    let result = match cli.command {
        Command::Check { config } => return check(&config),
        Command::Status { to, json } => idgate::commands::status::status(&to.socket(), json),
        Command::Flows { to, json } => idgate::commands::status::flows(&to.socket(), json),
        Command::Reload { to } => {
            if let Err(e) = idgate::commands::reload::reload(&to.socket()) {
                eprintln!("idgate: {e:#}");
                return ExitCode::from(1);
            }
            Ok(())
        }
        Command::Upgrade { to } => idgate::commands::reload::upgrade(&to.socket()),
        Command::Revoke { to, entries } => match idgate::config::load(&to.config) {
            Err(e) => Err(anyhow::anyhow!("{e}")),
            Ok(c) => {
                let socket = to.socket.unwrap_or_else(|| c.control_socket());
                let file = c.revocation.file.clone().expect("set by config::parse");
                idgate::commands::reload::revoke(&file, &socket, &entries)
            }
        },
        Command::GenerateDocs { dir } => generate_docs(&dir),
        Command::Guard { config } => idgate::commands::guard::guard(&config),
        Command::Uninstall { config } => idgate::commands::guard::uninstall(&config),
        Command::CaInit { dir, trust_domain } | Command::Ca { command: CaCommand::Init { dir, trust_domain } } => {
            idgate::credential::init_fleet_root(&dir, &trust_domain).map(|p| println!("{}", p.display()))
        }
        Command::Ca { command: CaCommand::Issue { dir, host, addresses, grants, days, out } } => {
            let for_host = idgate::credential::fleet::HostCa { host: &host, addresses: &addresses, grants: &grants, days };
            idgate::credential::fleet::issue_host_ca(&dir, &for_host, &out).map(|i| {
                println!("{}\n{}\n{}", i.cert.display(), i.key.display(), i.jwt_key.display());
            })
        }
        Command::Ca { command: CaCommand::Jwks { dir, issuer, for_id, out } } => (|| {
            let for_id = for_id.map(|s| idgate::spiffe::SpiffeId::parse(&s).map_err(|e| anyhow::anyhow!("--for: {e}"))).transpose()?;
            let n = idgate::credential::fleet_jwks::publish(&dir, &issuer, &out, for_id.as_ref())?;
            println!("{} keys: {}\n{}", n, out.join("jwks.json").display(), out.join(".well-known/openid-configuration").display());
            Ok(())
        })(),
        Command::Run { config, worker: false, upgrade_from, draining, .. } => return supervise(&config, upgrade_from, draining),
        Command::Run { config, worker: true, takeover, .. } => serve(&config, takeover),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("idgate: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// `idgate check`: the config file's problems, each with its line, or "ok".
fn check(config: &std::path::Path) -> ExitCode {
    match idgate::control::preflight::load_checked(config) {
        Ok(_) => {
            println!("{}: ok", config.display());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{}: {} problem(s)", config.display(), errors.0.len());
            ExitCode::from(1)
        }
    }
}

/// `idgate run`: the main process, which starts the proxy and supervises it (and, after an
/// upgrade's exec, the serving and draining ones it inherited).
fn supervise(config: &std::path::Path, upgrade_from: Option<u32>, draining: Vec<u32>) -> ExitCode {
    let resume = upgrade_from.map(|current| idgate::control::main_process::Resume { current, draining });
    match idgate::control::main_process::run(config, resume) {
        Ok(status) => ExitCode::from(status),
        Err(e) => {
            eprintln!("idgate: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// `idgate run --worker`: the proxy itself. This thread runs the control plane; the data path
/// gets worker threads of its own.
fn serve(path: &std::path::Path, takeover: bool) -> anyhow::Result<()> {
    let config = idgate::control::preflight::load_checked(path)?;
    let workers = idgate::runtime::workers::count(config.listen.workers);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(idgate::app::run(workers, path, config, takeover))
}
