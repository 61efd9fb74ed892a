//! What `run` checks before it binds a socket, done without running anything: CA files
//! (readable, key mode, key matching the certificate, able to mint an SVID that passes the
//! mTLS self-test), trust bundles, TLS origination bundles, secret sources (files' mode and
//! owner, environment variables), the paths `exe` selectors name, an explicit kmod backend's
//! device, and the files `run` writes (the state directory, the trail file), tried as `run`
//! opens them. `idgate check` and
//! `idgate run` both call it, so the unit's `ExecStartPre` check catches what would make the
//! service fail to start. Every problem is reported, each at the place in the file it names.
use crate::config::locate::{Index, Key, Locator, Step};
use crate::config::position_of;
use crate::config::{CaSource, Config, ConfigError, IdentityBackendChoice, Part};
use std::path::{Path, PathBuf};

struct Problems<'a> {
    file: &'a Path,
    text: &'a str,
    entries: Locator<'a>,
    found: Vec<ConfigError>,
}

impl Problems<'_> {
    /// A problem with the entry at `path` (or, left at its default, what would hold it).
    fn at(&mut self, path: &[Step<'_>], message: String) {
        let offset = self.entries.offset(path);
        self.found.push(ConfigError { file: self.file.into(), position: offset.map(|o| position_of(self.text, o)), message });
    }

    /// A problem at byte `offset` of the file (a value's span).
    fn at_offset(&mut self, offset: usize, message: String) {
        self.found.push(ConfigError { file: self.file.into(), position: Some(position_of(self.text, offset)), message });
    }
}

/// The config at `path`, with every check `run` makes before it binds a socket: what `idgate
/// check`, `idgate run` and a reload read.
pub fn load_checked(path: &Path) -> Result<Config, crate::config::ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError { file: path.into(), position: None, message: format!("cannot read: {e}") })?;
    let config = crate::config::parse(path, &text)?;
    let problems = preflight(path, &text, &config);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(crate::config::ConfigErrors(problems))
    }
}

pub fn preflight(file: &Path, text: &str, config: &Config) -> Vec<ConfigError> {
    let mut p = Problems { file, text, entries: Locator::new(text), found: Vec::new() };
    ca(&mut p, config);
    secrets(&mut p, config);
    exe_paths(&mut p, config);
    written(&mut p, config);
    for (i, route) in config.outbound.iter().enumerate() {
        if let Some(tls) = &route.tls {
            if let Err(e) = crate::http::Origin::new(tls) {
                p.at(&[Key("outbound"), Index(i), Key("tls"), Key("ca_bundle")], format!("outbound[{i}].tls: {e:#}"));
            }
        }
    }
    for (i, source) in config.credentials.iter().enumerate() {
        if let Err(e) = crate::http::exchange::Source::new(source.clone()) {
            p.at(&[Key("credential"), Index(i)], format!("credential[{i}]: {e:#}"));
        }
    }
    if let Some(path) = &config.http.jwt_key {
        if let Err(e) = crate::credential::jwt_key::JwtKey::load(path) {
            p.at(&[Key("http"), Key("jwt_key")], format!("http.jwt_key: {e}"));
        }
    }
    if let Err(e) = config.revocation.entries() {
        p.at(&[Key("revocation")], format!("revocation: {e}"));
    }
    if config.identity_backend == IdentityBackendChoice::Kmod && !crate::identity::kmod_device().exists() {
        let device = crate::identity::kmod_device();
        p.at(&[Key("identity_backend")], format!("identity_backend = \"kmod\" but {} does not exist (is idgate.ko loaded?)", device.display()));
    }
    p.found
}

/// The CA's files, each checked on its own so that all their problems show at once, then
/// loaded, used to mint this host's SVID, and tried in an mTLS handshake with itself.
fn ca(p: &mut Problems<'_>, config: &Config) {
    let (cert, key, at): (PathBuf, PathBuf, [&[Step<'static>]; 2]) = match config.ca.source {
        CaSource::Files => {
            let (Some(cert), Some(key)) = (config.ca.cert.clone(), config.ca.key.clone()) else { return }; // reported by load
            (cert, key, [&[Key("ca"), Key("cert")], &[Key("ca"), Key("key")]])
        }
        CaSource::Embedded => {
            let cert = config.state_dir.join(crate::credential::CA_CERT_FILE);
            let key = config.state_dir.join(crate::credential::CA_KEY_FILE);
            if !cert.exists() && !key.exists() {
                return; // created at the first start
            }
            (cert, key, [&[Key("state_dir")], &[Key("state_dir")]])
        }
    };
    let mut usable = true;
    if let Err(e) = std::fs::read_to_string(&cert) {
        p.at(at[0], format!("ca.cert: cannot read {}: {e}", cert.display()));
        usable = false;
    }
    // The same checks `run` makes (see `private_file`): owner, mode, the directories on its way.
    if let Err(why) = crate::sys::private_file::read(&key) {
        p.at(at[1], format!("ca.key: {}: {why}", key.display()));
        usable = false;
    }
    for (i, bundle) in config.ca.trust_bundle.iter().enumerate() {
        if let Err(e) = crate::credential::authority::trust_anchors(bundle) {
            p.at(&[Key("ca"), Key("trust_bundle"), Index(i)], format!("ca.trust_bundle: {e:#}"));
            usable = false;
        }
    }
    if !usable {
        return;
    }
    if let Err(e) = crate::credential::CertificateAuthority::load(&cert, &key) {
        let key_named = e.to_string().starts_with(&key.display().to_string());
        let (place, field) = if key_named { (at[1], "ca.key") } else { (at[0], "ca.cert") };
        p.at(place, format!("{field}: {e:#}"));
        return;
    }
    let host = crate::credential::authority::hostname(config);
    // The deny list applies to the self-test as to any peer (reported on its own if it is bad).
    let revoked = crate::credential::authority::deny_list(config).unwrap_or_default();
    match crate::credential::authority::load_credentials(config, &host, revoked) {
        Ok(credentials) => {
            if let Err(e) = credentials.self_test() {
                p.at(&[Key("ca")], format!("the CA and trust bundle fail an mTLS handshake of this host with itself: {e:#}"));
            }
            if let Some(grant) = credentials.grant() {
                workloads_within(p, config, &grant);
            }
        }
        Err(e) => p.at(&[Key("ca")], format!("{e:#}")),
    }
}

/// Every `[[workload]]` rule's SPIFFE ID must be one the host's CA may issue: peers would
/// refuse the SVID, and every flow of the rule would fail.
fn workloads_within(p: &mut Problems<'_>, config: &Config, grant: &crate::credential::Grant) {
    for rule in &config.workloads {
        let id = &rule.spiffe_id.get_ref().0;
        if !grant.permits(id) {
            p.found.push(ConfigError {
                file: p.file.into(),
                position: Some(position_of(p.text, rule.spiffe_id.span().start)),
                message: format!(
                    "workload.spiffe_id: this host's CA may not issue {id} (it was granted: {grant}); re-issue it with `idgate ca issue --grant`"
                ),
            });
        }
    }
}

/// Every `${file:...}` must be a 0600 root-owned file, every `${env:...}` set.
fn secrets(p: &mut Problems<'_>, config: &Config) {
    let files = crate::http::secrets::FileSecrets::default();
    for (i, rule) in config.http_rules.iter().enumerate() {
        let actions = rule.set.iter().map(|e| ("set", e)).chain(rule.append.iter().map(|e| ("append", e)));
        for (action, (name, template)) in actions {
            let place = [Key("http_rule"), Index(i), Key(action), Key(name.0.as_str())];
            for part in &template.parts {
                match part {
                    Part::File(path) => {
                        if let Err(e) = files.get(path) {
                            p.at(&place, format!("http_rule[{i}] header `{}`: {e}", name.0));
                        }
                    }
                    Part::Env(var) if std::env::var_os(var).is_none() => {
                        p.at(&place, format!("http_rule[{i}] header `{}`: environment variable {var} is not set", name.0));
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Where an `exe` pattern names a path (all of it, or the directories before its first
/// wildcard), that path must exist in idgate's mount namespace, as it is, without a symbolic
/// link on the way: an `exe` selector matches only the file at the path there, and a process's
/// exe is the path of the file it runs, links resolved. (The unit's ProtectHome= and
/// PrivateTmp= hide /home, /root, /run/user and /tmp from idgate: its check runs in the same
/// sandbox.)
fn exe_paths(p: &mut Problems<'_>, config: &Config) {
    for (i, rule) in config.workloads.iter().enumerate() {
        let Some(exe) = &rule.exe else { continue };
        let at = exe.span().start;
        let pattern = exe.get_ref().pattern.as_str();
        let (path, whole) = match pattern.find(['*', '?', '[', '{', '\\']) {
            None => (pattern, true),
            Some(wild) => (pattern[..wild].rfind('/').map(|slash| &pattern[..slash.max(1)]).unwrap_or(""), false),
        };
        if path.is_empty() {
            continue; // `**/name`: any directory
        }
        let what = if whole { "the file" } else { "the directory" };
        if !path.starts_with('/') {
            p.at_offset(
                at,
                format!("workload[{i}].exe `{pattern}` is not an absolute path (a process's exe is one; `**/{pattern}` matches it in any directory)"),
            );
            continue;
        }
        match std::fs::canonicalize(path) {
            // Not an error: a workload's package removed must not keep idgate (and with it
            // every intercepted flow) from starting; the rule simply matches nothing.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => tracing::warn!(
                "{}:{}: workload[{i}].exe: {what} {path} does not exist (in idgate's mount namespace: the unit hides /home, /root, /run/user and /tmp), so no process matches this rule",
                p.file.display(),
                position_of(p.text, at).0
            ),
            Err(e) => p.at_offset(at, format!("workload[{i}].exe: {what} {path}: {e}")),
            Ok(real) if real != std::path::Path::new(path) => p.at_offset(
                at,
                format!("workload[{i}].exe: {what} {path} is reached through a symbolic link; a process running it shows {}: write that", real.display()),
            ),
            Ok(_) if whole && !std::path::Path::new(path).is_file() => p.at_offset(at, format!("workload[{i}].exe: {path} is not a file")),
            Ok(_) => {}
        }
    }
}

/// Why a file cannot be written where `path` is, in terms an operator can act on.
fn unwritable(path: &Path, e: &std::io::Error) -> String {
    let dir = path.parent().unwrap_or(Path::new("/"));
    match e.raw_os_error() {
        Some(libc::ENOENT) => format!("{}: directory {} does not exist", path.display(), dir.display()),
        Some(libc::EROFS) => format!(
            "{}: read-only file system here (the packaged unit can write only under /var/lib/idgate and /var/log/idgate: ProtectSystem=strict)",
            path.display()
        ),
        _ => format!("{}: {e}", path.display()),
    }
}

/// What `run` writes, tried as `run` opens it (so that under the unit's sandbox `check` fails
/// where `run` would): the state directory (CA, table snapshot, control socket) and the trail
/// file (opened for appending, created 0600). A file this check creates it removes again.
fn written(p: &mut Problems<'_>, config: &Config) {
    use std::os::unix::fs::OpenOptionsExt;
    let probe = config.state_dir.join(format!(".idgate-check-{}", std::process::id()));
    let state =
        std::fs::create_dir_all(&config.state_dir).and_then(|()| std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&probe));
    match state {
        Ok(_) => drop(std::fs::remove_file(&probe)),
        Err(e) => p.at(&[Key("state_dir")], format!("state_dir: {}", unwritable(&probe, &e))),
    }
    if let Some(file) = &config.trail.file {
        let existed = file.exists();
        let opened = std::fs::OpenOptions::new().append(true).create(!existed).mode(0o600).open(file);
        match opened {
            Ok(_) if !existed => drop(std::fs::remove_file(file)),
            Ok(_) => {}
            Err(e) => p.at(&[Key("trail"), Key("file")], format!("trail file: {}", unwritable(file, &e))),
        }
    }
}
