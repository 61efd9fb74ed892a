//! Reading a file that holds a secret or a private key, so that what is read is what was
//! checked, and nobody but root (or idgate's own user) can change which file that is:
//!
//! - the name must be the file itself: a symbolic link as its last component is refused
//!   (`O_NOFOLLOW`), and so is anything but a regular file (a FIFO never blocks the open);
//! - the opened file (`fstat`, not the path) must be owned by root or idgate's user and have no
//!   group or other permission bits;
//! - every directory on the way to it, as written and as resolved (so a symbolic link in a
//!   directory another user controls cannot redirect it), must be owned by root or idgate's
//!   user, and may be writable by its group or by others only with the sticky bit (like /tmp,
//!   where others cannot rename or remove root's file): otherwise another user could put a
//!   different file, or directory, in its place.
use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The most a secret or key file may hold.
const MAX_SIZE: u64 = 1 << 20;

/// What identifies one version of a file: a rename, a rewrite or a chmod changes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Version {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
}

impl Version {
    fn of(meta: &Metadata) -> Version {
        Version {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
        }
    }

    /// The version the name now stands for, without following a link (one `lstat`): equal to
    /// the version `read` returned only while it names the same, unchanged file.
    pub fn now(path: &Path) -> std::io::Result<Version> {
        std::fs::symlink_metadata(path).map(|m| Version::of(&m))
    }
}

pub struct PrivateFile {
    pub content: Zeroizing<Vec<u8>>,
    pub version: Version,
}

/// Why a secret or key file was not read. Each says what is wrong (naming the directory when
/// it is one), without the file's name, which the caller gives.
#[derive(Debug, thiserror::Error)]
pub enum PrivateFileError {
    #[error("cannot read: {0}")]
    Unreadable(#[from] std::io::Error),
    #[error("is a symbolic link: name the file itself")]
    SymbolicLink,
    #[error("is not a regular file")]
    NotRegular,
    #[error("is larger than {MAX_SIZE} bytes")]
    TooLarge,
    #[error("has mode {0:04o}, readable by group or others: chmod 600 it")]
    Readable(u32),
    #[error("is owned by uid {0}: it must belong to root or to idgate's user")]
    Owner(u32),
    #[error("directory {}: {source}", dir.display())]
    DirectoryUnreadable { dir: PathBuf, source: std::io::Error },
    #[error("{0}, owned by uid {uid}: only root or idgate's user may own the directories of a secret", uid = .0.uid)]
    DirectoryOwner(Place),
    #[error("{0}, writable by others without the sticky bit: they could put another file in its place")]
    DirectoryWritableByOthers(Place),
    #[error("{0}, writable by its group without the sticky bit: its members could put another file in its place")]
    DirectoryWritableByGroup(Place),
}

/// A directory on the way to a secret, as an error describes it.
#[derive(Debug)]
pub struct Place {
    dir: PathBuf,
    mode: u32,
    uid: u32,
    gid: u32,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "is in directory {} (mode {:04o}, owner uid {}, group gid {})", self.dir.display(), self.mode, self.uid, self.gid)
    }
}

/// Reads `path` after the checks above.
pub fn read(path: &Path) -> Result<PrivateFile, PrivateFileError> {
    for dir in directories_of(path)? {
        check_directory(&dir)?;
    }
    let mut file = match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path) {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(PrivateFileError::SymbolicLink),
        Err(e) => return Err(e.into()),
    };
    let meta = file.metadata()?;
    check_file(&meta)?;
    if meta.size() > MAX_SIZE {
        return Err(PrivateFileError::TooLarge);
    }
    let mut content = Zeroizing::new(Vec::with_capacity(meta.size() as usize));
    read_all(&mut file, &mut content)?;
    Ok(PrivateFile { content, version: Version::of(&meta) })
}

fn read_all(file: &mut File, into: &mut Vec<u8>) -> Result<(), PrivateFileError> {
    file.take(MAX_SIZE + 1).read_to_end(into)?;
    if into.len() as u64 > MAX_SIZE {
        return Err(PrivateFileError::TooLarge);
    }
    Ok(())
}

/// The directories `path` is reached through: its ancestors as written, then as resolved.
fn directories_of(path: &Path) -> Result<Vec<PathBuf>, PrivateFileError> {
    let written = std::path::absolute(path)?;
    let resolved = std::fs::canonicalize(path)?;
    let mut dirs: Vec<PathBuf> = Vec::new();
    for p in [&written, &resolved] {
        for dir in p.ancestors().skip(1) {
            if !dirs.iter().any(|d| d == dir) {
                dirs.push(dir.to_path_buf());
            }
        }
    }
    Ok(dirs)
}

fn owned_by_us(uid: u32) -> bool {
    uid == 0 || uid == rustix::process::geteuid().as_raw()
}

fn check_directory(dir: &Path) -> Result<(), PrivateFileError> {
    let meta = std::fs::metadata(dir).map_err(|source| PrivateFileError::DirectoryUnreadable { dir: dir.into(), source })?;
    let mode = meta.mode() & 0o7777;
    let sticky = mode & 0o1000 != 0;
    let place = || Place { dir: dir.into(), mode, uid: meta.uid(), gid: meta.gid() };
    if !owned_by_us(meta.uid()) {
        return Err(PrivateFileError::DirectoryOwner(place()));
    }
    if mode & 0o002 != 0 && !sticky {
        return Err(PrivateFileError::DirectoryWritableByOthers(place()));
    }
    if mode & 0o020 != 0 && !sticky {
        return Err(PrivateFileError::DirectoryWritableByGroup(place()));
    }
    Ok(())
}

fn check_file(meta: &Metadata) -> Result<(), PrivateFileError> {
    if !meta.is_file() {
        return Err(PrivateFileError::NotRegular);
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(PrivateFileError::Readable(mode));
    }
    if !owned_by_us(meta.uid()) {
        return Err(PrivateFileError::Owner(meta.uid()));
    }
    Ok(())
}
