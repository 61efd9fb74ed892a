//! The deny list: SPIFFE IDs (exact, or prefixes ending in `/*`) and certificate serials that
//! no flow may use any more, whatever the policy allows. Given inline in the config
//! (`[revocation] ids`, `serials`) and in a watched file that the fleet distributes and
//! `idgate revoke` appends to: one entry per line, `#` starts a comment.
use crate::config::AllowPattern;
use crate::credential::PeerChain;
use crate::spiffe::SpiffeId;
use std::collections::HashSet;
use std::path::Path;

/// The deny list in force, swapped whole by a reload or a change of its file. One handle is
/// shared by the policy (`Live`) and the TLS verifiers, which consult it at every handshake.
pub type DenyList = arc_swap::ArcSwap<Revocations>;

#[derive(Debug, Default)]
pub struct Revocations {
    ids: Vec<AllowPattern>,
    serials: HashSet<String>,
}

/// One entry of the deny list, as written in the file or given to `idgate revoke`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Id(String),
    Serial(String),
}

impl Entry {
    /// A SPIFFE ID (or prefix `spiffe://td/ns/*`), or a serial in hex (colons allowed, as
    /// openssl prints them).
    pub fn parse(text: &str) -> Result<Entry, String> {
        let text = text.trim();
        if text.starts_with("spiffe://") {
            AllowPattern::try_from(text.to_string())?;
            return Ok(Entry::Id(text.to_string()));
        }
        let hex: String = text.chars().filter(|c| *c != ':').collect::<String>().to_ascii_lowercase();
        if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!("`{text}` is neither a SPIFFE ID (spiffe://…) nor a certificate serial in hex"));
        }
        Ok(Entry::Serial(normalize_serial(&hex)))
    }

    pub fn text(&self) -> &str {
        match self {
            Entry::Id(s) | Entry::Serial(s) => s,
        }
    }
}

/// Serials as the trail and `idgate status` print them: lowercase hex, no leading zero bytes.
fn normalize_serial(hex: &str) -> String {
    let trimmed = hex.trim_start_matches('0');
    let even = if trimmed.len() % 2 == 1 { format!("0{trimmed}") } else { trimmed.to_string() };
    if even.is_empty() {
        "00".into()
    } else {
        even
    }
}

/// The entries of a deny-list file; a missing file is an empty list. Errors name the line.
pub fn read_file(path: &Path) -> Result<Vec<Entry>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: cannot read: {e}", path.display())),
    };
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        entries.push(Entry::parse(line).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))?);
    }
    Ok(entries)
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

    #[test]
    fn bad_entries_name_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("revoked");
        std::fs::write(&path, "# fleet deny list\nspiffe://t/a  # why\n\nnot-hex\n").unwrap();
        let e = read_file(&path).unwrap_err();
        assert!(e.ends_with("revoked:4: `not-hex` is neither a SPIFFE ID (spiffe://…) nor a certificate serial in hex"), "{e}");
        assert!(read_file(&dir.path().join("absent")).unwrap().is_empty());
    }
}
