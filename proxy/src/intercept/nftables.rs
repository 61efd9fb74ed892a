//! The `inet idgate` table, built and replaced atomically in one netlink batch (no `nft` binary).
//!
//! ```text
//! table inet idgate {
//!   chain outbound { type nat hook output priority -100;
//!     meta mark == <bypass> return                       # idgate's own sockets
//!     [procfs] meta l4proto tcp ip daddr <cidr> tcp dport <a>-<b> redirect to :15001
//!     [kmod]   meta l4proto tcp meta mark & <tag> == <tag> redirect to :15001
//!   }
//!   chain inbound { type filter hook input priority 0;   # strict mode only
//!     meta l4proto tcp tcp dport <protected> meta iif != lo drop
//!   }
//! }
//! ```
use super::redirect_expr::Redirect;
use crate::config::{Cidr, PortRange};
use nftnl::expr::{Immediate, Register};
use nftnl::{nft_expr, Batch, Chain, FinalizedBatch, Hook, MsgType, Policy, ProtoFamily, Rule, Table};
use std::ffi::CString;
use std::io;
use std::net::IpAddr;

/// Which outbound flows the redirect rule selects.
pub enum RedirectMatch {
    /// Destinations by address and port (userspace identity backend).
    Destinations(Vec<(Cidr, PortRange)>),
    /// Flows the kernel module tagged: every bit of this tag set (other mark bits are not idgate's).
    TagMark(u32),
}

pub struct Ruleset {
    pub table: String,
    pub bypass_mark: u32,
    pub redirect_port: u16,
    pub redirect: RedirectMatch,
    /// Local ports that only idgate's inbound side may reach (empty in permissive mode).
    pub protected_ports: Vec<PortRange>,
}

/// Installs the ruleset, replacing any stale table of the same name in the same transaction.
pub fn install(rs: &Ruleset) -> io::Result<()> {
    let name = CString::new(rs.table.as_str()).map_err(|_| invalid("table name has a NUL byte"))?;
    let table = Table::new(&name, ProtoFamily::Inet);
    let mut batch = Batch::new();
    // Add-then-delete makes the delete succeed whether or not a stale table exists.
    batch.add(&table, MsgType::Add);
    batch.add(&table, MsgType::Del);
    batch.add(&table, MsgType::Add);

    let mut out = Chain::new(c"outbound", &table);
    out.set_hook(Hook::Out, -100);
    out.set_type(nftnl::ChainType::Nat);
    out.set_policy(Policy::Accept);
    batch.add(&out, MsgType::Add);
    add_outbound_rules(&mut batch, &out, rs)?;

    if !rs.protected_ports.is_empty() {
        let mut inb = Chain::new(c"inbound", &table);
        inb.set_hook(Hook::In, 0);
        inb.set_type(nftnl::ChainType::Filter);
        inb.set_policy(Policy::Accept);
        batch.add(&inb, MsgType::Add);
        let lo = loopback_index()?;
        for ports in &rs.protected_ports {
            let mut rule = Rule::new(&inb);
            match_tcp_ports(&mut rule, ports);
            rule.add_expr(&nft_expr!(meta iif));
            rule.add_expr(&nft_expr!(cmp != lo));
            rule.add_expr(&nft_expr!(counter));
            rule.add_expr(&nft_expr!(verdict drop));
            batch.add(&rule, MsgType::Add);
        }
    }
    send(&batch.finalize())
}

/// Deletes the table (clean shutdown). Missing table is not an error.
pub fn remove(table_name: &str) -> io::Result<()> {
    let name = CString::new(table_name).map_err(|_| invalid("table name has a NUL byte"))?;
    let table = Table::new(&name, ProtoFamily::Inet);
    let mut batch = Batch::new();
    batch.add(&table, MsgType::Add);
    batch.add(&table, MsgType::Del);
    send(&batch.finalize())
}

fn add_outbound_rules(batch: &mut Batch, chain: &Chain, rs: &Ruleset) -> io::Result<()> {
    let mut bypass = Rule::new(chain);
    bypass.add_expr(&nft_expr!(meta mark));
    bypass.add_expr(&nft_expr!(cmp == rs.bypass_mark));
    bypass.add_expr(&nft_expr!(verdict return));
    batch.add(&bypass, MsgType::Add);

    match &rs.redirect {
        RedirectMatch::Destinations(dests) => {
            for (cidr, ports) in dests {
                let mut rule = Rule::new(chain);
                match_daddr(&mut rule, cidr);
                match_tcp_ports(&mut rule, ports);
                add_redirect(&mut rule, rs.redirect_port);
                batch.add(&rule, MsgType::Add);
            }
        }
        RedirectMatch::TagMark(mark) => {
            let mut rule = Rule::new(chain);
            rule.add_expr(&nft_expr!(meta l4proto));
            rule.add_expr(&nft_expr!(cmp == libc::IPPROTO_TCP as u8));
            rule.add_expr(&nft_expr!(meta mark));
            rule.add_expr(&nft_expr!(bitwise mask *mark, xor 0u32));
            rule.add_expr(&nft_expr!(cmp == *mark));
            add_redirect(&mut rule, rs.redirect_port);
            batch.add(&rule, MsgType::Add);
        }
    }
    Ok(())
}

fn match_daddr(rule: &mut Rule, cidr: &Cidr) {
    match (cidr.0.network(), cidr.0.netmask()) {
        (IpAddr::V4(net), IpAddr::V4(mask)) => {
            rule.add_expr(&nft_expr!(meta nfproto));
            rule.add_expr(&nft_expr!(cmp == libc::NFPROTO_IPV4 as u8));
            rule.add_expr(&nft_expr!(payload ipv4 daddr));
            rule.add_expr(&nft_expr!(bitwise mask mask, xor 0u32));
            rule.add_expr(&nft_expr!(cmp == net));
        }
        (IpAddr::V6(net), IpAddr::V6(mask)) => {
            rule.add_expr(&nft_expr!(meta nfproto));
            rule.add_expr(&nft_expr!(cmp == libc::NFPROTO_IPV6 as u8));
            rule.add_expr(&nft_expr!(payload ipv6 daddr));
            rule.add_expr(&nft_expr!(bitwise mask mask, xor &[0u8; 16][..]));
            rule.add_expr(&nft_expr!(cmp == net));
        }
        _ => unreachable!("network and netmask share a family"),
    }
}

fn match_tcp_ports(rule: &mut Rule, ports: &PortRange) {
    rule.add_expr(&nft_expr!(meta l4proto));
    rule.add_expr(&nft_expr!(cmp == libc::IPPROTO_TCP as u8));
    rule.add_expr(&nft_expr!(payload tcp dport));
    // Ports are compared as big-endian bytes, which orders like the numbers.
    if ports.min == ports.max {
        rule.add_expr(&nft_expr!(cmp == ports.min.to_be()));
    } else {
        rule.add_expr(&nft_expr!(cmp >= ports.min.to_be()));
        rule.add_expr(&nft_expr!(cmp <= ports.max.to_be()));
    }
}

fn add_redirect(rule: &mut Rule, port: u16) {
    rule.add_expr(&nft_expr!(counter));
    rule.add_expr(&Immediate::new(port.to_be(), Register::Reg1));
    rule.add_expr(&Redirect { port_register: Register::Reg1 });
}

fn loopback_index() -> io::Result<u32> {
    // SAFETY: if_nametoindex reads a NUL-terminated name.
    match unsafe { libc::if_nametoindex(c"lo".as_ptr()) } {
        0 => Err(io::Error::last_os_error()),
        i => Ok(i),
    }
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.to_string())
}

fn send(batch: &FinalizedBatch) -> io::Result<()> {
    let socket = mnl::Socket::new(mnl::Bus::Netfilter)?;
    let portid = socket.portid();
    socket.send_all(batch)?;
    let mut buffer = vec![0; nftnl::nft_nlmsg_maxsize() as usize];
    let mut expected = batch.sequence_numbers();
    while !expected.is_empty() {
        for message in socket.recv(&mut buffer[..])? {
            let message = message?;
            let seq = expected.next().ok_or_else(|| io::Error::other("unexpected netlink ACK"))?;
            mnl::cb_run(message, seq, portid)
                .map_err(|e| io::Error::new(e.kind(), format!("nftables rejected the idgate table: {e}")))?;
        }
    }
    Ok(())
}
