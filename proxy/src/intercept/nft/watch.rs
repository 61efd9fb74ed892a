//! Ruleset notifications (`NFNLGRP_NFTABLES`): every committed change to any table, by whom.
//! The kernel sends one message per changed object, then a `NEWGEN` naming the process.
use super::msg::{self, Kind};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

const NFNLGRP_NFTABLES: u32 = 7;
/// The table's name is attribute 1 of table, chain, rule, set and element messages alike.
const TABLE_ATTR: u16 = 1;
const NFTA_GEN_PROC_PID: u16 = 2;
const NFTA_GEN_PROC_NAME: u16 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An object of `table` changed (`kind` says how), at the request of netlink port `portid`.
    Changed { kind: Kind, family: u8, table: String, portid: u32 },
    /// The end of one transaction, made by process `pid` (`name`).
    Generation { pid: u32, name: String },
    /// Notifications were lost (the socket's buffer overflowed): anything may have changed.
    Lost,
}

pub struct Watch {
    fd: OwnedFd,
    buf: Vec<u8>,
}

impl Watch {
    pub fn open() -> io::Result<Watch> {
        let fd = crate::sys::netlink::subscribe(libc::SOCK_RAW, libc::NETLINK_NETFILTER, 1 << (NFNLGRP_NFTABLES - 1))?;
        Ok(Watch { fd, buf: vec![0; 1 << 16] })
    }

    /// The events of the next datagram (blocks until one comes).
    pub fn next(&mut self) -> io::Result<Vec<Event>> {
        // SAFETY: recv into our buffer of the given length.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), self.buf.as_mut_ptr() as *mut _, self.buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENOBUFS) => Ok(vec![Event::Lost]),
                Some(libc::EINTR) => Ok(vec![]),
                _ => Err(e),
            };
        }
        Ok(parse(&self.buf[..n as usize]))
    }
}

pub fn parse(datagram: &[u8]) -> Vec<Event> {
    msg::messages(datagram)
        .filter_map(|m| {
            let kind = Kind::from_type(m.nlmsg_type)?;
            if kind == Kind::NewGen {
                let mut pid = 0;
                let mut name = String::new();
                for (t, v) in msg::attributes(m.payload) {
                    match t {
                        NFTA_GEN_PROC_PID => pid = super::be32(v),
                        NFTA_GEN_PROC_NAME => name = String::from_utf8_lossy(msg::attr_string(v)).into_owned(),
                        _ => {}
                    }
                }
                return Some(Event::Generation { pid, name });
            }
            let table = msg::attributes(m.payload).find(|(t, _)| *t == TABLE_ATTR)?.1;
            Some(Event::Changed {
                kind,
                family: msg::family(m.payload)?,
                table: String::from_utf8_lossy(msg::attr_string(table)).into_owned(),
                portid: m.portid,
            })
        })
        .collect()
}
