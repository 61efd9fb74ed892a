//! The deny list in force: SPIFFE IDs (exact, or prefixes ending in `/*`) and certificate
//! serials that no flow may use any more, whatever the policy allows, checked at every
//! handshake and against every open flow (its entries come from `config::deny_list`).
use crate::config::deny_list::{normalize_serial, Entry};
use crate::config::AllowPattern;
use crate::credential::PeerChain;
use crate::spiffe::SpiffeId;
use std::collections::HashSet;

/// The deny list in force, swapped whole by a reload or a change of its file. One handle is
/// shared by the policy (`Live`) and the TLS verifiers, which consult it at every handshake.
pub type DenyList = arc_swap::ArcSwap<Revocations>;

#[derive(Debug, Default)]
pub struct Revocations {
    ids: Vec<AllowPattern>,
    serials: HashSet<String>,
}

impl Revocations {
    pub fn new(entries: impl IntoIterator<Item = Entry>) -> Self {
        let mut r = Revocations::default();
        for e in entries {
            match e {
                Entry::Id(s) => r.ids.push(AllowPattern::try_from(s).expect("checked by Entry::parse")),
                Entry::Serial(s) => {
                    r.serials.insert(s);
                }
            }
        }
        r
    }

    pub fn len(&self) -> usize {
        self.ids.len() + self.serials.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn id(&self, id: &SpiffeId) -> bool {
        self.ids.iter().any(|p| p.matches(id))
    }

    pub fn serial(&self, serial: &str) -> bool {
        !self.serials.is_empty() && self.serials.contains(&normalize_serial(&serial.to_ascii_lowercase()))
    }

    /// Why a flow or connection with this identity and certificate serial must stop, if it must.
    pub fn why(&self, id: Option<&SpiffeId>, serial: Option<&str>) -> Option<String> {
        if let Some(id) = id.filter(|id| self.id(id)) {
            return Some(format!("{id} is revoked"));
        }
        serial.filter(|s| self.serial(s)).map(|s| format!("certificate serial {} is revoked", normalize_serial(s)))
    }

    /// Why a peer with this chain must be refused or cut off, if it must: its ID, any
    /// certificate of the chain, or the host a CA of the chain was issued for.
    pub fn why_chain(&self, chain: &PeerChain) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        let (leaf, cas) = chain.serials.split_first()?;
        if let Some(why) = self.why(Some(&chain.id), Some(leaf)) {
            return Some(why);
        }
        if let Some(ca) = cas.iter().find(|s| self.serial(s)) {
            return Some(format!("CA certificate serial {} in the chain of {} is revoked", normalize_serial(ca), chain.id));
        }
        chain.hosts.iter().find(|h| self.id(h)).map(|host| format!("{host} is revoked: its CA issued {}", chain.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_prefixes_and_serials_in_any_spelling() {
        let r = Revocations::new(
            ["spiffe://t/app/mallory", "spiffe://t/ci/*", "00:A1:b2", "0ff"].iter().map(|e| Entry::parse(e).unwrap()).collect::<Vec<_>>(),
        );
        let id = |s: &str| SpiffeId::parse(s).unwrap();
        assert!(r.id(&id("spiffe://t/app/mallory")));
        assert!(!r.id(&id("spiffe://t/app/mallory2")));
        assert!(r.id(&id("spiffe://t/ci/runner")));
        assert!(!r.id(&id("spiffe://t/ci")));
        assert!(r.serial("a1b2") && r.serial("00a1b2") && r.serial("0ff") && r.serial("0FF"));
        assert!(!r.serial("a1b3"));
        assert_eq!(r.why(Some(&id("spiffe://t/app/alice")), Some("a1b2")).unwrap(), "certificate serial a1b2 is revoked");
        assert!(r.why(Some(&id("spiffe://t/app/alice")), Some("01")).is_none());
    }

    #[test]
    fn a_chain_is_refused_for_its_id_any_serial_or_its_cas_host() {
        let chain = PeerChain {
            id: SpiffeId::parse("spiffe://t/app/alice").unwrap(),
            serials: vec!["00c1".into(), "0a0b".into()],
            hosts: vec![SpiffeId::parse("spiffe://t/idgate/host/a").unwrap()],
        };
        let why = |entries: &[&str]| Revocations::new(entries.iter().map(|e| Entry::parse(e).unwrap()).collect::<Vec<_>>()).why_chain(&chain);
        assert_eq!(why(&[]), None);
        assert_eq!(why(&["spiffe://t/app/bob", "ff"]), None);
        assert_eq!(why(&["spiffe://t/app/*"]).unwrap(), "spiffe://t/app/alice is revoked");
        assert_eq!(why(&["c1"]).unwrap(), "certificate serial c1 is revoked");
        assert_eq!(why(&["a0b"]).unwrap(), "CA certificate serial 0a0b in the chain of spiffe://t/app/alice is revoked");
        assert_eq!(why(&["spiffe://t/idgate/host/a"]).unwrap(), "spiffe://t/idgate/host/a is revoked: its CA issued spiffe://t/app/alice");
    }
}
