//! Secret values for header templates: files (re-read when they change) and the service's
//! environment. A `Secret` never prints its content: Debug and Display say `[redacted]`.
use crate::sys::private_file::{self, Version};
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::ffi::OsString;
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

#[derive(Default)]
pub struct FileSecrets {
    /// Keyed by the path's bytes: a `Path` hashes component by component, and this lookup is
    /// made for every request that carries a file secret.
    cache: Mutex<HashMap<OsString, (Version, Secret)>>,
}

impl FileSecrets {
    /// The file's current content. One `lstat` per call; the file is read (and checked: see
    /// `private_file`) only when its name stands for another file or a changed one.
    pub fn get(&self, path: &Path) -> Result<Secret, SecretError> {
        let err = |why: String| SecretError::File { path: path.into(), why };
        let now = Version::now(path).map_err(|e| err(e.to_string()))?;
        if let Some((v, secret)) = self.cache.lock().get(path.as_os_str()) {
            if *v == now {
                return Ok(secret.clone());
            }
        }
        let file = private_file::read(path).map_err(|e| err(e.to_string()))?;
        let version = file.version;
        let mut content = file.content.to_vec();
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

    fn private(path: &Path, content: &str) {
        std::fs::write(path, content).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// The file read must be the file checked, in a place only root (or idgate's user) can
    /// change: no symbolic link as its name, no directory on its way that another user owns
    /// or that group or others may write (unless sticky, like /tmp).
    #[test]
    fn links_and_directories_other_users_can_change_are_refused() {
        let top = tempfile::tempdir().unwrap();
        let root = top.path();
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let secrets = FileSecrets::default();
        let refused = |path: &Path, why: &str| {
            let e = secrets.get(path).expect_err(&path.display().to_string()).to_string();
            assert!(e.contains(&path.display().to_string()) && e.contains(why), "{}: {e}", path.display());
        };
        std::fs::create_dir(root.join("safe")).unwrap();
        private(&root.join("safe/token"), "safe-value");
        assert_eq!(secrets.get(&root.join("safe/token")).unwrap().expose(), b"safe-value");

        // A symbolic link as the file's own name: the link, not its target, is what was named.
        std::os::unix::fs::symlink(root.join("safe/token"), root.join("safe/link")).unwrap();
        refused(&root.join("safe/link"), "symbolic link");

        // Directories others may change: replace the file, or the directory under it.
        for (dir, mode, why) in [("world", 0o777, "writable by others"), ("group", 0o770, "writable by its group")] {
            let d = root.join(dir);
            std::fs::create_dir(&d).unwrap();
            private(&d.join("token"), "v");
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode)).unwrap();
            refused(&d.join("token"), why);
            refused(&d.join("token"), &d.display().to_string());
        }
        // Sticky (like /tmp): others cannot rename or remove root's file there.
        let sticky = root.join("sticky");
        std::fs::create_dir(&sticky).unwrap();
        std::fs::set_permissions(&sticky, std::fs::Permissions::from_mode(0o1777)).unwrap();
        private(&sticky.join("token"), "sticky-value");
        assert_eq!(secrets.get(&sticky.join("token")).unwrap().expose(), b"sticky-value");

        // A directory another user owns, on the way as written or as resolved.
        let theirs = root.join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        private(&theirs.join("token"), "v");
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        refused(&theirs.join("token"), "owned by uid 65534");
        std::os::unix::fs::symlink(root.join("safe"), theirs.join("via")).unwrap();
        refused(&theirs.join("via/token"), "owned by uid 65534");
        std::os::unix::fs::symlink(&theirs, root.join("safe/into-theirs")).unwrap();
        refused(&root.join("safe/into-theirs/token"), "owned by uid 65534");

        // Not a regular file: refused without blocking on it.
        let fifo = root.join("safe/fifo");
        rustix::fs::mknodat(rustix::fs::CWD, &fifo, rustix::fs::FileType::Fifo, rustix::fs::Mode::from_raw_mode(0o600), 0).unwrap();
        refused(&fifo, "not a regular file");
    }
}
