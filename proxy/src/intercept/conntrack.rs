//! The original tuple of a redirected flow, from conntrack (ctnetlink GET by reply tuple).
//!
//! REDIRECT rewrites the destination, and when two flows from the same client port collide on
//! the reply side (every redirected flow ends at our one listener) it also rewrites the
//! *source port*. The accepted socket's peer address is then not the workload's real address,
//! so identity lookups must use the original tuple that conntrack remembers.
use crate::sys::netlink;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_GET: u16 = 1;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;

/// The flow as the workload opened it: (its own address, where it was going).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OriginalTuple {
    pub src: SocketAddr,
    pub dst: SocketAddr,
}

/// Looks up the conntrack entry whose reply direction is `local` → `peer` (our accepted
/// socket's view) and returns its original direction.
pub fn original_tuple(local: SocketAddr, peer: SocketAddr) -> io::Result<OriginalTuple> {
    let mut answer = [0u8; 4096];
    let n = netlink::exchange(libc::NETLINK_NETFILTER, &request(local, peer), &mut answer)?;
    parse_reply(&answer[..n])
}

/// Appends one netlink attribute (4-byte aligned).
fn put_attr(buf: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(payload);
    buf.resize(buf.len() + (4 - len % 4) % 4, 0);
}

/// Opens a nested attribute, filled by the attributes appended next and closed by `end_nest`:
/// the whole request is built in one buffer.
fn begin_nest(buf: &mut Vec<u8>, kind: u16) -> usize {
    let at = buf.len();
    buf.extend_from_slice(&[0, 0]);
    buf.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
    at
}

fn end_nest(buf: &mut [u8], at: usize) {
    let len = (buf.len() - at) as u16;
    buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
}

fn put_ip(buf: &mut Vec<u8>, kind: u16, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => put_attr(buf, kind, &v4.octets()),
        IpAddr::V6(v6) => put_attr(buf, kind, &v6.octets()),
    }
}

fn request(local: SocketAddr, peer: SocketAddr) -> Vec<u8> {
    let (src_kind, dst_kind, family) =
        if local.is_ipv4() { (CTA_IP_V4_SRC, CTA_IP_V4_DST, libc::AF_INET) } else { (CTA_IP_V6_SRC, CTA_IP_V6_DST, libc::AF_INET6) };
    let mut msg = Vec::with_capacity(128);
    msg.resize(netlink::HEADER_LEN, 0); // written last, when the length is known
    msg.extend_from_slice(&[family as u8, 0 /* NFNETLINK_V0 */, 0, 0]); // nfgenmsg
    let tuple = begin_nest(&mut msg, CTA_TUPLE_REPLY);
    let ip = begin_nest(&mut msg, CTA_TUPLE_IP);
    put_ip(&mut msg, src_kind, local.ip());
    put_ip(&mut msg, dst_kind, peer.ip());
    end_nest(&mut msg, ip);
    let proto = begin_nest(&mut msg, CTA_TUPLE_PROTO);
    put_attr(&mut msg, CTA_PROTO_NUM, &[libc::IPPROTO_TCP as u8]);
    put_attr(&mut msg, CTA_PROTO_SRC_PORT, &local.port().to_be_bytes());
    put_attr(&mut msg, CTA_PROTO_DST_PORT, &peer.port().to_be_bytes());
    end_nest(&mut msg, proto);
    end_nest(&mut msg, tuple);
    let header = netlink::header_bytes(msg.len(), (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET, libc::NLM_F_REQUEST as u16);
    msg[..netlink::HEADER_LEN].copy_from_slice(&header);
    msg
}

fn attrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let kind = u16::from_ne_bytes([buf[2], buf[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > buf.len() {
            return None;
        }
        let payload = &buf[4..len];
        buf = &buf[((len + 3) & !3).min(buf.len())..];
        Some((kind, payload))
    })
}

fn parse_reply(buf: &[u8]) -> io::Result<OriginalTuple> {
    let hdr = netlink::HEADER_LEN;
    if let Some(err) = netlink::error_of(buf) {
        return Err(match err.raw_os_error() {
            Some(libc::ENOENT) => io::Error::new(io::ErrorKind::NotFound, "no conntrack entry for this connection"),
            _ => err,
        });
    }
    if buf.len() < hdr + 4 {
        return Err(io::Error::other("short ctnetlink reply"));
    }
    let orig =
        attrs(&buf[hdr + 4..]).find(|(k, _)| *k == CTA_TUPLE_ORIG).ok_or_else(|| io::Error::other("ctnetlink reply without CTA_TUPLE_ORIG"))?.1;
    let (mut src, mut dst, mut sport, mut dport) = (None, None, None, None);
    for (k, v) in attrs(orig) {
        match k {
            CTA_TUPLE_IP => {
                for (k, v) in attrs(v) {
                    let ip = match v.len() {
                        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(v).expect("4 bytes"))),
                        16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(v).expect("16 bytes"))),
                        _ => continue,
                    };
                    match k {
                        CTA_IP_V4_SRC | CTA_IP_V6_SRC => src = Some(ip),
                        CTA_IP_V4_DST | CTA_IP_V6_DST => dst = Some(ip),
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for (k, v) in attrs(v) {
                    let port = (v.len() == 2).then(|| u16::from_be_bytes([v[0], v[1]]));
                    match k {
                        CTA_PROTO_SRC_PORT => sport = port,
                        CTA_PROTO_DST_PORT => dport = port,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    match (src, sport, dst, dport) {
        (Some(s), Some(sp), Some(d), Some(dp)) => Ok(OriginalTuple { src: SocketAddr::new(s, sp), dst: SocketAddr::new(d, dp) }),
        _ => Err(io::Error::other("incomplete CTA_TUPLE_ORIG in ctnetlink reply")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(buf: &[u8], kind: u16) -> &[u8] {
        let found: Vec<_> = attrs(buf).filter(|(k, _)| *k == kind).collect();
        assert_eq!(found.len(), 1, "one attribute {kind} in {buf:?}");
        found[0].1
    }

    #[test]
    fn the_request_names_the_reply_tuple() {
        for (local, peer) in [("10.0.0.1:15001", "10.0.0.9:40000"), ("[fd00::1]:15001", "[fd00::9]:40000")] {
            let (local, peer): (SocketAddr, SocketAddr) = (local.parse().unwrap(), peer.parse().unwrap());
            let msg = request(local, peer);
            assert_eq!(u32::from_ne_bytes(msg[0..4].try_into().unwrap()) as usize, msg.len());
            assert_eq!(netlink::message_type(&msg), (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET);
            let family = if local.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
            assert_eq!(msg[netlink::HEADER_LEN], family as u8);
            let body = &msg[netlink::HEADER_LEN + 4..];
            assert_eq!(attrs(body).count(), 1, "only the reply tuple");
            let tuple = only(body, CTA_TUPLE_REPLY);
            let ip = only(tuple, CTA_TUPLE_IP);
            let (src, dst) = if local.is_ipv4() { (CTA_IP_V4_SRC, CTA_IP_V4_DST) } else { (CTA_IP_V6_SRC, CTA_IP_V6_DST) };
            let octets = |a: SocketAddr| match a.ip() {
                IpAddr::V4(v4) => v4.octets().to_vec(),
                IpAddr::V6(v6) => v6.octets().to_vec(),
            };
            assert_eq!((only(ip, src), only(ip, dst)), (&octets(local)[..], &octets(peer)[..]));
            let proto = only(tuple, CTA_TUPLE_PROTO);
            assert_eq!(only(proto, CTA_PROTO_NUM), [libc::IPPROTO_TCP as u8]);
            assert_eq!(only(proto, CTA_PROTO_SRC_PORT), local.port().to_be_bytes());
            assert_eq!(only(proto, CTA_PROTO_DST_PORT), peer.port().to_be_bytes());
        }
    }
}
