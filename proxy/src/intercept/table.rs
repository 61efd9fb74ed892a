//! What idgate's nftables tables say, written as one nf_tables transaction.
//!
//! ```text
//! table inet idgate {                       # and idgate_owned: the same, flags owner
//!   set dst4 { type ipv4_addr . inet_service; flags interval; }
//!   set dst6 { type ipv6_addr . inet_service; flags interval; }
//!   set protected { type inet_service; flags interval; }            # strict mode
//!   chain outbound { type nat hook output priority -100;
//!     meta mark == <bypass> return                                   # idgate's own sockets
//!     meta nfproto ipv4 meta l4proto tcp ip daddr . tcp dport @dst4 redirect to :15001
//!     meta nfproto ipv6 meta l4proto tcp ip6 daddr . tcp dport @dst6 redirect to :15001
//!     [kmod]   meta l4proto tcp meta mark & <tag> == <tag> redirect to :15001
//!     [strict] oif lo meta l4proto tcp tcp dport @protected redirect to :15001
//!   }
//!   set nets4 { type ipv4_addr; flags interval; }                  # [containers] networks
//!   set nets6 { type ipv6_addr; flags interval; }
//!   set site_src4 { type ipv4_addr; flags interval; }               # sites' sources ([[workload]]
//!   set site_pairs4 { type ifname . ipv4_addr; flags interval; }    # interface and sources)
//!   set site_ifaces { type ifname; }                                 # (and the IPv6 ones)
//!   chain routed { type nat hook prerouting priority -100;   # flows routed through this host
//!     meta l4proto tcp ip saddr @site_src4 iifname . ip saddr != @site_pairs4 drop  # spoofed
//!     meta l4proto tcp iifname @site_ifaces iifname . ip saddr != @site_pairs4 drop # (IPv6 too)
//!     fib daddr type local return                                    # to this host: not routed
//!     meta nfproto ipv4 meta l4proto tcp ip saddr @nets4 fib saddr . iif oif 0 drop  # spoofed
//!     meta nfproto ipv6 meta l4proto tcp ip6 saddr @nets6 fib saddr . iif oif 0 drop
//!     meta nfproto ipv4 meta l4proto tcp ip daddr . tcp dport @dst4 redirect to :15001
//!     meta nfproto ipv6 meta l4proto tcp ip6 daddr . tcp dport @dst6 redirect to :15001
//!   }
//!   chain capture { type filter hook input priority -150;  # only idgate may take redirected flows
//!     ct state new tcp dport 15001 socket mark != <bypass> reject with tcp reset
//!     iif != lo tcp dport 15001 ct status & dnat == 0 drop            # only redirected ones
//!   }
//!   chain inbound { type filter hook input priority 0;     # strict mode only
//!     meta l4proto tcp tcp dport @protected iif != lo drop
//!   }
//!   chain backends { type filter hook forward priority 0;  # strict mode, [[inbound]] backends
//!     ip daddr . tcp dport @backend4 drop                    # (set backend4/6 like dst4/6)
//!     ip6 daddr . tcp dport @backend6 drop
//!   }
//! }
//! ```
//!
//! Destinations are sets, so a new connection costs one lookup however many there are, and a
//! table of any size goes in as one transaction. A flow routed through this host (from a
//! container, or another machine) to an intercepted destination is redirected like a local
//! one: idgate tunnels it if it comes from a container it can attribute, and refuses it
//! otherwise, so that routing never carries it out in plaintext. With the kernel module the destination rules
//! stay beside the tag rule: a flow it did not tag (unloaded while idgate was down, say) is then
//! redirected and refused by the lookup instead of leaving in plaintext.
use super::destinations::{self, Element};
use super::nft::expr::{
    Base, CmpOp, Expr, MetaKey, Reg, FIB_F_DADDR, FIB_F_IIF, FIB_F_SADDR, FIB_RESULT_ADDRTYPE, FIB_RESULT_OIF, IPS_DST_NAT, NFT_RETURN, NF_ACCEPT,
    NF_DROP, RTN_LOCAL,
};
use super::nft::msg::{Kind, Writer, NLM_F_APPEND, NLM_F_CREATE};
use super::nft::{self, Batch, NFPROTO_INET};
use crate::config::{Cidr, GuardCgroup, PortRange};
use std::ffi::CStr;
use std::io;

/// Everything the tables (and the cgroup guard beside them) say, derived from one host's config.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ruleset {
    pub table: String,
    pub bypass_mark: u32,
    pub redirect_port: u16,
    /// Redirect flows to these destinations.
    pub destinations: Vec<(Cidr, PortRange)>,
    /// Redirect flows the kernel module tagged: every bit of this tag set (other mark bits
    /// belong to others: WireGuard, Cilium, policy routing).
    pub tag_mark: Option<u32>,
    /// Local ports that only idgate's inbound side may reach from the network, and that local
    /// callers reach only through idgate (empty in permissive mode).
    pub protected_ports: Vec<PortRange>,
    /// The cgroup the second line of defence is attached to (see `cgroup_guard`).
    #[serde(default)]
    pub guard_cgroup: GuardCgroup,
    /// Containers' addresses (`[containers] networks`): accepted only over the interface the
    /// host routes them to.
    #[serde(default)]
    pub container_networks: Vec<Cidr>,
    /// Sites behind this host: (interface, source prefix) of each site rule. A site's sources
    /// count only from its interface, and its interface carries only its sources.
    #[serde(default)]
    pub sites: Vec<(String, Cidr)>,
    /// Servers behind this host that only idgate's inbound side may reach (strict mode's
    /// `[[inbound]]` backends): plaintext routed to them is dropped.
    #[serde(default)]
    pub protected_backends: Vec<(Cidr, PortRange)>,
}

impl Ruleset {
    /// The table that outlives the process (not owned).
    pub fn standing_name(&self) -> &str {
        &self.table
    }

    /// The table held by the running idgate's netlink socket.
    pub fn owned_name(&self) -> String {
        owned_name(&self.table)
    }
}

pub fn owned_name(table: &str) -> String {
    format!("{table}_owned")
}

const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NF_INET_PRE_ROUTING: u32 = 0;
const NF_INET_LOCAL_IN: u32 = 1;
const NF_INET_FORWARD: u32 = 2;
const NF_INET_LOCAL_OUT: u32 = 3;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_FLAGS: u16 = 3;
const NFTA_SET_KEY_TYPE: u16 = 4;
const NFTA_SET_KEY_LEN: u16 = 5;
const NFTA_SET_DESC: u16 = 9;
const NFTA_SET_ID: u16 = 10;
const NFTA_SET_DESC_CONCAT: u16 = 2;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_FIELD_LEN: u16 = 1;
const NFT_SET_INTERVAL: u32 = 0x4;
const NFT_SET_CONCAT: u32 = 0x80;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_SET_ELEM_LIST_SET_ID: u16 = 4;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_FLAGS: u16 = 3;
const NFTA_SET_ELEM_KEY_END: u16 = 10;
const NFT_SET_ELEM_INTERVAL_END: u32 = 1;
/// nft's datatypes, only so that `nft list` shows the sets' types.
const TYPE_IPADDR: u32 = 7;
const TYPE_IP6ADDR: u32 = 8;
const TYPE_INET_SERVICE: u32 = 13;
const TYPE_IFNAME: u32 = 41;
/// IFNAMSIZ: an interface name as a key, NUL-padded.
const IFNAME_LEN: usize = 16;
/// Elements per NEWSETELEM message: a message's element list is one attribute (64 KiB at most).
const ELEMENTS_PER_MESSAGE: usize = 700;

/// Adds to `batch` the messages that replace table `name` (family inet) with what `rs` says:
/// created if absent, deleted and created again in the same transaction otherwise.
/// `flags` are the table's (`NFT_TABLE_F_OWNER` for the owned one). Set ids start at `set_id`.
pub fn replace(batch: &mut Batch, rs: &Ruleset, name: &str, flags: u32, set_id: u32) -> io::Result<()> {
    let t = nft::table_name(name)?;
    let table = t.as_c_str();
    let what = |verb: &str| format!("{verb} table inet {name}");
    // Adding first makes the delete succeed whether or not a table exists.
    batch.add(Kind::NewTable, NLM_F_CREATE, NFPROTO_INET, || what("creating"), |w| table_attrs(w, table, flags));
    batch.add(Kind::DelTable, 0, NFPROTO_INET, || what("replacing"), |w| nft::table_attr(w, table));
    batch.add(Kind::NewTable, NLM_F_CREATE, NFPROTO_INET, || what("creating"), |w| table_attrs(w, table, flags));

    let (v4, v6) = destinations::boxes(&rs.destinations);
    let protected = destinations::merged_ports(&rs.protected_ports);
    let (nets4, nets6) = destinations::merged_addresses(&rs.container_networks);
    let sets = Sets {
        dst4: set_id,
        dst6: set_id + 1,
        protected: set_id + 2,
        nets4: set_id + 3,
        nets6: set_id + 4,
        site_src4: set_id + 5,
        site_src6: set_id + 6,
        site_pairs4: set_id + 7,
        site_pairs6: set_id + 8,
        site_ifaces: set_id + 9,
        backend4: set_id + 10,
        backend6: set_id + 11,
    };
    add_box_sets(batch, table, (&v4, &v6), (c"dst4", sets.dst4), (c"dst6", sets.dst6));
    if !protected.is_empty() {
        add_interval_set(batch, table, c"protected", sets.protected, (TYPE_INET_SERVICE, 2), &intervals(&protected));
    }
    add_address_sets(batch, table, (&nets4, &nets6), (c"nets4", sets.nets4), (c"nets6", sets.nets6));

    add_chain(batch, table, c"outbound", NF_INET_LOCAL_OUT, -100, c"nat");
    for rule in outbound_rules(rs, &sets, !v4.is_empty(), !v6.is_empty(), !protected.is_empty()) {
        add_rule(batch, table, c"outbound", &rule);
    }
    let sites = add_site_sets(batch, table, &rs.sites, &sets)?;
    add_chain(batch, table, c"routed", NF_INET_PRE_ROUTING, -100, c"nat");
    for rule in site_rules(&sets, sites) {
        add_rule(batch, table, c"routed", &rule);
    }
    for rule in routed_rules(rs, &sets, (!v4.is_empty(), !v6.is_empty()), (!nets4.is_empty(), !nets6.is_empty())) {
        add_rule(batch, table, c"routed", &rule);
    }
    add_chain(batch, table, c"capture", NF_INET_LOCAL_IN, -150, c"filter");
    add_rule(batch, table, c"capture", &capture_guard(rs));
    add_rule(batch, table, c"capture", &only_redirected(rs));
    if !protected.is_empty() {
        add_chain(batch, table, c"inbound", NF_INET_LOCAL_IN, 0, c"filter");
        add_rule(batch, table, c"inbound", &protected_drop(&sets));
    }
    add_backend_chain(batch, table, rs, &sets);
    Ok(())
}

/// Strict mode's `[[inbound]]` backends: plaintext routed to them is dropped (idgate's own
/// dials to them leave from this host, not through the forward hook).
fn add_backend_chain(batch: &mut Batch, table: &CStr, rs: &Ruleset, sets: &Sets) {
    let (v4, v6) = destinations::boxes(&rs.protected_backends);
    if v4.is_empty() && v6.is_empty() {
        return;
    }
    add_box_sets(batch, table, (&v4, &v6), (c"backend4", sets.backend4), (c"backend6", sets.backend6));
    add_chain(batch, table, c"backends", NF_INET_FORWARD, 0, c"filter");
    if !v4.is_empty() {
        add_rule(
            batch,
            table,
            c"backends",
            &destination_in(false, c"backend4", sets.backend4).push(OwnedExpr::Counter).push(OwnedExpr::Verdict(NF_DROP)),
        );
    }
    if !v6.is_empty() {
        add_rule(
            batch,
            table,
            c"backends",
            &destination_in(true, c"backend6", sets.backend6).push(OwnedExpr::Counter).push(OwnedExpr::Verdict(NF_DROP)),
        );
    }
}

/// The destination boxes of both families (`address . port` interval sets), where there are any.
fn add_box_sets(
    batch: &mut Batch,
    table: &CStr,
    (v4, v6): (&[Element<u32>], &[Element<u128>]),
    (name4, id4): (&'static CStr, u32),
    (name6, id6): (&'static CStr, u32),
) {
    if !v4.is_empty() {
        add_concat_interval_set(batch, table, name4, id4, [(TYPE_IPADDR, 4), (TYPE_INET_SERVICE, 2)]);
        let elems: Vec<(Vec<u8>, Vec<u8>)> = v4.iter().map(|e| concat_key(e, |a: u32| a.to_be_bytes().to_vec())).collect();
        add_elements(batch, table, name4, id4, &elems);
    }
    if !v6.is_empty() {
        add_concat_interval_set(batch, table, name6, id6, [(TYPE_IP6ADDR, 16), (TYPE_INET_SERVICE, 2)]);
        let elems: Vec<(Vec<u8>, Vec<u8>)> = v6.iter().map(|e| concat_key(e, |a: u128| a.to_be_bytes().to_vec())).collect();
        add_elements(batch, table, name6, id6, &elems);
    }
}

/// Address ranges of both families as interval sets, where there are any.
fn add_address_sets(
    batch: &mut Batch,
    table: &CStr,
    (v4, v6): (&destinations::Ranges<u32>, &destinations::Ranges<u128>),
    (name4, id4): (&'static CStr, u32),
    (name6, id6): (&'static CStr, u32),
) {
    if !v4.is_empty() {
        add_interval_set(batch, table, name4, id4, (TYPE_IPADDR, 4), &intervals(v4));
    }
    if !v6.is_empty() {
        add_interval_set(batch, table, name6, id6, (TYPE_IP6ADDR, 16), &intervals(v6));
    }
}

/// Inclusive ranges as an interval set's elements: the first key (big-endian), and the key
/// after the last one, unless the range reaches the last key there is.
fn intervals<A: BigEndian>(ranges: &[(A, A)]) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    ranges.iter().map(|&(lo, hi)| (lo.be_bytes(), hi.after().map(BigEndian::be_bytes))).collect()
}

/// Keys of interval sets: ports and addresses.
trait BigEndian: Copy {
    fn be_bytes(self) -> Vec<u8>;
    fn after(self) -> Option<Self>;
}

macro_rules! big_endian {
    ($($t:ty),*) => {$(
        impl BigEndian for $t {
            fn be_bytes(self) -> Vec<u8> {
                self.to_be_bytes().to_vec()
            }
            fn after(self) -> Option<Self> {
                self.checked_add(1)
            }
        }
    )*};
}
big_endian!(u16, u32, u128);

/// Adds the message that deletes table `name` (created first, so a missing one is no error).
pub fn delete(batch: &mut Batch, name: &str) -> io::Result<()> {
    let t = nft::table_name(name)?;
    batch.add(Kind::NewTable, NLM_F_CREATE, NFPROTO_INET, || format!("creating table inet {name}"), |w| table_attrs(w, &t, 0));
    batch.add(Kind::DelTable, 0, NFPROTO_INET, || format!("deleting table inet {name}"), |w| nft::table_attr(w, &t));
    Ok(())
}

fn table_attrs(w: &mut Writer, table: &CStr, flags: u32) {
    nft::table_attr(w, table);
    nft::table_flags_attr(w, flags);
}

struct Sets {
    dst4: u32,
    dst6: u32,
    protected: u32,
    nets4: u32,
    nets6: u32,
    site_src4: u32,
    site_src6: u32,
    site_pairs4: u32,
    site_pairs6: u32,
    site_ifaces: u32,
    backend4: u32,
    backend6: u32,
}

/// Which of the sites' sets exist: any interfaces, and IPv4 and IPv6 sources.
#[derive(Clone, Copy)]
struct SiteSets {
    any: bool,
    v4: bool,
    v6: bool,
}

/// The sites' sets (see the module's picture): their sources by family, (interface, source)
/// pairs, their interfaces.
fn add_site_sets(batch: &mut Batch, table: &CStr, sites: &[(String, Cidr)], sets: &Sets) -> io::Result<SiteSets> {
    let mut by_iface: std::collections::BTreeMap<&str, Vec<Cidr>> = std::collections::BTreeMap::new();
    for (iface, cidr) in sites {
        by_iface.entry(iface).or_default().push(*cidr);
    }
    let mut names = Vec::new();
    let (mut pairs4, mut pairs6) = (Vec::new(), Vec::new());
    for (iface, cidrs) in &by_iface {
        let name = ifname_key(iface)?;
        let (v4, v6) = destinations::merged_addresses(cidrs);
        let pair = |lo: Vec<u8>, hi: Vec<u8>| ([name.as_slice(), &lo].concat(), [name.as_slice(), &hi].concat());
        pairs4.extend(v4.iter().map(|&(lo, hi)| pair(lo.to_be_bytes().to_vec(), hi.to_be_bytes().to_vec())));
        pairs6.extend(v6.iter().map(|&(lo, hi)| pair(lo.to_be_bytes().to_vec(), hi.to_be_bytes().to_vec())));
        names.push(name);
    }
    let all: Vec<Cidr> = sites.iter().map(|(_, c)| *c).collect();
    let (src4, src6) = destinations::merged_addresses(&all);
    add_address_sets(batch, table, (&src4, &src6), (c"site_src4", sets.site_src4), (c"site_src6", sets.site_src6));
    if !src4.is_empty() {
        add_concat_interval_set(batch, table, c"site_pairs4", sets.site_pairs4, [(TYPE_IFNAME, IFNAME_LEN as u32), (TYPE_IPADDR, 4)]);
        add_elements(batch, table, c"site_pairs4", sets.site_pairs4, &pairs4);
    }
    if !src6.is_empty() {
        add_concat_interval_set(batch, table, c"site_pairs6", sets.site_pairs6, [(TYPE_IFNAME, IFNAME_LEN as u32), (TYPE_IP6ADDR, 16)]);
        add_elements(batch, table, c"site_pairs6", sets.site_pairs6, &pairs6);
    }
    if !names.is_empty() {
        add_key_set(batch, table, c"site_ifaces", sets.site_ifaces, (TYPE_IFNAME, IFNAME_LEN as u32), &names);
    }
    Ok(SiteSets { any: !names.is_empty(), v4: !src4.is_empty(), v6: !src6.is_empty() })
}

/// An interface name as a set key: its bytes, NUL-padded to IFNAMSIZ.
fn ifname_key(name: &str) -> io::Result<Vec<u8>> {
    if name.is_empty() || name.len() >= IFNAME_LEN || name.contains('\0') {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("`{name}` is not an interface name")));
    }
    let mut key = name.as_bytes().to_vec();
    key.resize(IFNAME_LEN, 0);
    Ok(key)
}

/// Anti-spoofing for sites, first in the `routed` chain: a new TCP connection from a site's
/// source that arrives on another interface, or on a site's interface from an address not
/// its own, is dropped.
fn site_rules(sets: &Sets, sites: SiteSets) -> Vec<RuleSpec> {
    if !sites.any {
        return vec![];
    }
    let mut rules = Vec::new();
    // (family, source offset and length, whether it has sources, its sets)
    let families = [
        (libc::NFPROTO_IPV4, 12, 4, sites.v4, (c"site_src4", sets.site_src4), (c"site_pairs4", sets.site_pairs4)),
        (libc::NFPROTO_IPV6, 8, 16, sites.v6, (c"site_src6", sets.site_src6), (c"site_pairs6", sets.site_pairs6)),
    ];
    for (proto, offset, len, has, (src, src_id), (pairs, pairs_id)) in families {
        let not_its_pair = |r: RuleSpec| {
            r.push(OwnedExpr::Meta(MetaKey::IifName))
                .push(OwnedExpr::Payload(Base::Network, offset, len, Reg::Reg32(4)))
                .push(OwnedExpr::NotIn(pairs, pairs_id, Reg::R1))
                .push(OwnedExpr::Counter)
                .push(OwnedExpr::Verdict(NF_DROP))
        };
        let on_site_iface = ip_tcp(proto).push(OwnedExpr::Meta(MetaKey::IifName)).push(OwnedExpr::Lookup(c"site_ifaces", sets.site_ifaces, Reg::R1));
        if has {
            rules.push(not_its_pair(ip_tcp(proto).push(OwnedExpr::Payload(Base::Network, offset, len, Reg::R1)).push(OwnedExpr::Lookup(
                src,
                src_id,
                Reg::R1,
            ))));
            rules.push(not_its_pair(on_site_iface));
        } else {
            // No site has sources of this family: its interfaces carry none of it.
            rules.push(on_site_iface.push(OwnedExpr::Counter).push(OwnedExpr::Verdict(NF_DROP)));
        }
    }
    rules
}

/// A rule's expressions, owned (their data outlives the batch being written).
#[derive(Default)]
struct RuleSpec {
    exprs: Vec<OwnedExpr>,
}

enum OwnedExpr {
    Meta(MetaKey),
    Cmp(Reg, CmpOp, Vec<u8>),
    Payload(Base, u32, u32, Reg),
    And(Vec<u8>),
    Lookup(&'static CStr, u32, Reg),
    NotIn(&'static CStr, u32, Reg),
    Port(u16),
    Redirect,
    Verdict(u32),
    Counter,
    CtState,
    CtStatus,
    Fib(u32, u32),
    SocketMark,
    RejectTcpReset,
}

impl RuleSpec {
    fn push(mut self, e: OwnedExpr) -> Self {
        self.exprs.push(e);
        self
    }

    fn tcp(self) -> Self {
        self.push(OwnedExpr::Meta(MetaKey::L4Proto)).push(OwnedExpr::Cmp(Reg::R1, CmpOp::Eq, vec![libc::IPPROTO_TCP as u8]))
    }

    fn tcp_dport_into(self, reg: Reg) -> Self {
        self.push(OwnedExpr::Payload(Base::Transport, 2, 2, reg))
    }

    fn redirect_to(self, port: u16) -> Self {
        self.push(OwnedExpr::Counter).push(OwnedExpr::Port(port)).push(OwnedExpr::Redirect)
    }

    fn write(&self, w: &mut Writer) {
        for e in &self.exprs {
            let expr = match e {
                OwnedExpr::Meta(key) => Expr::Meta { key: *key, dreg: Reg::R1 },
                OwnedExpr::Cmp(sreg, op, data) => Expr::Cmp { sreg: *sreg, op: *op, data },
                OwnedExpr::Payload(base, offset, len, dreg) => Expr::Payload { base: *base, offset: *offset, len: *len, dreg: *dreg },
                OwnedExpr::And(mask) => Expr::And { sreg: Reg::R1, dreg: Reg::R1, mask },
                OwnedExpr::Lookup(set, set_id, sreg) => Expr::Lookup { set, set_id: *set_id, sreg: *sreg, invert: false },
                OwnedExpr::NotIn(set, set_id, sreg) => Expr::Lookup { set, set_id: *set_id, sreg: *sreg, invert: true },
                OwnedExpr::Port(port) => {
                    let data = port.to_be_bytes();
                    Expr::Immediate { dreg: Reg::R1, data: &data[..] }.write(w);
                    continue;
                }
                OwnedExpr::Redirect => Expr::Redirect { port: Reg::R1 },
                OwnedExpr::Verdict(code) => Expr::Verdict(*code),
                OwnedExpr::Counter => Expr::Counter,
                OwnedExpr::CtState => Expr::CtState { dreg: Reg::R1 },
                OwnedExpr::CtStatus => Expr::CtStatus { dreg: Reg::R1 },
                OwnedExpr::Fib(flags, result) => Expr::Fib { flags: *flags, result: *result, dreg: Reg::R1 },
                OwnedExpr::SocketMark => Expr::SocketMark { dreg: Reg::R1 },
                OwnedExpr::RejectTcpReset => Expr::RejectTcpReset,
            };
            expr.write(w);
        }
    }
}

fn outbound_rules(rs: &Ruleset, sets: &Sets, v4: bool, v6: bool, protected: bool) -> Vec<RuleSpec> {
    let mut rules = vec![RuleSpec::default()
        .push(OwnedExpr::Meta(MetaKey::Mark))
        .push(OwnedExpr::Cmp(Reg::R1, CmpOp::Eq, rs.bypass_mark.to_ne_bytes().to_vec()))
        .push(OwnedExpr::Verdict(NFT_RETURN))];
    rules.extend(destination_redirects(rs, sets, v4, v6));
    if let Some(mark) = rs.tag_mark {
        rules.push(
            RuleSpec::default()
                .tcp()
                .push(OwnedExpr::Meta(MetaKey::Mark))
                .push(OwnedExpr::And(mark.to_ne_bytes().to_vec()))
                .push(OwnedExpr::Cmp(Reg::R1, CmpOp::Eq, mark.to_ne_bytes().to_vec()))
                .redirect_to(rs.redirect_port),
        );
    }
    if protected {
        // Packets to any of this host's own addresses leave through lo: local callers of
        // protected ports go through idgate too.
        rules.push(
            RuleSpec::default()
                .push(OwnedExpr::Meta(MetaKey::Oif))
                .push(OwnedExpr::Cmp(Reg::R1, CmpOp::Eq, LOOPBACK_IFINDEX.to_ne_bytes().to_vec()))
                .tcp()
                .tcp_dport_into(Reg::R1)
                .push(OwnedExpr::Lookup(c"protected", sets.protected, Reg::R1))
                .redirect_to(rs.redirect_port),
        );
    }
    rules
}

/// `ip daddr . tcp dport @dst4 redirect`, and the IPv6 one: the address in register 1, the
/// port in the 32-bit register after it.
fn destination_redirects(rs: &Ruleset, sets: &Sets, v4: bool, v6: bool) -> Vec<RuleSpec> {
    let mut rules = Vec::new();
    if v4 {
        rules.push(destination_in(false, c"dst4", sets.dst4).redirect_to(rs.redirect_port));
    }
    if v6 {
        rules.push(destination_in(true, c"dst6", sets.dst6).redirect_to(rs.redirect_port));
    }
    rules
}

/// `ip daddr . tcp dport @set` (or `ip6`): the address in register 1, the port in the 32-bit
/// register after it.
fn destination_in(v6: bool, set: &'static CStr, id: u32) -> RuleSpec {
    let (proto, offset, len, port_reg) = if v6 { (libc::NFPROTO_IPV6, 24, 16, Reg::Reg32(4)) } else { (libc::NFPROTO_IPV4, 16, 4, Reg::Reg32(1)) };
    ip_tcp(proto).push(OwnedExpr::Payload(Base::Network, offset, len, Reg::R1)).tcp_dport_into(port_reg).push(OwnedExpr::Lookup(set, id, Reg::R1))
}

/// `meta nfproto <proto> meta l4proto tcp`.
fn ip_tcp(proto: i32) -> RuleSpec {
    RuleSpec::default().push(OwnedExpr::Meta(MetaKey::NfProto)).push(OwnedExpr::Cmp(Reg::R1, CmpOp::Eq, vec![proto as u8])).tcp()
}

/// The `routed` chain: flows routed through this host (from containers, or other machines) to
/// intercepted destinations are redirected like local ones; containers' addresses count only
/// from the interface the host routes them to (a container cannot pass for another network's,
/// nor a machine on another interface for a container).
fn routed_rules(rs: &Ruleset, sets: &Sets, (v4, v6): (bool, bool), (nets4, nets6): (bool, bool)) -> Vec<RuleSpec> {
    let mut rules = vec![RuleSpec::default()
        .push(OwnedExpr::Fib(FIB_F_DADDR, FIB_RESULT_ADDRTYPE))
        .push(OwnedExpr::Cmp(Reg::R1, CmpOp::Eq, RTN_LOCAL.to_ne_bytes().to_vec()))
        .push(OwnedExpr::Verdict(NFT_RETURN))];
    let spoofed = |proto: i32, saddr_offset: u32, len: u32, set: &'static CStr, id: u32| {
        ip_tcp(proto)
            .push(OwnedExpr::Payload(Base::Network, saddr_offset, len, Reg::R1))
            .push(OwnedExpr::Lookup(set, id, Reg::R1))
            .push(OwnedExpr::Fib(FIB_F_SADDR | FIB_F_IIF, FIB_RESULT_OIF))
            .push(OwnedExpr::Cmp(Reg::R1, CmpOp::Eq, 0u32.to_ne_bytes().to_vec()))
            .push(OwnedExpr::Counter)
            .push(OwnedExpr::Verdict(NF_DROP))
    };
    if nets4 {
        rules.push(spoofed(libc::NFPROTO_IPV4, 12, 4, c"nets4", sets.nets4));
    }
    if nets6 {
        rules.push(spoofed(libc::NFPROTO_IPV6, 8, 16, c"nets6", sets.nets6));
    }
    rules.extend(destination_redirects(rs, sets, v4, v6));
    rules
}

/// Every network namespace's loopback device has this index.
pub const LOOPBACK_IFINDEX: u32 = 1;

/// `ct state new tcp dport <capture> socket mark != <bypass> reject with tcp reset`: the
/// capture port is unprivileged, so while idgate is not running any local user could listen
/// there and receive redirected flows (local ones over lo, routed ones on any interface); only
/// sockets carrying the bypass mark (which takes CAP_NET_ADMIN to set) may accept them.
fn capture_guard(rs: &Ruleset) -> RuleSpec {
    let new = 1u32 << 3; // IP_CT_NEW's state bit
    RuleSpec::default()
        .push(OwnedExpr::CtState)
        .push(OwnedExpr::And(new.to_ne_bytes().to_vec()))
        .push(OwnedExpr::Cmp(Reg::R1, CmpOp::Neq, 0u32.to_ne_bytes().to_vec()))
        .tcp()
        .tcp_dport_into(Reg::R1)
        .push(OwnedExpr::Cmp(Reg::R1, CmpOp::Eq, rs.redirect_port.to_be_bytes().to_vec()))
        .push(OwnedExpr::SocketMark)
        .push(OwnedExpr::Cmp(Reg::R1, CmpOp::Neq, rs.bypass_mark.to_ne_bytes().to_vec()))
        .push(OwnedExpr::Counter)
        .push(OwnedExpr::RejectTcpReset)
}

/// `iif != lo tcp dport <capture> ct status & dnat == 0 drop`: from the network, the capture
/// port takes only flows this table redirected (idgate listens on every address there when it
/// serves containers).
fn only_redirected(rs: &Ruleset) -> RuleSpec {
    RuleSpec::default()
        .push(OwnedExpr::Meta(MetaKey::Iif))
        .push(OwnedExpr::Cmp(Reg::R1, CmpOp::Neq, LOOPBACK_IFINDEX.to_ne_bytes().to_vec()))
        .tcp()
        .tcp_dport_into(Reg::R1)
        .push(OwnedExpr::Cmp(Reg::R1, CmpOp::Eq, rs.redirect_port.to_be_bytes().to_vec()))
        .push(OwnedExpr::CtStatus)
        .push(OwnedExpr::And(IPS_DST_NAT.to_ne_bytes().to_vec()))
        .push(OwnedExpr::Cmp(Reg::R1, CmpOp::Eq, 0u32.to_ne_bytes().to_vec()))
        .push(OwnedExpr::Counter)
        .push(OwnedExpr::Verdict(NF_DROP))
}

fn protected_drop(sets: &Sets) -> RuleSpec {
    RuleSpec::default()
        .tcp()
        .tcp_dport_into(Reg::R1)
        .push(OwnedExpr::Lookup(c"protected", sets.protected, Reg::R1))
        .push(OwnedExpr::Meta(MetaKey::Iif))
        .push(OwnedExpr::Cmp(Reg::R1, CmpOp::Neq, LOOPBACK_IFINDEX.to_ne_bytes().to_vec()))
        .push(OwnedExpr::Counter)
        .push(OwnedExpr::Verdict(NF_DROP))
}

fn add_chain(batch: &mut Batch, table: &CStr, chain: &'static CStr, hook: u32, priority: i32, kind: &'static CStr) {
    batch.add(
        Kind::NewChain,
        NLM_F_CREATE,
        NFPROTO_INET,
        || format!("chain {}", chain.to_string_lossy()),
        |w| {
            w.attr_str(NFTA_CHAIN_TABLE, table);
            w.attr_str(NFTA_CHAIN_NAME, chain);
            let h = w.nest(NFTA_CHAIN_HOOK);
            w.attr_be32(NFTA_HOOK_HOOKNUM, hook);
            w.attr_be32(NFTA_HOOK_PRIORITY, priority as u32);
            w.end_nest(h);
            w.attr_be32(NFTA_CHAIN_POLICY, NF_ACCEPT);
            w.attr_str(NFTA_CHAIN_TYPE, kind);
        },
    );
}

fn add_rule(batch: &mut Batch, table: &CStr, chain: &'static CStr, rule: &RuleSpec) {
    batch.add(
        Kind::NewRule,
        NLM_F_CREATE | NLM_F_APPEND,
        NFPROTO_INET,
        || format!("a rule of chain {}", chain.to_string_lossy()),
        |w| {
            w.attr_str(NFTA_RULE_TABLE, table);
            w.attr_str(NFTA_RULE_CHAIN, chain);
            let list = w.nest(NFTA_RULE_EXPRESSIONS);
            rule.write(w);
            w.end_nest(list);
        },
    );
}

/// `type <t1> . <t2>; flags interval`: each field padded to 4 bytes in the key.
fn add_concat_interval_set(batch: &mut Batch, table: &CStr, name: &'static CStr, id: u32, fields: [(u32, u32); 2]) {
    let key = ((fields[0].0 << 6) | fields[1].0, fields.iter().map(|f| f.1.div_ceil(4) * 4).sum());
    add_set(batch, table, (name, id), NFT_SET_INTERVAL | NFT_SET_CONCAT, key, &fields.map(|f| f.1));
}

/// The message that creates set `name`: its flags, key type and length, and for a
/// concatenation the length of each field.
fn add_set(batch: &mut Batch, table: &CStr, (name, id): (&'static CStr, u32), flags: u32, (key_type, key_len): (u32, u32), fields: &[u32]) {
    batch.add(
        Kind::NewSet,
        NLM_F_CREATE,
        NFPROTO_INET,
        || format!("set {}", name.to_string_lossy()),
        |w| {
            w.attr_str(NFTA_SET_TABLE, table);
            w.attr_str(NFTA_SET_NAME, name);
            if flags != 0 {
                w.attr_be32(NFTA_SET_FLAGS, flags);
            }
            w.attr_be32(NFTA_SET_KEY_TYPE, key_type);
            w.attr_be32(NFTA_SET_KEY_LEN, key_len);
            w.attr_be32(NFTA_SET_ID, id);
            if !fields.is_empty() {
                let desc = w.nest(NFTA_SET_DESC);
                let concat = w.nest(NFTA_SET_DESC_CONCAT);
                for len in fields {
                    let field = w.nest(NFTA_LIST_ELEM);
                    w.attr_be32(NFTA_SET_FIELD_LEN, *len);
                    w.end_nest(field);
                }
                w.end_nest(concat);
                w.end_nest(desc);
            }
        },
    );
}

/// `type <key_type>` (no intervals): exact keys of `key_len` bytes.
fn add_key_set(batch: &mut Batch, table: &CStr, name: &'static CStr, id: u32, key: (u32, u32), keys: &[Vec<u8>]) {
    add_set(batch, table, (name, id), 0, key, &[]);
    for chunk in keys.chunks(ELEMENTS_PER_MESSAGE) {
        add_element_message(batch, table, name, id, chunk.len(), |w| {
            for key in chunk {
                let e = w.nest(NFTA_LIST_ELEM);
                super::nft::expr::key(w, NFTA_SET_ELEM_KEY, key);
                w.end_nest(e);
            }
        });
    }
}

/// An element's key and key end: the address then the port (big-endian, padded to 4 bytes).
fn concat_key<A: Copy>(e: &Element<A>, bytes: impl Fn(A) -> Vec<u8>) -> (Vec<u8>, Vec<u8>) {
    let key = |addr: A, port: u16| {
        let mut k = bytes(addr);
        k.extend_from_slice(&port.to_be_bytes());
        k.extend_from_slice(&[0, 0]);
        k
    };
    (key(e.addrs.0, e.ports.0), key(e.addrs.1, e.ports.1))
}

fn add_elements(batch: &mut Batch, table: &CStr, set: &'static CStr, id: u32, elems: &[(Vec<u8>, Vec<u8>)]) {
    for chunk in elems.chunks(ELEMENTS_PER_MESSAGE) {
        add_element_message(batch, table, set, id, chunk.len(), |w| {
            for (key, end) in chunk {
                let e = w.nest(NFTA_LIST_ELEM);
                super::nft::expr::key(w, NFTA_SET_ELEM_KEY, key);
                super::nft::expr::key(w, NFTA_SET_ELEM_KEY_END, end);
                w.end_nest(e);
            }
        });
    }
}

/// `type <key_type>; flags interval` with keys of `key_len` bytes: a range is a start element
/// and an end element (the key after it) flagged as such; a range reaching the last key has
/// no end element. `ranges` are disjoint, in order.
fn add_interval_set(batch: &mut Batch, table: &CStr, name: &'static CStr, id: u32, key: (u32, u32), ranges: &[(Vec<u8>, Option<Vec<u8>>)]) {
    add_set(batch, table, (name, id), NFT_SET_INTERVAL, key, &[]);
    let mut elems: Vec<(&[u8], bool)> = Vec::new();
    for (start, after) in ranges {
        elems.push((start, false));
        if let Some(after) = after {
            elems.push((after, true));
        }
    }
    for chunk in elems.chunks(ELEMENTS_PER_MESSAGE) {
        add_element_message(batch, table, name, id, chunk.len(), |w| {
            for &(key, end) in chunk {
                let e = w.nest(NFTA_LIST_ELEM);
                super::nft::expr::key(w, NFTA_SET_ELEM_KEY, key);
                if end {
                    w.attr_be32(NFTA_SET_ELEM_FLAGS, NFT_SET_ELEM_INTERVAL_END);
                }
                w.end_nest(e);
            }
        });
    }
}

fn add_element_message(batch: &mut Batch, table: &CStr, set: &'static CStr, id: u32, count: usize, elements: impl FnOnce(&mut Writer)) {
    batch.add(
        Kind::NewSetElem,
        NLM_F_CREATE,
        NFPROTO_INET,
        || format!("{count} element(s) of set {}", set.to_string_lossy()),
        |w| {
            w.attr_str(NFTA_SET_ELEM_LIST_TABLE, table);
            w.attr_str(NFTA_SET_ELEM_LIST_SET, set);
            w.attr_be32(NFTA_SET_ELEM_LIST_SET_ID, id);
            let list = w.nest(NFTA_SET_ELEM_LIST_ELEMENTS);
            elements(w);
            w.end_nest(list);
        },
    );
}
