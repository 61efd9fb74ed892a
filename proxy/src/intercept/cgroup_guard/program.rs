//! The guard's two programs. Both look only at TCP connection attempts (SYN without ACK), so a
//! connection that is already open, or any other traffic, costs a few instructions.
//!
//! egress: a SYN that leaves with an intercepted (address, port) as its destination, without
//!   idgate's bypass mark, was not redirected (the table was flushed or deleted): dropped. So
//!   is a SYN over loopback to a protected port (a local caller that was not redirected).
//! ingress: a SYN to a protected port that did not arrive over loopback: dropped (strict mode's
//!   `inbound` chain, for when that chain is gone).
//!
//!   A SYN from a container's address (`sources`) passes: it leaves the container's network
//!   namespace for this host, whose `routed` chain redirects it (the guard cannot tell a
//!   namespace from another, and a host process cannot send from those addresses without
//!   taking one of them, which `sources` excludes).
//!
//! uplink egress (a tc program, attached to every other interface of a host that forwards
//!   containers' or a site's flows): a SYN that leaves with an intercepted (address, port) as
//!   its destination, without idgate's bypass mark, was not redirected, from wherever it came:
//!   dropped. It is what stops a forwarded flow when the table is gone, since forwarded packets
//!   pass no cgroup hook and the egress program lets containers' sources pass.
//!
//! Maps: `dests`, a longest-prefix-match trie of IPv6 addresses (IPv4 as ::ffff:a.b.c.d) to the
//! index of a port bitmap; `ports`, an array of 65,536-bit port bitmaps, the protected ports at
//! index 0; `sources`, a trie of containers' addresses to 1 (and this host's own among them to
//! 0).
use super::asm::{Asm, Cond, Size, HELPER_MAP_LOOKUP_ELEM, HELPER_SKB_LOAD_BYTES_RELATIVE, R};

/// Bytes of one port bitmap.
pub const BITMAP_BYTES: u32 = 65536 / 8;
/// The LPM trie's key: a prefix length, then 16 address bytes.
pub const KEY_BYTES: u32 = 4 + 16;
pub const PROTECTED_INDEX: u32 = 0;

// `struct __sk_buff` fields read.
const SKB_MARK: i16 = 8;
const SKB_PROTOCOL: i16 = 16;
const SKB_INGRESS_IFINDEX: i16 = 36;
const SKB_IFINDEX: i16 = 40;
// Stack: headers are read into SCRATCH; the trie key is built at KEY; INDEX holds an array key.
const SCRATCH: i16 = -64;
const KEY: i16 = -24;
const INDEX: i16 = -4;
const SOURCE_KEY: i16 = -88;
const LOOPBACK_IFINDEX: i32 = 1;
const IPPROTO_TCP: i32 = 6;
const IPV6_EXTENSIONS: [i32; 3] = [0, 43, 60]; // hop-by-hop, routing, destination options
const IPV6_FRAGMENT: i32 = 44;
const EXTENSIONS_WALKED: usize = 4;
/// `bpf_skb_load_bytes_relative`'s offsets from the network header: a tc program's packet
/// starts at its link-layer header, a cgroup program's at its network header.
const BPF_HDR_START_NET: i32 = 1;

/// What a program returns to let a packet go on, or to drop it.
#[derive(Clone, Copy)]
struct Verdicts {
    pass: i32,
    drop: i32,
}

const CGROUP: Verdicts = Verdicts { pass: 1, drop: 0 };
/// tcx: `TCX_NEXT` leaves the packet to the interface's other programs; `TCX_DROP`.
const TCX: Verdicts = Verdicts { pass: -1, drop: 2 };

pub struct Maps {
    pub dests: i32,
    pub ports: i32,
    pub sources: i32,
}

pub fn egress(maps: &Maps, bypass_mark: u32) -> Vec<u64> {
    let mut a = unmarked_syn(bypass_mark);
    a.load(Size::W, R::R2, R::R6, SKB_IFINDEX);
    a.jump32_if(Cond::Ne, R::R2, LOOPBACK_IFINDEX, "destination");
    drop_if_port_in(&mut a, maps.ports, "destination");
    a.label("destination");
    jump_if_intercepted(&mut a, maps, "intercepted");
    a.jump("pass");
    a.label("intercepted");
    a.load_map(R::R1, maps.sources);
    a.mov(R::R2, R::Fp);
    a.add_imm(R::R2, SOURCE_KEY as i32);
    a.call(HELPER_MAP_LOOKUP_ELEM);
    a.jump_if(Cond::Eq, R::R0, 0, "drop");
    a.load(Size::B, R::R2, R::R0, 0);
    a.jump_if(Cond::Eq, R::R2, 0, "drop");
    a.jump("pass");
    verdicts(a, CGROUP)
}

/// The tc program for the egress of a host's other interfaces (see above).
pub fn uplink_egress(maps: &Maps, bypass_mark: u32) -> Vec<u64> {
    let mut a = unmarked_syn(bypass_mark);
    jump_if_intercepted(&mut a, maps, "drop");
    a.jump("pass");
    verdicts(a, TCX)
}

/// Both egress programs' start: a packet with the bypass mark, or anything but a TCP SYN,
/// passes; then R7 = the SYN's destination port, the trie keys hold its addresses.
fn unmarked_syn(bypass_mark: u32) -> Asm {
    let mut a = Asm::default();
    a.mov(R::R6, R::R1);
    a.load(Size::W, R::R2, R::R6, SKB_MARK);
    a.jump32_if(Cond::Eq, R::R2, bypass_mark as i32, "pass");
    network_header(&mut a, true);
    a.label("tcp");
    syn_to_port(&mut a);
    a
}

/// Jumps to `target` if the destination in the trie key and port R7 are intercepted.
fn jump_if_intercepted(a: &mut Asm, maps: &Maps, target: &'static str) {
    a.load_map(R::R1, maps.dests);
    a.mov(R::R2, R::Fp);
    a.add_imm(R::R2, KEY as i32);
    a.call(HELPER_MAP_LOOKUP_ELEM);
    a.jump_if(Cond::Eq, R::R0, 0, "pass");
    a.load(Size::W, R::R2, R::R0, 0);
    a.store(Size::W, R::Fp, INDEX, R::R2);
    // The index came from our own trie: a bitmap missing for it is a guard out of step.
    bitmap_lookup(a, maps.ports, "drop");
    jump_if_bit(a, target);
}

pub fn ingress(maps: &Maps) -> Vec<u64> {
    let mut a = Asm::default();
    a.mov(R::R6, R::R1);
    a.load(Size::W, R::R2, R::R6, SKB_INGRESS_IFINDEX);
    a.jump32_if(Cond::Eq, R::R2, LOOPBACK_IFINDEX, "pass");
    network_header(&mut a, false);
    a.label("tcp");
    syn_to_port(&mut a);
    drop_if_port_in(&mut a, maps.ports, "pass");
    verdicts(a, CGROUP)
}

fn verdicts(mut a: Asm, v: Verdicts) -> Vec<u64> {
    a.label("pass");
    a.mov_imm(R::R0, v.pass);
    a.exit();
    a.label("drop");
    a.mov_imm(R::R0, v.drop);
    a.exit();
    a.finish()
}

/// `bpf_skb_load_bytes_relative(skb, <offset register or 0>, fp + SCRATCH, len, network
/// header)`; on failure, pass.
fn load_bytes(a: &mut Asm, offset: Option<R>, len: i32) {
    a.mov(R::R1, R::R6);
    match offset {
        Some(r) => a.mov(R::R2, r),
        None => a.mov_imm(R::R2, 0),
    }
    a.mov(R::R3, R::Fp);
    a.add_imm(R::R3, SCRATCH as i32);
    a.mov_imm(R::R4, len);
    a.mov_imm(R::R5, BPF_HDR_START_NET);
    a.call(HELPER_SKB_LOAD_BYTES_RELATIVE);
    a.jump_if(Cond::Ne, R::R0, 0, "pass");
}

/// IPv4 or IPv6 to TCP: jumps to `tcp` with R8 = the TCP header's offset (and, if `key`, the
/// destination address in the trie key); anything else passes. A packet whose first fragment
/// it is not has no TCP header: it passes (its connection's SYN was looked at).
fn network_header(a: &mut Asm, key: bool) {
    a.load(Size::W, R::R7, R::R6, SKB_PROTOCOL);
    a.jump32_if(Cond::Eq, R::R7, 0x0800u16.to_be() as i32, "ipv4");
    a.jump32_if(Cond::Eq, R::R7, 0x86ddu16.to_be() as i32, "ipv6");
    a.jump("pass");

    a.label("ipv4");
    load_bytes(a, None, 20);
    a.load(Size::B, R::R2, R::Fp, SCRATCH + 9);
    a.jump_if(Cond::Ne, R::R2, IPPROTO_TCP, "pass");
    a.load(Size::H, R::R2, R::Fp, SCRATCH + 6);
    a.and_imm(R::R2, 0x1fffu16.to_be() as i32);
    a.jump_if(Cond::Ne, R::R2, 0, "pass");
    if key {
        a.store_imm32(R::Fp, KEY, 128);
        a.store_imm32(R::Fp, KEY + 4, 0);
        a.store_imm32(R::Fp, KEY + 8, 0);
        a.store_imm32(R::Fp, KEY + 12, u32::from_ne_bytes([0, 0, 0xff, 0xff]) as i32);
        a.load(Size::W, R::R2, R::Fp, SCRATCH + 16);
        a.store(Size::W, R::Fp, KEY + 16, R::R2);
        a.store_imm32(R::Fp, SOURCE_KEY, 128);
        a.store_imm32(R::Fp, SOURCE_KEY + 4, 0);
        a.store_imm32(R::Fp, SOURCE_KEY + 8, 0);
        a.store_imm32(R::Fp, SOURCE_KEY + 12, u32::from_ne_bytes([0, 0, 0xff, 0xff]) as i32);
        a.load(Size::W, R::R2, R::Fp, SCRATCH + 12);
        a.store(Size::W, R::Fp, SOURCE_KEY + 16, R::R2);
    }
    a.load(Size::B, R::R8, R::Fp, SCRATCH);
    a.and_imm(R::R8, 0x0f);
    a.lsh_imm(R::R8, 2);
    a.jump("tcp");

    a.label("ipv6");
    load_bytes(a, None, 40);
    if key {
        a.store_imm32(R::Fp, KEY, 128);
        a.store_imm32(R::Fp, SOURCE_KEY, 128);
        for word in 0..4 {
            a.load(Size::W, R::R2, R::Fp, SCRATCH + 24 + 4 * word);
            a.store(Size::W, R::Fp, KEY + 4 + 4 * word, R::R2);
            a.load(Size::W, R::R2, R::Fp, SCRATCH + 8 + 4 * word);
            a.store(Size::W, R::Fp, SOURCE_KEY + 4 + 4 * word, R::R2);
        }
    }
    walk_ipv6_headers(a);
}

/// From the IPv6 header in SCRATCH: R8 = the TCP header's offset, then jump to `tcp`; a packet
/// that is not TCP, or not its first fragment, passes.
fn walk_ipv6_headers(a: &mut Asm) {
    a.load(Size::B, R::R9, R::Fp, SCRATCH + 6);
    a.mov_imm(R::R8, 40);
    // A SYN with extension headers (a routing header needs no privilege) is followed to its
    // TCP header; one with more of them than this is refused rather than let through unseen.
    const EXT: [&str; EXTENSIONS_WALKED] = ["ext0", "ext1", "ext2", "ext3"];
    const FRAG: [&str; EXTENSIONS_WALKED] = ["frag0", "frag1", "frag2", "frag3"];
    const NEXT: [&str; EXTENSIONS_WALKED] = ["next0", "next1", "next2", "next3"];
    for i in 0..EXTENSIONS_WALKED {
        a.jump_if(Cond::Eq, R::R9, IPPROTO_TCP, "tcp");
        a.jump_if(Cond::Eq, R::R9, IPV6_FRAGMENT, FRAG[i]);
        for ext in IPV6_EXTENSIONS {
            a.jump_if(Cond::Eq, R::R9, ext, EXT[i]);
        }
        a.jump("pass");
        a.label(EXT[i]);
        load_bytes(a, Some(R::R8), 2);
        a.load(Size::B, R::R9, R::Fp, SCRATCH);
        a.load(Size::B, R::R2, R::Fp, SCRATCH + 1);
        a.add_imm(R::R2, 1);
        a.lsh_imm(R::R2, 3);
        a.add(R::R8, R::R2);
        a.jump(NEXT[i]);
        a.label(FRAG[i]);
        load_bytes(a, Some(R::R8), 8);
        a.load(Size::H, R::R2, R::Fp, SCRATCH + 2);
        a.and_imm(R::R2, 0xfff8u16.to_be() as i32);
        a.jump_if(Cond::Ne, R::R2, 0, "pass");
        a.load(Size::B, R::R9, R::Fp, SCRATCH);
        a.add_imm(R::R8, 8);
        a.label(NEXT[i]);
    }
    a.jump_if(Cond::Eq, R::R9, IPPROTO_TCP, "tcp");
    a.jump_if(Cond::Eq, R::R9, IPV6_FRAGMENT, "drop");
    for ext in IPV6_EXTENSIONS {
        a.jump_if(Cond::Eq, R::R9, ext, "drop");
    }
    a.jump("pass");
}

/// At `tcp`: a SYN without ACK, or pass; R7 = its destination port.
fn syn_to_port(a: &mut Asm) {
    load_bytes(a, Some(R::R8), 14);
    a.load(Size::B, R::R2, R::Fp, SCRATCH + 13);
    a.and_imm(R::R2, 0x12);
    a.jump_if(Cond::Ne, R::R2, 0x02, "pass");
    a.load(Size::H, R::R7, R::Fp, SCRATCH + 2);
    a.be16(R::R7);
}

/// R0 = the bitmap at the index stored at INDEX, or jump to `missing`.
fn bitmap_lookup(a: &mut Asm, ports: i32, missing: &'static str) {
    a.load_map(R::R1, ports);
    a.mov(R::R2, R::Fp);
    a.add_imm(R::R2, INDEX as i32);
    a.call(HELPER_MAP_LOOKUP_ELEM);
    a.jump_if(Cond::Eq, R::R0, 0, missing);
}

/// Drop if port R7's bit is set in the bitmap R0 points at.
fn drop_if_bit(a: &mut Asm) {
    jump_if_bit(a, "drop");
}

/// Jump to `target` if port R7's bit is set in the bitmap R0 points at.
fn jump_if_bit(a: &mut Asm, target: &'static str) {
    a.mov(R::R3, R::R7);
    a.rsh_imm(R::R3, 3);
    a.and_imm(R::R3, (BITMAP_BYTES - 1) as i32);
    a.add(R::R0, R::R3);
    a.load(Size::B, R::R4, R::R0, 0);
    a.mov(R::R5, R::R7);
    a.and_imm(R::R5, 7);
    a.rsh(R::R4, R::R5);
    a.and_imm(R::R4, 1);
    a.jump_if(Cond::Ne, R::R4, 0, target);
}

/// Drop if port R7 is a protected port; otherwise go on at `next`.
fn drop_if_port_in(a: &mut Asm, ports: i32, next: &'static str) {
    a.store_imm32(R::Fp, INDEX, PROTECTED_INDEX as i32);
    bitmap_lookup(a, ports, next);
    drop_if_bit(a);
    a.jump(next);
}
