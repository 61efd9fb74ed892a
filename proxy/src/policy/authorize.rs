//! Inbound authorization: which SPIFFE IDs may reach which local ports. Default deny.
use crate::config::{InboundRule, Protocol};
use crate::spiffe::SpiffeId;
use std::net::SocketAddr;

pub struct Authorizer {
    rules: Vec<InboundRule>,
}

impl Authorizer {
    pub fn new(rules: Vec<InboundRule>) -> Self {
        Authorizer { rules }
    }

    /// Allowed if a rule about `dst` lists a pattern matching `id`: for one of this host's
    /// addresses (`local`), the rules without backends covering its port; for another address,
    /// the rules whose backends hold it and whose ports cover its port.
    pub fn allows(&self, dst: &SocketAddr, local: bool, id: &SpiffeId) -> bool {
        self.about(dst, local).any(|r| r.allow.iter().any(|a| a.matches(id)))
    }

    /// Whether a rule names `dst` as a backend behind this host.
    pub fn forwards_to(&self, dst: &SocketAddr) -> bool {
        self.about(dst, false).next().is_some()
    }

    fn about<'a>(&'a self, dst: &'a SocketAddr, local: bool) -> impl Iterator<Item = &'a InboundRule> + 'a {
        self.rules.iter().filter(move |r| {
            r.ports.iter().any(|p| p.contains(dst.port()))
                && if local { r.backends.is_empty() } else { r.backends.iter().any(|c| c.contains(&dst.ip())) }
        })
    }

    /// Whether any rule about this host covers `port` (in strict mode: only idgate may reach it).
    pub fn covers(&self, port: u16) -> bool {
        self.rules.iter().filter(|r| r.backends.is_empty()).any(|r| r.ports.iter().any(|p| p.contains(port)))
    }

    /// How the inbound side treats flows to `port`: HTTP if any rule covering it says so.
    pub fn protocol(&self, port: u16) -> Protocol {
        let http = self.rules.iter().any(|r| r.protocol == Protocol::Http && r.ports.iter().any(|p| p.contains(port)));
        if http {
            Protocol::Http
        } else {
            Protocol::Tcp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn exact_prefix_and_default_deny() {
        let c = crate::config::load::parse(
            Path::new("t.toml"),
            "trust_domain = \"t\"\n[[inbound]]\nports = [8080]\nallow = [\"spiffe://t/web\", \"spiffe://t/ops/*\"]\n",
        )
        .unwrap();
        let a = Authorizer::new(c.inbound);
        let id = |s: &str| SpiffeId::parse(s).unwrap();
        let at = |port: u16| SocketAddr::from(([10, 0, 0, 1], port));
        assert!(a.allows(&at(8080), true, &id("spiffe://t/web")));
        assert!(a.allows(&at(8080), true, &id("spiffe://t/ops/deploy")));
        assert!(!a.allows(&at(8080), true, &id("spiffe://t/ops")));
        assert!(!a.allows(&at(8080), true, &id("spiffe://t/webx")));
        assert!(!a.allows(&at(9090), true, &id("spiffe://t/web")));
        assert!(!a.allows(&at(8080), false, &id("spiffe://t/web")), "a rule without backends is about this host only");
    }

    #[test]
    fn a_backend_rule_is_about_its_backends_only() {
        let c = crate::config::load::parse(
            Path::new("t.toml"),
            "trust_domain = \"t\"\n[[inbound]]\nports = [9000]\nallow = [\"spiffe://t/local\"]\n\
             [[inbound]]\nports = [9000]\nallow = [\"spiffe://t/site\"]\nbackends = [\"192.168.20.0/24\"]\n",
        )
        .unwrap();
        let a = Authorizer::new(c.inbound);
        let id = |s: &str| SpiffeId::parse(s).unwrap();
        let backend: SocketAddr = "192.168.20.5:9000".parse().unwrap();
        let local: SocketAddr = "10.0.0.1:9000".parse().unwrap();
        assert!(
            a.forwards_to(&backend) && !a.forwards_to(&"192.168.21.5:9000".parse().unwrap()) && !a.forwards_to(&"192.168.20.5:9001".parse().unwrap())
        );
        assert!(a.allows(&backend, false, &id("spiffe://t/site")));
        assert!(!a.allows(&backend, false, &id("spiffe://t/local")), "the local rule does not reach behind the gateway");
        assert!(!a.allows(&local, true, &id("spiffe://t/site")), "nor the backend rule this host's own port");
        assert!(a.allows(&local, true, &id("spiffe://t/local")));
        assert!(a.covers(9000));
    }
}
