//! Raw procfs access for the per-flow lookup: everything relative to an open directory, one
//! read per file, no allocation per fd entry. Going through one `/proc/<pid>` handle also means
//! that a pid which exits and is reused between two reads fails (ESRCH) instead of mixing two
//! processes' attributes.
use rustix::fs::{AtFlags, Mode, OFlags};
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};

fn open_at(dir: impl AsFd, path: &CStr, flags: OFlags) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(dir, path, flags | OFlags::CLOEXEC, Mode::empty())?)
}

/// The whole of an open procfs file, read from offset 0: procfs renders the file afresh for a
/// read at 0, so one handle serves any number of reads. procfs files report size 0, so this
/// reads until a read returns less than it was offered: the per-process files read here (stat,
/// status, cgroup) are rendered in one piece, so a short read is their end, one syscall in all.
pub fn read_whole<'a>(file: &OwnedFd, buf: &'a mut Vec<u8>) -> io::Result<&'a [u8]> {
    buf.clear();
    loop {
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4096);
        }
        let offset = buf.len() as u64;
        let offered = buf.capacity() - buf.len();
        let n = match rustix::io::pread(file, rustix::buffer::spare_capacity(buf), offset) {
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        if n < offered {
            return Ok(buf);
        }
    }
}

/// `readlinkat` into `buf`; the link's bytes (truncated links are reported as errors).
pub fn readlink_at<'a>(dir: impl AsFd, name: &CStr, buf: &'a mut [u8]) -> io::Result<&'a [u8]> {
    let n = rustix::fs::readlinkat_raw(dir, name, &mut *buf)?;
    if n == buf.len() {
        return Err(io::Error::other("link target too long"));
    }
    Ok(&buf[..n])
}

/// An open `/proc/<pid>` directory.
pub struct ProcDir(OwnedFd);

impl ProcDir {
    pub fn open(pid: u32) -> io::Result<Self> {
        let path = std::ffi::CString::new(format!("/proc/{pid}")).expect("no NUL in a number");
        open_at(rustix::fs::CWD, &path, OFlags::PATH | OFlags::DIRECTORY).map(ProcDir)
    }

    /// `name` opened for reading, to be read again and again with `read_whole`.
    pub fn open_file(&self, name: &CStr) -> io::Result<OwnedFd> {
        open_at(&self.0, name, OFlags::RDONLY)
    }

    /// Where fd number `fd` of this process points (`socket:[123]`, a path, ...).
    pub fn fd_target<'a>(&self, fd: u32, buf: &'a mut [u8]) -> io::Result<&'a [u8]> {
        let mut name = [0u8; 14];
        name[..3].copy_from_slice(b"fd/");
        let mut digits = [0u8; 11];
        let d = decimal(fd, &mut digits).to_bytes_with_nul();
        name[3..3 + d.len()].copy_from_slice(d);
        let name = CStr::from_bytes_until_nul(&name).expect("ends in the digits' NUL");
        readlink_at(&self.0, name, buf)
    }

    /// This process's fd table.
    pub fn fd_table(&self) -> io::Result<FdTable> {
        open_at(&self.0, c"fd", OFlags::RDONLY | OFlags::DIRECTORY).map(FdTable)
    }

    pub fn readlink<'a>(&self, name: &CStr, buf: &'a mut [u8]) -> io::Result<&'a [u8]> {
        readlink_at(&self.0, name, buf)
    }

    /// Device and inode of the file the process runs: `exe` followed to the file itself, so
    /// whatever path the process sees it under (another mount namespace, a bind mount) does
    /// not matter. Fails for a process that is gone or has no executable (a kernel thread).
    pub fn exe_id(&self) -> io::Result<super::ExeId> {
        let st = rustix::fs::statat(&self.0, c"exe", AtFlags::empty())?;
        Ok(super::ExeId { dev: st.st_dev, ino: st.st_ino })
    }

    /// The owner of the directory, as the kernel works it out for each stat: a live process's
    /// effective uid and gid (for this directory even when the process is not dumpable, unlike
    /// the files in it), or root's ids for a kernel thread or a process that is gone. So only
    /// an owner other than root proves it is the process's; `None` means "read its status".
    pub fn effective_ids(&self) -> Option<(u32, u32)> {
        let st = rustix::fs::fstat(&self.0).ok()?;
        (st.st_uid != 0).then_some((st.st_uid, st.st_gid))
    }
}

/// The fd table of one process (`/proc/<pid>/fd`), to find which fd holds a socket.
pub struct FdTable(OwnedFd);

impl FdTable {
    pub fn open(pid: u32) -> io::Result<Self> {
        let path = std::ffi::CString::new(format!("/proc/{pid}/fd")).expect("no NUL in a number");
        open_at(rustix::fs::CWD, &path, OFlags::RDONLY | OFlags::DIRECTORY).map(FdTable)
    }

    /// The first fd (in directory order) pointing at `target`.
    pub fn find(&self, target: &[u8]) -> Option<u32> {
        // A directory stream of its own (a new open of the directory: every listing starts
        // at its beginning), closed when it goes out of scope.
        let mut dir = rustix::fs::Dir::read_from(&self.0).ok()?;
        let mut buf = [0u8; 64];
        while let Some(Ok(entry)) = dir.read() {
            let name = entry.file_name();
            if name.to_bytes().first().is_some_and(u8::is_ascii_digit) && readlink_at(&self.0, name, &mut buf).is_ok_and(|t| t == target) {
                return std::str::from_utf8(name.to_bytes()).ok().and_then(|s| s.parse().ok());
            }
        }
        None
    }
}

/// `n` as a NUL-terminated decimal string in `buf`.
fn decimal(mut n: u32, buf: &mut [u8; 11]) -> &CStr {
    let mut i = 10; // buf[10] stays NUL
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    CStr::from_bytes_with_nul(&buf[i..]).expect("digits then one NUL")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_names() {
        let mut b = [0u8; 11];
        assert_eq!(decimal(0, &mut b).to_bytes(), b"0");
        assert_eq!(decimal(7, &mut b).to_bytes(), b"7");
        assert_eq!(decimal(u32::MAX, &mut b).to_bytes(), b"4294967295");
    }

    #[test]
    fn finds_own_fd_by_target() {
        let file = std::fs::File::open("/proc/self/status").unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&file) as u32;
        let dir = ProcDir::open(std::process::id()).unwrap();
        let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
        let target = target.as_os_str().as_encoded_bytes();
        let mut buf = [0u8; 64];
        assert_eq!(dir.fd_target(fd, &mut buf).unwrap(), target);
        assert!(dir.fd_target(u32::MAX - 1, &mut buf).is_err(), "no such fd");
        let table = dir.fd_table().unwrap();
        assert_eq!(table.find(target), Some(fd));
        assert_eq!(table.find(b"socket:[0]"), None);
        // A second listing starts from the beginning again.
        assert_eq!(table.find(target), Some(fd));
    }

    #[test]
    fn a_kept_file_is_rendered_afresh_on_every_read() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let status = ProcDir::open(child.id()).unwrap().open_file(c"status").unwrap();
        let state = |s: &[u8]| String::from_utf8_lossy(s).lines().find_map(|l| l.strip_prefix("State:").map(|v| v.trim()[..1].to_string())).unwrap();
        let mut buf = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while state(read_whole(&status, &mut buf).unwrap()) != "S" && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(state(read_whole(&status, &mut buf).unwrap()), "S");
        // Stopped: the same handle must show it (a plain read would be at EOF by now).
        let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("a child's pid is positive");
        rustix::process::kill_process(pid, rustix::process::Signal::STOP).unwrap();
        while state(read_whole(&status, &mut buf).unwrap()) != "T" && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(state(read_whole(&status, &mut buf).unwrap()), "T");
        child.kill().unwrap();
        child.wait().unwrap();
        let dir = ProcDir::open(std::process::id()).unwrap();
        let mut link = [0u8; 4096];
        let exe = dir.readlink(c"exe", &mut link).unwrap();
        assert_eq!(exe, std::env::current_exe().unwrap().as_os_str().as_encoded_bytes());
        assert!(dir.open_file(c"no-such-file").is_err());
    }
}
