//! The `inet idgate` table, built and replaced atomically in one netlink batch (no `nft` binary).
//!
//! ```text
//! table inet idgate {
//!   chain outbound { type nat hook output priority -100;
//!     meta mark == <bypass> return                       # idgate's own sockets
//!     [procfs] meta l4proto tcp ip daddr <cidr> tcp dport <a>-<b> redirect to :15001
//!     [kmod]   meta l4proto tcp meta mark & <tag> == <tag> redirect to :15001
//!     [kmod]   the destination rules too: a flow the module did not tag (unloaded) is
//!              refused by the lookup instead of leaving in plaintext
//!     [strict] oif lo tcp dport <protected> redirect to :15001   # local callers go through idgate
//!   }
//!   chain capture { type filter hook input priority -150;  # only idgate may take redirected flows
//!     ct state new iif lo tcp dport 15001 socket mark != <bypass> reject with tcp reset
//!   }
//!   chain inbound { type filter hook input priority 0;   # strict mode only
//!     meta l4proto tcp tcp dport <protected> meta iif != lo drop
//!   }
//! }
//! ```
//!
//! The table outlives the process on purpose: while no idgate listens, redirected flows are
//! refused (nothing listens on the capture port, and a listener that is not idgate's, whose
//! sockets alone carry the bypass mark, is rejected by `capture`), so nothing intercepted ever
//! leaves in plaintext.
use super::redirect_expr::Redirect;
use crate::config::{Cidr, PortRange};
use nftnl::expr::{Immediate, Register, SocketKey};
use nftnl::{nft_expr, Batch, Chain, FinalizedBatch, Hook, MsgType, Policy, ProtoFamily, Rule, Table};
use std::collections::HashSet;
use std::ffi::CString;
use std::io;
use std::net::IpAddr;

/// Everything the table says, derived from one host's config (see `ruleset`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ruleset {
    pub table: String,
    pub bypass_mark: u32,
    pub redirect_port: u16,
    /// Redirect flows to these destinations (userspace identity backend).
    pub destinations: Vec<(Cidr, PortRange)>,
    /// Redirect flows the kernel module tagged: every bit of this tag set (other mark bits
    /// belong to others: WireGuard, Cilium, policy routing).
    pub tag_mark: Option<u32>,
    /// Local ports that only idgate's inbound side may reach from the network, and that local
    /// callers reach only through idgate (empty in permissive mode).
    pub protected_ports: Vec<PortRange>,
}

/// Installs the ruleset, replacing any table of the same name in the same transaction.
pub fn install(rs: &Ruleset) -> io::Result<()> {
    let name = table_name(&rs.table)?;
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

    let mut capture = Chain::new(c"capture", &table);
    capture.set_hook(Hook::In, -150);
    capture.set_type(nftnl::ChainType::Filter);
    capture.set_policy(Policy::Accept);
    batch.add(&capture, MsgType::Add);
    batch.add(&capture_guard(&capture, rs)?, MsgType::Add);

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

/// Whether a table of this name exists (any family).
pub fn exists(table: &str) -> io::Result<bool> {
    let name = table_name(table)?;
    let socket = mnl::Socket::new(mnl::Bus::Netfilter)?;
    let portid = socket.portid();
    let seq = 1;
    let request = nftnl::table::get_tables_nlmsg(seq);
    // The request buffer is sized for the largest message; send only the message itself.
    let len = u32::from_ne_bytes([request[0], request[1], request[2], request[3]]) as usize;
    socket.send(&request[..len])?;
    let mut buffer = vec![0; nftnl::nft_nlmsg_maxsize() as usize];
    let mut tables = HashSet::new();
    loop {
        let n = socket.recv_raw(&mut buffer)?;
        if n == 0 {
            break;
        }
        if let mnl::CbResult::Stop = mnl::cb_run2(&buffer[..n], seq, portid, nftnl::table::get_tables_cb, &mut tables)? {
            break;
        }
    }
    Ok(tables.contains(&name))
}

/// Deletes the table. A missing table is not an error.
pub fn remove(table_name_: &str) -> io::Result<()> {
    let name = table_name(table_name_)?;
    let table = Table::new(&name, ProtoFamily::Inet);
    let mut batch = Batch::new();
    batch.add(&table, MsgType::Add);
    batch.add(&table, MsgType::Del);
    send(&batch.finalize())
}

fn table_name(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| invalid("table name has a NUL byte"))
}

fn add_outbound_rules(batch: &mut Batch, chain: &Chain, rs: &Ruleset) -> io::Result<()> {
    let mut bypass = Rule::new(chain);
    bypass.add_expr(&nft_expr!(meta mark));
    bypass.add_expr(&nft_expr!(cmp == rs.bypass_mark));
    bypass.add_expr(&nft_expr!(verdict return));
    batch.add(&bypass, MsgType::Add);

    for (cidr, ports) in &rs.destinations {
        let mut rule = Rule::new(chain);
        match_daddr(&mut rule, cidr);
        match_tcp_ports(&mut rule, ports);
        add_redirect(&mut rule, rs.redirect_port);
        batch.add(&rule, MsgType::Add);
    }
    if let Some(mark) = rs.tag_mark {
        let mut rule = Rule::new(chain);
        rule.add_expr(&nft_expr!(meta l4proto));
        rule.add_expr(&nft_expr!(cmp == libc::IPPROTO_TCP as u8));
        rule.add_expr(&nft_expr!(meta mark));
        rule.add_expr(&nft_expr!(bitwise mask mark, xor 0u32));
        rule.add_expr(&nft_expr!(cmp == mark));
        add_redirect(&mut rule, rs.redirect_port);
        batch.add(&rule, MsgType::Add);
    }
    if !rs.protected_ports.is_empty() {
        // Packets to any of this host's own addresses leave through lo.
        let lo = loopback_index()?;
        for ports in &rs.protected_ports {
            let mut rule = Rule::new(chain);
            rule.add_expr(&nft_expr!(meta oif));
            rule.add_expr(&nft_expr!(cmp == lo));
            match_tcp_ports(&mut rule, ports);
            add_redirect(&mut rule, rs.redirect_port);
            batch.add(&rule, MsgType::Add);
        }
    }
    Ok(())
}

/// `ct state new iif lo tcp dport <capture> socket mark != <bypass> reject with tcp reset`:
/// the capture port is unprivileged, so while idgate is not running any local user could
/// listen there and receive redirected flows; only sockets carrying the bypass mark (which
/// takes CAP_NET_ADMIN to set) may accept them.
fn capture_guard<'a>(chain: &'a Chain, rs: &Ruleset) -> io::Result<Rule<'a>> {
    let mut rule = Rule::new(chain);
    rule.add_expr(&nft_expr!(ct state));
    let new = nftnl::expr::ct::States::NEW.bits();
    rule.add_expr(&nft_expr!(bitwise mask new, xor 0u32));
    rule.add_expr(&nft_expr!(cmp != 0u32));
    rule.add_expr(&nft_expr!(meta iif));
    rule.add_expr(&nft_expr!(cmp == loopback_index()?));
    match_tcp_ports(&mut rule, &PortRange { min: rs.redirect_port, max: rs.redirect_port });
    rule.add_expr(&nftnl::expr::Socket::new(SocketKey::Mark, 0));
    rule.add_expr(&nft_expr!(cmp != rs.bypass_mark));
    rule.add_expr(&nft_expr!(counter));
    rule.add_expr(&nftnl::expr::Verdict::Reject(nftnl::expr::RejectionType::TcpRst));
    Ok(rule)
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
            mnl::cb_run(message, seq, portid).map_err(|e| io::Error::new(e.kind(), format!("nftables rejected the idgate table: {e}")))?;
        }
    }
    Ok(())
}
