//! nf_tables netlink messages as bytes: a header, the nfnetlink preamble and attributes,
//! nested where the kernel expects them. Integers the kernel reads as numbers are big-endian;
//! register data (marks, ports, addresses) is laid out as the packet or the socket has it.
use std::ffi::CStr;

const NLMSG_HDRLEN: usize = 16;
const NLA_HDRLEN: usize = 4;
const NLA_F_NESTED: u16 = 0x8000;
pub const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;
const NFNETLINK_V0: u8 = 0;

/// The nf_tables message types idgate sends or reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Kind {
    NewTable = 0,
    GetTable = 1,
    DelTable = 2,
    NewChain = 3,
    DelChain = 5,
    NewRule = 6,
    DelRule = 8,
    NewSet = 9,
    DelSet = 11,
    NewSetElem = 12,
    DelSetElem = 14,
    NewGen = 15,
}

impl Kind {
    pub fn from_type(nlmsg_type: u16) -> Option<Kind> {
        if nlmsg_type >> 8 != NFNL_SUBSYS_NFTABLES {
            return None;
        }
        Some(match nlmsg_type & 0xff {
            0 => Kind::NewTable,
            1 => Kind::GetTable,
            2 => Kind::DelTable,
            3 => Kind::NewChain,
            5 => Kind::DelChain,
            6 => Kind::NewRule,
            8 => Kind::DelRule,
            9 => Kind::NewSet,
            11 => Kind::DelSet,
            12 => Kind::NewSetElem,
            14 => Kind::DelSetElem,
            15 => Kind::NewGen,
            _ => return None,
        })
    }
}

pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_DUMP: u16 = 0x300;
pub const NLM_F_CREATE: u16 = 0x400;
pub const NLM_F_APPEND: u16 = 0x800;

/// A buffer of netlink messages being written. Attributes go into the message opened last;
/// `nest` returns the offset that `end_nest` closes.
#[derive(Default)]
pub struct Writer {
    buf: Vec<u8>,
    message: usize,
}

impl Writer {
    pub fn with_capacity(n: usize) -> Writer {
        Writer { buf: Vec::with_capacity(n), message: 0 }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Opens a message: the netlink header (its length set by `end_message`) and the nfnetlink
    /// preamble (`family`, version 0, `res_id`, which is big-endian on the wire).
    pub fn begin_message(&mut self, nlmsg_type: u16, flags: u16, seq: u32, family: u8, res_id: u16) {
        self.message = self.buf.len();
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.extend_from_slice(&nlmsg_type.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.extend_from_slice(&[family, NFNETLINK_V0]);
        self.buf.extend_from_slice(&res_id.to_be_bytes());
    }

    pub fn end_message(&mut self) {
        let len = (self.buf.len() - self.message) as u32;
        self.buf[self.message..self.message + 4].copy_from_slice(&len.to_ne_bytes());
    }

    /// An nf_tables request of `kind` for `family`.
    pub fn request(&mut self, kind: Kind, flags: u16, seq: u32, family: u8) {
        self.begin_message((NFNL_SUBSYS_NFTABLES << 8) | kind as u16, NLM_F_REQUEST | flags, seq, family, 0);
    }

    pub fn batch_begin(&mut self, seq: u32) {
        self.begin_message(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq, libc::AF_UNSPEC as u8, NFNL_SUBSYS_NFTABLES);
        self.end_message();
    }

    pub fn batch_end(&mut self, seq: u32) {
        self.begin_message(NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq, libc::AF_UNSPEC as u8, NFNL_SUBSYS_NFTABLES);
        self.end_message();
    }

    pub fn attr(&mut self, kind: u16, payload: &[u8]) {
        let len = NLA_HDRLEN + payload.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.pad();
    }

    pub fn attr_str(&mut self, kind: u16, value: &CStr) {
        self.attr(kind, value.to_bytes_with_nul());
    }

    pub fn attr_be32(&mut self, kind: u16, value: u32) {
        self.attr(kind, &value.to_be_bytes());
    }

    pub fn nest(&mut self, kind: u16) -> usize {
        let at = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        at
    }

    /// Closes the nest opened at `at`. A nest longer than an attribute can say is an error the
    /// caller must have prevented (it splits element lists well below the limit).
    pub fn end_nest(&mut self, at: usize) {
        let len = self.buf.len() - at;
        assert!(len <= u16::MAX as usize, "netlink attribute of {len} bytes");
        self.buf[at..at + 2].copy_from_slice(&(len as u16).to_ne_bytes());
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }
}

/// One netlink message read from the kernel.
pub struct Message<'a> {
    pub nlmsg_type: u16,
    pub seq: u32,
    pub portid: u32,
    pub payload: &'a [u8],
}

/// The messages in a datagram the kernel sent (stops at a truncated one).
pub fn messages(mut data: &[u8]) -> impl Iterator<Item = Message<'_>> {
    std::iter::from_fn(move || {
        if data.len() < NLMSG_HDRLEN {
            return None;
        }
        let len = u32::from_ne_bytes(data[0..4].try_into().ok()?) as usize;
        if len < NLMSG_HDRLEN || len > data.len() {
            return None;
        }
        let m = Message {
            nlmsg_type: u16::from_ne_bytes([data[4], data[5]]),
            seq: u32::from_ne_bytes(data[8..12].try_into().ok()?),
            portid: u32::from_ne_bytes(data[12..16].try_into().ok()?),
            payload: &data[NLMSG_HDRLEN..len],
        };
        data = &data[align4(len).min(data.len())..];
        Some(m)
    })
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// The attributes after an nf_tables message's nfnetlink preamble: (type without flags, payload).
pub fn attributes(payload: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut data = payload.get(4..).unwrap_or_default();
    std::iter::from_fn(move || {
        if data.len() < NLA_HDRLEN {
            return None;
        }
        let len = u16::from_ne_bytes([data[0], data[1]]) as usize;
        let kind = u16::from_ne_bytes([data[2], data[3]]) & 0x3fff;
        if len < NLA_HDRLEN || len > data.len() {
            return None;
        }
        let value = &data[NLA_HDRLEN..len];
        data = &data[align4(len).min(data.len())..];
        Some((kind, value))
    })
}

/// The family byte of an nf_tables message's preamble.
pub fn family(payload: &[u8]) -> Option<u8> {
    payload.first().copied()
}

/// A string attribute's value without its terminating NUL.
pub fn attr_string(value: &[u8]) -> &[u8] {
    value.split(|b| *b == 0).next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_attributes_read_back_what_was_written() {
        let mut w = Writer::default();
        w.request(Kind::NewTable, NLM_F_CREATE | NLM_F_ACK, 7, libc::NFPROTO_INET as u8);
        w.attr_str(1, c"idgate");
        let nest = w.nest(4);
        w.attr_be32(1, 3);
        w.end_nest(nest);
        w.end_message();
        w.request(Kind::DelTable, NLM_F_ACK, 8, libc::NFPROTO_INET as u8);
        w.attr_str(1, c"x");
        w.end_message();
        let all: Vec<_> = messages(w.bytes()).collect();
        assert_eq!(all.len(), 2);
        assert_eq!(Kind::from_type(all[0].nlmsg_type), Some(Kind::NewTable));
        assert_eq!((all[0].seq, all[1].seq), (7, 8));
        assert_eq!(family(all[0].payload), Some(libc::NFPROTO_INET as u8));
        let attrs: Vec<_> = attributes(all[0].payload).collect();
        assert_eq!(attrs[0], (1, &b"idgate\0"[..]));
        assert_eq!(attrs[1].0, 4, "the nested flag is not part of the type");
        assert_eq!(attrs[1].1, [8, 0, 1, 0, 0, 0, 0, 3]);
        assert_eq!(attr_string(attrs[0].1), b"idgate");
    }

    #[test]
    fn truncated_input_ends_the_iteration_without_panicking() {
        let mut w = Writer::default();
        w.request(Kind::NewRule, 0, 1, 1);
        w.attr_str(1, c"t");
        w.end_message();
        let bytes = w.bytes();
        for cut in 0..bytes.len() {
            let _: usize = messages(&bytes[..cut]).map(|m| attributes(m.payload).count()).sum();
        }
        let mut bad = bytes.to_vec();
        bad[20..22].copy_from_slice(&900u16.to_ne_bytes()); // an attribute longer than the message
        assert_eq!(messages(&bad).map(|m| attributes(m.payload).count()).sum::<usize>(), 0);
    }
}
