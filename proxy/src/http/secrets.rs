//! Secret values for header templates: files (re-read when they change) and the service's
//! environment. A `Secret` never prints its content: Debug and Display say `[redacted]`.
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Secret bytes that cannot end up in a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Bytes);

impl Secret {
    pub(crate) fn from_bytes(b: Bytes) -> Self {
        Secret(b)
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret file {path}: {why}")]
    File { path: PathBuf, why: String },
    #[error("environment variable {0} is not set (or not UTF-8) in idgate's environment")]
    Env(String),
}

/// What identifies one version of a file: a rename, a rewrite or a chmod changes it.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Version {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
}

#[derive(Default)]
pub struct FileSecrets {
    /// Keyed by the path's bytes: a `Path` hashes component by component, and this lookup is
    /// made for every request that carries a file secret.
    cache: Mutex<HashMap<OsString, (Version, Secret)>>,
}

impl FileSecrets {
    /// The file's current content. One stat per call; the file is read only when it changed.
    pub fn get(&self, path: &Path) -> Result<Secret, SecretError> {
        let err = |why: String| SecretError::File { path: path.into(), why };
        let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
        let version = Version {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
        };
        if let Some((v, secret)) = self.cache.lock().get(path.as_os_str()) {
            if *v == version {
                return Ok(secret.clone());
            }
        }
        check_private(&meta).map_err(err)?;
        let mut content = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        while content.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            content.pop();
        }
        if content.is_empty() {
            return Err(err("is empty".into()));
        }
        if content.iter().any(|b| !(*b == b'\t' || (b' '..=b'~').contains(b))) {
            return Err(err("contains bytes that cannot go into a header (only visible ASCII, space, tab)".into()));
        }
        let secret = Secret(Bytes::from(content));
        self.cache.lock().insert(path.as_os_str().to_owned(), (version, secret.clone()));
        Ok(secret)
    }
}

/// Secrets must be readable by their owner only, and owned by root or by idgate's user.
fn check_private(meta: &std::fs::Metadata) -> Result<(), String> {
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!("has mode {mode:04o}; secret files must be 0600 or stricter"));
    }
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != 0 && meta.uid() != me {
        return Err(format!("is owned by uid {}; secret files must belong to root or to idgate's user", meta.uid()));
    }
    Ok(())
}

pub fn env_secret(name: &str) -> Result<Secret, SecretError> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() && v.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)) => Ok(Secret(Bytes::from(v))),
        _ => Err(SecretError::Env(name.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn file_changes_are_seen_and_loose_modes_refused() {
        let dir = std::env::temp_dir().join(format!("idgate-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "one\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let secrets = FileSecrets::default();
        assert_eq!(secrets.get(&path).unwrap().expose(), b"one");
        std::fs::write(&path, "two-longer\n").unwrap();
        assert_eq!(secrets.get(&path).unwrap().expose(), b"two-longer");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = secrets.get(&path).unwrap_err().to_string();
        assert!(e.contains("mode 0644") && !e.contains("two-longer"), "{e}");
        assert_eq!(format!("{:?}", Secret(Bytes::from_static(b"x"))), "[redacted]");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
