//! The nf_tables expressions idgate's tables use, written as the kernel parses them
//! (`include/uapi/linux/netfilter/nf_tables.h`).
use super::msg::Writer;
use std::ffi::CStr;

/// 128-bit register 1 (the 32-bit registers 0-3); `Reg32(n)` names one 32-bit register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reg {
    Verdict,
    R1,
    Reg32(u32),
}

impl Reg {
    fn raw(self) -> u32 {
        match self {
            Reg::Verdict => 0,
            Reg::R1 => 1,
            Reg::Reg32(n) => 8 + n,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub enum MetaKey {
    Mark = 3,
    Iif = 4,
    Oif = 5,
    IifName = 6,
    NfProto = 15,
    L4Proto = 16,
}

#[derive(Debug, Clone, Copy)]
pub enum CmpOp {
    Eq = 0,
    Neq = 1,
}

#[derive(Debug, Clone, Copy)]
pub enum Base {
    Network = 1,
    Transport = 2,
}

pub const NF_DROP: u32 = 0;
pub const NF_ACCEPT: u32 = 1;
pub const NFT_RETURN: u32 = -5i32 as u32;
const NFT_CT_STATE: u32 = 0;
const NFT_CT_STATUS: u32 = 2;
const NFT_SOCKET_MARK: u32 = 1;
const NFT_REJECT_TCP_RST: u32 = 1;
const NFT_LOOKUP_F_INV: u32 = 1;
pub const FIB_F_SADDR: u32 = 1;
pub const FIB_F_DADDR: u32 = 2;
pub const FIB_F_IIF: u32 = 8;
pub const FIB_RESULT_OIF: u32 = 1;
pub const FIB_RESULT_ADDRTYPE: u32 = 3;
/// `RTN_LOCAL`: an address of this host.
pub const RTN_LOCAL: u32 = 2;
/// `IPS_DST_NAT`: the connection's destination was rewritten (a redirect).
pub const IPS_DST_NAT: u32 = 1 << 5;

pub enum Expr<'a> {
    Meta {
        key: MetaKey,
        dreg: Reg,
    },
    Cmp {
        sreg: Reg,
        op: CmpOp,
        data: &'a [u8],
    },
    Payload {
        base: Base,
        offset: u32,
        len: u32,
        dreg: Reg,
    },
    /// `dreg = (sreg & mask) ^ 0`.
    And {
        sreg: Reg,
        dreg: Reg,
        mask: &'a [u8],
    },
    Lookup {
        set: &'a CStr,
        set_id: u32,
        sreg: Reg,
        /// Matches when the key is *not* in the set.
        invert: bool,
    },
    Immediate {
        dreg: Reg,
        data: &'a [u8],
    },
    Verdict(u32),
    /// Redirect to the local port held (big-endian) in `port`.
    Redirect {
        port: Reg,
    },
    Counter,
    CtState {
        dreg: Reg,
    },
    /// The connection's status bits (`IPS_*`, host order).
    CtStatus {
        dreg: Reg,
    },
    /// A route lookup: `flags` say which address and interface (`FIB_F_*`), `result` what to
    /// load (`FIB_RESULT_*`).
    Fib {
        flags: u32,
        result: u32,
        dreg: Reg,
    },
    SocketMark {
        dreg: Reg,
    },
    RejectTcpReset,
}

const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;

impl Expr<'_> {
    pub fn write(&self, w: &mut Writer) {
        let elem = w.nest(NFTA_LIST_ELEM);
        w.attr_str(NFTA_EXPR_NAME, self.name());
        let data = w.nest(NFTA_EXPR_DATA);
        match *self {
            Expr::Meta { key, dreg } => {
                w.attr_be32(1, dreg.raw());
                w.attr_be32(2, key as u32);
            }
            Expr::Cmp { sreg, op, data } => {
                w.attr_be32(1, sreg.raw());
                w.attr_be32(2, op as u32);
                value(w, 3, data);
            }
            Expr::Payload { base, offset, len, dreg } => {
                w.attr_be32(1, dreg.raw());
                w.attr_be32(2, base as u32);
                w.attr_be32(3, offset);
                w.attr_be32(4, len);
            }
            Expr::And { sreg, dreg, mask } => {
                w.attr_be32(1, sreg.raw());
                w.attr_be32(2, dreg.raw());
                w.attr_be32(3, mask.len() as u32);
                value(w, 4, mask);
                value(w, 5, &[0u8; 16][..mask.len()]);
            }
            Expr::Lookup { set, set_id, sreg, invert } => {
                w.attr_str(1, set);
                w.attr_be32(2, sreg.raw());
                w.attr_be32(4, set_id);
                if invert {
                    w.attr_be32(5, NFT_LOOKUP_F_INV);
                }
            }
            Expr::Immediate { dreg, data } => {
                w.attr_be32(1, dreg.raw());
                value(w, 2, data);
            }
            Expr::Verdict(code) => {
                w.attr_be32(1, Reg::Verdict.raw());
                let d = w.nest(2);
                let v = w.nest(NFTA_DATA_VERDICT);
                w.attr_be32(1, code);
                w.end_nest(v);
                w.end_nest(d);
            }
            Expr::Redirect { port } => w.attr_be32(1, port.raw()),
            Expr::Counter => {}
            Expr::CtState { dreg } => {
                w.attr_be32(1, dreg.raw());
                w.attr_be32(2, NFT_CT_STATE);
            }
            Expr::CtStatus { dreg } => {
                w.attr_be32(1, dreg.raw());
                w.attr_be32(2, NFT_CT_STATUS);
            }
            Expr::Fib { flags, result, dreg } => {
                w.attr_be32(1, dreg.raw());
                w.attr_be32(2, result);
                w.attr_be32(3, flags);
            }
            Expr::SocketMark { dreg } => {
                w.attr_be32(1, NFT_SOCKET_MARK);
                w.attr_be32(2, dreg.raw());
            }
            Expr::RejectTcpReset => w.attr_be32(1, NFT_REJECT_TCP_RST),
        }
        w.end_nest(data);
        w.end_nest(elem);
    }

    fn name(&self) -> &'static CStr {
        match self {
            Expr::Meta { .. } => c"meta",
            Expr::Cmp { .. } => c"cmp",
            Expr::Payload { .. } => c"payload",
            Expr::And { .. } => c"bitwise",
            Expr::Lookup { .. } => c"lookup",
            Expr::Immediate { .. } | Expr::Verdict(_) => c"immediate",
            Expr::Redirect { .. } => c"redir",
            Expr::Counter => c"counter",
            Expr::CtState { .. } | Expr::CtStatus { .. } => c"ct",
            Expr::Fib { .. } => c"fib",
            Expr::SocketMark { .. } => c"socket",
            Expr::RejectTcpReset => c"reject",
        }
    }
}

/// `NFTA_*_DATA { NFTA_DATA_VALUE bytes }`.
fn value(w: &mut Writer, kind: u16, bytes: &[u8]) {
    let at = w.nest(kind);
    w.attr(NFTA_DATA_VALUE, bytes);
    w.end_nest(at);
}

/// A set element's key (or key end): `NFTA_SET_ELEM_KEY { NFTA_DATA_VALUE bytes }`.
pub fn key(w: &mut Writer, kind: u16, bytes: &[u8]) {
    value(w, kind, bytes)
}
