//! Which file a process runs, as idgate sees files: whether it is the file at a path in
//! idgate's own mount namespace (`exe` selectors), and what its content hashes to (`sha256`
//! selectors). The path a process's `exe` link shows is the one in the process's own mount
//! namespace, which an unprivileged user can build herself (a user namespace and a bind mount
//! over the path): the path alone names nothing.
use super::ExeId;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::sync::LazyLock;

/// Whether the file at `path` in idgate's mount namespace is the one `id` names. The path is
/// looked up afresh each time (a package upgrade renames a new file over it), and its last
/// component must be the file itself: a process's exe is a file, never a symbolic link.
pub fn is_at_path(id: ExeId, path: &str) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file() && m.dev() == id.dev && m.ino() == id.ino)
}

/// Executables larger than this are not hashed, so they match no `sha256` selector: whoever
/// can make idgate hash her files must not make it read without end.
pub const MAX_HASHED_SIZE: u64 = 256 << 20;
/// Digests kept (the cache starts over when full: hashing again is what it costs).
const KEPT: usize = 1024;

/// What a change of a file's content changes. The owner of a file can set its mtime back
/// (utimensat), but not its ctime: a file rewritten with its old size and mtime is hashed again.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Version {
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Version {
    fn of(m: &Metadata) -> Self {
        Version { size: m.size(), mtime: (m.mtime(), m.mtime_nsec()), ctime: (m.ctime(), m.ctime_nsec()) }
    }
}

/// The sha256 of executables, kept by file identity and version. `None` is kept too: a file
/// that cannot be hashed (too large, on FUSE) is not read again until it changes.
pub struct ExeHashes {
    limit: u64,
    kept: Mutex<HashMap<ExeId, Kept>>,
}

/// A file's digest (or that it has none) as of one version of it.
struct Kept {
    version: Version,
    digest: Option<[u8; 32]>,
}

/// The one the selectors use: it outlives reloads, which do not change files.
pub static EXE_HASHES: LazyLock<ExeHashes> = LazyLock::new(|| ExeHashes::new(MAX_HASHED_SIZE));

impl ExeHashes {
    pub fn new(limit: u64) -> Self {
        ExeHashes { limit, kept: Mutex::new(HashMap::new()) }
    }

    /// The sha256 of the file process `pid` runs, if it is the file `id` names. Read through
    /// `/proc/<pid>/exe`, so it is the file the process runs whatever is at its path now (or
    /// in its mount namespace); `id` guards against the pid having been reused since.
    pub fn sha256(&self, pid: u32, id: ExeId) -> Option<[u8; 32]> {
        let file = File::open(format!("/proc/{pid}/exe")).ok()?;
        let m = file.metadata().ok()?;
        if m.dev() != id.dev || m.ino() != id.ino || !m.file_type().is_file() {
            return None;
        }
        let version = Version::of(&m);
        if let Some(kept) = self.kept.lock().get(&id) {
            if kept.version == version {
                return kept.digest;
            }
        }
        // A file refused is kept as such; one that failed to read is tried again next time.
        let digest = self.hash(pid, file, &m).ok()?;
        let mut kept = self.kept.lock();
        if kept.len() >= KEPT {
            kept.clear();
        }
        kept.insert(id, Kept { version, digest });
        digest
    }

    /// The digest, `None` for a file that is refused, an error for one that could not be read.
    fn hash(&self, pid: u32, mut file: File, m: &Metadata) -> std::io::Result<Option<[u8; 32]>> {
        if m.size() > self.limit {
            tracing::warn!(pid, size = m.size(), limit = self.limit, "executable too large to hash: no sha256 selector matches it");
            return Ok(None);
        }
        if on_fuse(&file)? {
            // Its content comes from a process, maybe the user's own, which may answer this
            // read with other bytes than the pages the process runs.
            tracing::warn!(pid, "executable on a FUSE file system: no sha256 selector matches it");
            return Ok(None);
        }
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut buf = vec![0u8; 256 << 10];
        let mut read = 0u64;
        while read <= m.size() {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    ctx.update(&buf[..n]);
                    read += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // A file that changed size while it was read gives no digest of any one version.
        if read != m.size() {
            return Err(std::io::Error::other("the file changed size while it was read"));
        }
        Ok(Some(ctx.finish().as_ref().try_into().expect("sha256 is 32 bytes")))
    }
}

/// Whether `file` is on a FUSE file system.
fn on_fuse(file: &File) -> std::io::Result<bool> {
    Ok(rustix::fs::fstatfs(file)?.f_type == libc::FUSE_SUPER_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};
    use std::path::Path;
    use std::process::{Child, Command};

    fn id_of(path: &Path) -> ExeId {
        let m = std::fs::metadata(path).unwrap();
        ExeId { dev: m.dev(), ino: m.ino() }
    }

    /// A copy of `sleep` at `path`, with `extra` bytes after the program (it still runs).
    fn copy_of_sleep(path: &Path, extra: &[u8]) {
        let mut bytes = std::fs::read("/bin/sleep").unwrap();
        bytes.extend_from_slice(extra);
        std::fs::write(path, &bytes).unwrap();
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }

    /// `path` running (once it has exec'd: until then its exe is the test binary).
    fn run(path: &Path) -> Child {
        let child = Command::new(path).arg("30").spawn().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::fs::read_link(format!("/proc/{}/exe", child.id())).ok().as_deref() != Some(path) {
            assert!(std::time::Instant::now() < deadline, "{} did not start", path.display());
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        child
    }

    fn stop(mut child: Child) {
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn sha256_of(path: &Path) -> [u8; 32] {
        ring::digest::digest(&ring::digest::SHA256, &std::fs::read(path).unwrap()).as_ref().try_into().unwrap()
    }

    #[test]
    fn only_the_file_itself_is_at_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let me = std::env::current_exe().unwrap();
        let id = id_of(&me);
        assert!(is_at_path(id, me.to_str().unwrap()));
        // A copy (same bytes, another file), a link to the file, and nothing are not.
        let copy = dir.path().join("copy");
        std::fs::copy(&me, &copy).unwrap();
        assert!(!is_at_path(id, copy.to_str().unwrap()));
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&me, &link).unwrap();
        assert!(!is_at_path(id, link.to_str().unwrap()), "the last component must be the file, not a link to it");
        assert!(!is_at_path(id, dir.path().join("none").to_str().unwrap()));
    }

    #[test]
    fn the_digest_is_of_the_file_the_process_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prog");
        copy_of_sleep(&path, b"");
        let original = sha256_of(&path);
        let hashes = ExeHashes::new(64 << 20);
        let child = run(&path);
        let id = id_of(&path);
        assert_eq!(hashes.sha256(child.id(), id), Some(original));
        // Another file's identity (the pid taken by a process running something else): nothing.
        assert_eq!(hashes.sha256(child.id(), ExeId { dev: id.dev, ino: id.ino + 1 }), None);
        // The path replaced under the running process: still the file it runs.
        std::fs::write(dir.path().join("other"), b"not a program").unwrap();
        std::fs::rename(dir.path().join("other"), &path).unwrap();
        assert_eq!(hashes.sha256(child.id(), id), Some(original));
        stop(child);
    }

    #[test]
    fn a_file_rewritten_with_its_old_size_and_mtime_is_hashed_again() {
        // Its owner can set the mtime back, but not the ctime: a kept digest must not outlive it.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rewritten");
        copy_of_sleep(&path, b"AAAA");
        let hashes = ExeHashes::new(64 << 20);
        let child = run(&path);
        let id = id_of(&path);
        let first = hashes.sha256(child.id(), id).unwrap();
        stop(child);
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.seek(SeekFrom::End(-4)).unwrap();
        f.write_all(b"BBBB").unwrap();
        f.set_modified(mtime).unwrap();
        drop(f);
        let after = std::fs::metadata(&path).unwrap();
        assert_eq!((after.modified().unwrap(), id_of(&path)), (mtime, id), "the same file, size and mtime");
        let child = run(&path);
        let second = hashes.sha256(child.id(), id).unwrap();
        stop(child);
        assert_ne!(first, second);
        assert_eq!(second, sha256_of(&path));
    }

    #[test]
    fn files_over_the_limit_are_not_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        copy_of_sleep(&path, b"");
        let size = std::fs::metadata(&path).unwrap().len();
        let child = run(&path);
        assert_eq!(ExeHashes::new(size - 1).sha256(child.id(), id_of(&path)), None);
        assert_eq!(ExeHashes::new(size).sha256(child.id(), id_of(&path)), Some(sha256_of(&path)));
        stop(child);
    }
}
