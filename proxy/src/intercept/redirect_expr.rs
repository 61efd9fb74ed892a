//! The nftables `redir` expression, which the nftnl crate does not wrap.
use nftnl::expr::{Expression, Register};
use nftnl::nftnl_sys as sys;
use nftnl::Rule;
use std::ptr::NonNull;

/// `redirect to :<port>`, where the port was loaded into `port_register` (network byte order).
pub struct Redirect {
    pub port_register: Register,
}

impl Expression for Redirect {
    fn to_expr(&self, _rule: &Rule) -> NonNull<sys::nftnl_expr> {
        // SAFETY: allocating and configuring a libnftnl expression; ownership goes to the rule.
        unsafe {
            let expr = sys::nftnl_expr_alloc(c"redir".as_ptr());
            let expr = NonNull::new(expr).expect("libnftnl out of memory");
            sys::nftnl_expr_set_u32(expr.as_ptr(), sys::NFTNL_EXPR_REDIR_REG_PROTO_MIN as u16, self.port_register.to_raw());
            expr
        }
    }
}
