//! The bpf(2) commands the guard uses: maps, program load, cgroup and tcx links, pins.
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

const BPF_MAP_CREATE: i64 = 0;
const BPF_MAP_UPDATE_ELEM: i64 = 2;
const BPF_PROG_LOAD: i64 = 5;
const BPF_OBJ_PIN: i64 = 6;
const BPF_OBJ_GET: i64 = 7;
const BPF_LINK_CREATE: i64 = 28;
const BPF_LINK_UPDATE: i64 = 29;
pub const BPF_MAP_TYPE_ARRAY: u32 = 2;
pub const BPF_MAP_TYPE_LPM_TRIE: u32 = 11;
pub const BPF_F_NO_PREALLOC: u32 = 1;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const BPF_PROG_TYPE_CGROUP_SKB: u32 = 8;
const BPF_TCX_EGRESS: u32 = 47;

/// Where a program runs: a cgroup's hooks, or an interface's egress (tcx, Linux 6.6 and
/// later).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Ingress,
    Egress,
    TcxEgress,
}

impl Hook {
    fn program_type(self) -> u32 {
        match self {
            Hook::Ingress | Hook::Egress => BPF_PROG_TYPE_CGROUP_SKB,
            Hook::TcxEgress => BPF_PROG_TYPE_SCHED_CLS,
        }
    }

    /// `enum bpf_attach_type`.
    fn attach_type(self) -> u32 {
        match self {
            Hook::Ingress => 0,
            Hook::Egress => 1,
            Hook::TcxEgress => BPF_TCX_EGRESS,
        }
    }
}

/// `union bpf_attr`, as bytes: every command reads its own prefix of it.
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 128])
    }

    fn u32(mut self, at: usize, v: u32) -> Attr {
        self.0[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }

    fn u64(mut self, at: usize, v: u64) -> Attr {
        self.0[at..at + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }

    fn bytes(mut self, at: usize, v: &[u8]) -> Attr {
        self.0[at..at + v.len()].copy_from_slice(v);
        self
    }
}

fn bpf(cmd: i64, attr: &Attr) -> io::Result<i64> {
    // SAFETY: bpf(2) reads (and for some commands writes) `attr`, whose size we pass; the
    // pointers inside it point at buffers that outlive the call.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *const Attr, std::mem::size_of::<Attr>()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r)
}

fn fd(r: i64) -> OwnedFd {
    // SAFETY: the command returned a new descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(r as i32) }
}

pub fn map_create(kind: u32, key_size: u32, value_size: u32, max_entries: u32, flags: u32, name: &str) -> io::Result<OwnedFd> {
    let attr = Attr::new().u32(0, kind).u32(4, key_size).u32(8, value_size).u32(12, max_entries).u32(16, flags).bytes(28, &obj_name(name));
    bpf(BPF_MAP_CREATE, &attr).map(fd)
}

pub fn map_update(map: BorrowedFd, key: &[u8], value: &[u8]) -> io::Result<()> {
    let attr = Attr::new().u32(0, map.as_raw_fd() as u32).u64(8, key.as_ptr() as u64).u64(16, value.as_ptr() as u64);
    bpf(BPF_MAP_UPDATE_ELEM, &attr).map(|_| ())
}

/// Loads a program for `hook`. If the kernel refuses it, it is loaded once more
/// with the verifier's log, which becomes the error (a log on every load could itself fail for
/// want of room).
pub fn prog_load(insns: &[u64], hook: Hook, name: &str) -> io::Result<OwnedFd> {
    load(insns, hook, name, &mut []).or_else(|e| {
        let mut log = vec![0u8; 1 << 20];
        match load(insns, hook, name, &mut log) {
            Ok(fd) => Ok(fd),
            Err(_) => {
                let text = String::from_utf8_lossy(log.split(|b| *b == 0).next().unwrap_or_default()).into_owned();
                let tail: Vec<&str> = text.lines().rev().take(6).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                Err(io::Error::new(e.kind(), format!("the kernel refused program {name}: {e} (verifier: {})", tail.join(" / "))))
            }
        }
    })
}

fn load(insns: &[u64], hook: Hook, name: &str, log: &mut [u8]) -> io::Result<OwnedFd> {
    let license = c"Apache-2.0";
    let attr = Attr::new()
        .u32(0, hook.program_type())
        .u32(4, insns.len() as u32)
        .u64(8, insns.as_ptr() as u64)
        .u64(16, license.as_ptr() as u64)
        .u32(24, (!log.is_empty()) as u32) // log_level
        .u32(28, log.len() as u32)
        .u64(32, if log.is_empty() { 0 } else { log.as_mut_ptr() as u64 })
        .bytes(48, &obj_name(name))
        .u32(68, hook.attach_type()); // expected_attach_type
    bpf(BPF_PROG_LOAD, &attr).map(fd)
}

/// Attaches `prog` to the cgroup open at `cgroup` (as one of possibly several programs there).
pub fn link_create(prog: BorrowedFd, cgroup: BorrowedFd, hook: Hook) -> io::Result<OwnedFd> {
    let attr = Attr::new().u32(0, prog.as_raw_fd() as u32).u32(4, cgroup.as_raw_fd() as u32).u32(8, hook.attach_type());
    bpf(BPF_LINK_CREATE, &attr).map(fd)
}

/// Attaches `prog` to the egress of interface `ifindex` (after the programs already there).
pub fn tcx_link_create(prog: BorrowedFd, ifindex: u32) -> io::Result<OwnedFd> {
    let attr = Attr::new().u32(0, prog.as_raw_fd() as u32).u32(4, ifindex).u32(8, BPF_TCX_EGRESS);
    bpf(BPF_LINK_CREATE, &attr).map(fd)
}

/// Swaps the program a link runs, in one step.
pub fn link_update(link: BorrowedFd, prog: BorrowedFd) -> io::Result<()> {
    let attr = Attr::new().u32(0, link.as_raw_fd() as u32).u32(4, prog.as_raw_fd() as u32);
    bpf(BPF_LINK_UPDATE, &attr).map(|_| ())
}

pub fn pin(object: BorrowedFd, path: &Path) -> io::Result<()> {
    let p = c_path(path)?;
    let attr = Attr::new().u64(0, p.as_ptr() as u64).u32(8, object.as_raw_fd() as u32);
    bpf(BPF_OBJ_PIN, &attr).map(|_| ())
}

pub fn get_pinned(path: &Path) -> io::Result<OwnedFd> {
    let p = c_path(path)?;
    let attr = Attr::new().u64(0, p.as_ptr() as u64);
    bpf(BPF_OBJ_GET, &attr).map(fd)
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path has a NUL byte"))
}

/// A kernel object name: at most 15 bytes and a NUL.
fn obj_name(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    let n = name.len().min(15);
    out[..n].copy_from_slice(&name.as_bytes()[..n]);
    out
}
