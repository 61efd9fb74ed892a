//! Binding idgate's listeners: each worker's capture (IPv4, and IPv6 when the host has it) and
//! tunnel listeners, and the admin listener. A listener the service manager handed back (see
//! `fdstore`) is adopted instead of bound; a new one is handed to its store. Before binding
//! anew, a taken port (also one taken by another idgate, which SO_REUSEPORT alone would let
//! in) fails the start, except where this process takes over (an upgrade's successor, or a
//! restart that got its listeners back).
use crate::control::fdstore::{Inherited, Owned};
use crate::runtime::workers;
use anyhow::Result;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};

pub struct Binder {
    inherited: Inherited,
    pub owned: Owned,
    /// An upgrade's successor hands its listeners to the store only once it took over (until
    /// then a failure must leave nothing behind in the old process's SO_REUSEPORT groups).
    pending: Option<Vec<(String, TcpListener)>>,
    mark: u32,
    takeover: bool,
}

impl Binder {
    pub fn new(mark: u32, takeover: bool) -> Binder {
        Binder { inherited: Inherited::from_env(), owned: Owned::default(), pending: takeover.then(Vec::new), mark, takeover }
    }

    /// Whether a listener on `addr` must not exist yet.
    fn must_be_free(&self) -> bool {
        !self.takeover && self.inherited.is_empty()
    }

    fn listener(&mut self, role: &str, addr: SocketAddr, what: &str) -> Result<TcpListener> {
        if let Some(l) = self.inherited.take(role, addr, &mut self.owned) {
            return Ok(l);
        }
        let l = workers::bind_shared(addr, what, self.mark)?;
        match &mut self.pending {
            Some(pending) => pending.push((role.to_string(), l.try_clone()?)),
            None => self.owned.store(role, &l),
        }
        Ok(l)
    }

    /// Every worker's listeners. With `routed`, the capture port also listens on every address:
    /// flows routed through this host (from containers) are redirected to the address of the
    /// interface they came in on (the table lets only redirected ones in).
    pub fn workers(&mut self, count: usize, outbound_port: u16, inbound: SocketAddr, routed: bool) -> Result<Vec<workers::Listeners>> {
        let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, outbound_port));
        let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, outbound_port));
        if self.must_be_free() {
            workers::ensure_free(v4, "outbound")?;
            workers::ensure_free(inbound, "inbound")?;
        }
        let with_v6 = match workers::ensure_free(v6, "outbound") {
            Ok(()) => true,
            Err(_) if !self.must_be_free() => true, // ours: the old idgate's, or handed back
            Err(e) if e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::AddrInUse) => return Err(e),
            Err(_) => false, // no IPv6 loopback on this host
        };
        let mut all = Vec::with_capacity(count);
        for i in 0..count {
            let mut outbound = vec![self.listener(&format!("out4-{i}"), v4, "outbound")?];
            if with_v6 {
                outbound.push(self.listener(&format!("out6-{i}"), v6, "outbound")?);
            }
            if routed {
                outbound.push(self.listener(&format!("routed4-{i}"), SocketAddr::from((Ipv4Addr::UNSPECIFIED, outbound_port)), "routed outbound")?);
                if with_v6 {
                    outbound.push(self.listener(
                        &format!("routed6-{i}"),
                        SocketAddr::from((Ipv6Addr::UNSPECIFIED, outbound_port)),
                        "routed outbound",
                    )?);
                }
            }
            all.push(workers::Listeners { outbound, inbound: self.listener(&format!("in-{i}"), inbound, "inbound")? });
        }
        Ok(all)
    }

    /// The admin listener; shared with an upgrade's successor (SO_REUSEPORT) until the handover.
    pub fn admin(&mut self, addr: SocketAddr) -> Result<TcpListener> {
        if self.must_be_free() {
            workers::ensure_free(addr, "admin")?;
        }
        self.listener("admin", addr, "admin")
    }

    /// Done binding: stored listeners nothing adopted are closed.
    pub fn finish(&mut self) {
        std::mem::take(&mut self.inherited).discard_rest();
    }

    /// An upgrade's successor, after the handover: its listeners go to the store now.
    pub fn store_pending(&mut self) {
        for (role, l) in self.pending.take().unwrap_or_default() {
            self.owned.store(&role, &l);
        }
    }
}
