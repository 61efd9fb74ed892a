//! Inbound authorization: which SPIFFE IDs may reach which local ports. Default deny.
use crate::config::{InboundRule, Protocol};
use crate::spiffe::SpiffeId;

pub struct Authorizer {
    rules: Vec<InboundRule>,
}

impl Authorizer {
    pub fn new(rules: Vec<InboundRule>) -> Self {
        Authorizer { rules }
    }

    /// Allowed if any rule covering `port` lists a pattern matching `id`.
    pub fn allows(&self, port: u16, id: &SpiffeId) -> bool {
        self.rules.iter().filter(|r| r.ports.iter().any(|p| p.contains(port))).any(|r| r.allow.iter().any(|a| a.matches(id)))
    }

    /// Whether any rule covers `port` (in strict mode: only idgate may reach it).
    pub fn covers(&self, port: u16) -> bool {
        self.rules.iter().any(|r| r.ports.iter().any(|p| p.contains(port)))
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
        assert!(a.allows(8080, &id("spiffe://t/web")));
        assert!(a.allows(8080, &id("spiffe://t/ops/deploy")));
        assert!(!a.allows(8080, &id("spiffe://t/ops")));
        assert!(!a.allows(8080, &id("spiffe://t/webx")));
        assert!(!a.allows(9090, &id("spiffe://t/web")));
    }
}
