//! Rust mirror of `kmod/include/uapi/idgate.h` (API version 2). `kmod_uapi_tests.rs` compiles
//! the C header and checks every size and offset here against it.
#![allow(dead_code)]

pub const API_VERSION: u32 = 2;
pub const VERSION_LEN: usize = 32;
pub const COMM_LEN: usize = 16;
pub const PATH_LEN: usize = 256;
pub const MAX_RULES: usize = 65536;

pub const RESULT_EXITED: u32 = 0x01;
pub const RESULT_EXE_TRUNC: u32 = 0x02;
pub const RESULT_CG_TRUNC: u32 = 0x04;
pub const RESULT_EXE_ID: u32 = 0x08;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Version {
    pub api_version: u32,
    pub reserved: u32,
    pub module_version: [u8; VERSION_LEN],
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Rule {
    pub family: u8,
    pub prefix_len: u8,
    pub port_min: u16,
    pub port_max: u16,
    pub pad: u16,
    pub addr: [u8; 16],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Config {
    pub mark: u32,
    pub mark_mask: u32,
    pub proxy_tgid: u32,
    pub rule_count: u32,
    pub flags: u32,
    pub rule_room: u32,
    /// Address of `rule_count` (CONFIG) or `rule_room` (GET_CONFIG) `Rule`s.
    pub rules: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Lookup {
    pub family: u8,
    pub flags: u8,
    pub src_port: u16,
    pub dst_port: u16,
    pub pad0: u16,
    pub src_addr: [u8; 16],
    pub dst_addr: [u8; 16],
    pub tgid: u32,
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
    pub result_flags: u32,
    pub pad1: u32,
    pub start_time_ns: u64,
    pub cgroup_id: u64,
    pub record_time_ns: u64,
    pub exe_dev: u64,
    pub exe_ino: u64,
    pub comm: [u8; COMM_LEN],
    pub exe: [u8; PATH_LEN],
    pub cgroup: [u8; PATH_LEN],
}

#[repr(C)]
#[derive(Clone, Copy, Default, Debug, serde::Serialize)]
pub struct Stats {
    pub entries: u64,
    pub peak_entries: u64,
    pub max_entries: u64,
    pub recorded: u64,
    pub lookups: u64,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub expired: u64,
    pub flushed: u64,
    pub dropped: u64,
    pub skipped_proxy: u64,
    pub reserved: [u64; 4],
}

const MAGIC: u64 = 0xB5;
const fn ioc(dir: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | (MAGIC << 8) | nr
}
const READ: u64 = 2;
const WRITE: u64 = 1;

pub const IOC_VERSION: u64 = ioc(READ, 0x00, std::mem::size_of::<Version>());
pub const IOC_CONFIG: u64 = ioc(WRITE, 0x01, std::mem::size_of::<Config>());
pub const IOC_GET_CONFIG: u64 = ioc(READ | WRITE, 0x02, std::mem::size_of::<Config>());
pub const IOC_LOOKUP: u64 = ioc(READ | WRITE, 0x03, std::mem::size_of::<Lookup>());
pub const IOC_STATS: u64 = ioc(READ, 0x04, std::mem::size_of::<Stats>());

/// Zero-initialised value of a plain-old-data uapi struct.
pub fn zeroed<T: Copy>() -> T {
    // SAFETY: only used with the repr(C) integer/array structs above, for which all-zero is valid.
    unsafe { std::mem::zeroed() }
}

/// A NUL-terminated fixed-size byte field as a String.
pub fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

#[cfg(test)]
#[path = "kmod_uapi_tests.rs"]
mod tests;
