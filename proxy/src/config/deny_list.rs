//! The deny list as written: inline in the config (`[revocation] ids`, `serials`) and in a
//! watched file that the fleet distributes and `idgate revoke` appends to: one entry per line,
//! `#` starts a comment.
use super::AllowPattern;
use std::path::{Path, PathBuf};

/// One entry of the deny list, as written in the file or given to `idgate revoke`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Id(String),
    Serial(String),
}

impl Entry {
    /// A SPIFFE ID (or prefix `spiffe://td/ns/*`), or a serial in hex (colons allowed, as
    /// openssl prints them).
    pub fn parse(text: &str) -> Result<Entry, EntryError> {
        let text = text.trim();
        if text.starts_with("spiffe://") {
            AllowPattern::try_from(text.to_string()).map_err(EntryError::Pattern)?;
            return Ok(Entry::Id(text.to_string()));
        }
        let hex: String = text.chars().filter(|c| *c != ':').collect::<String>().to_ascii_lowercase();
        if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(EntryError::Neither(text.to_string()));
        }
        Ok(Entry::Serial(normalize_serial(&hex)))
    }

    pub fn text(&self) -> &str {
        match self {
            Entry::Id(s) | Entry::Serial(s) => s,
        }
    }
}

/// Why a deny-list entry was not taken.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// A SPIFFE ID or prefix that does not parse.
    #[error("{0}")]
    Pattern(String),
    #[error("`{0}` is neither a SPIFFE ID (spiffe://…) nor a certificate serial in hex")]
    Neither(String),
}

/// Why a deny list was not read: the file, and the line where it says which.
#[derive(Debug, thiserror::Error)]
pub enum DenyListError {
    #[error("{}: cannot read: {source}", path.display())]
    Unreadable { path: PathBuf, source: std::io::Error },
    #[error("{}:{line}: {source}", path.display())]
    Entry { path: PathBuf, line: usize, source: EntryError },
}

/// Serials as the trail and `idgate status` print them: lowercase hex, no leading zero bytes.
pub fn normalize_serial(hex: &str) -> String {
    let trimmed = hex.trim_start_matches('0');
    let even = if trimmed.len() % 2 == 1 { format!("0{trimmed}") } else { trimmed.to_string() };
    if even.is_empty() {
        "00".into()
    } else {
        even
    }
}

/// The entries of a deny-list file; a missing file is an empty list. Errors name the line.
pub fn read_file(path: &Path) -> Result<Vec<Entry>, DenyListError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(DenyListError::Unreadable { path: path.into(), source }),
    };
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        entries.push(Entry::parse(line).map_err(|source| DenyListError::Entry { path: path.into(), line: i + 1, source })?);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_entries_name_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("revoked");
        std::fs::write(&path, "# fleet deny list\nspiffe://t/a  # why\n\nnot-hex\n").unwrap();
        let e = read_file(&path).unwrap_err().to_string();
        assert!(e.ends_with("revoked:4: `not-hex` is neither a SPIFFE ID (spiffe://…) nor a certificate serial in hex"), "{e}");
        assert!(read_file(&dir.path().join("absent")).unwrap().is_empty());
    }
}
