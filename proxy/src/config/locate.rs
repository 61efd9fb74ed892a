//! Where an entry of the config file is written, found by its path (`ca.key`,
//! `outbound[2].tls`) in the file's syntax tree: a message about it points at the entry itself,
//! never at a comment or another table that happens to contain the same words.
use toml_edit::{ArrayOfTables, ImDocument, InlineTable, Item, Table, Value};

/// One step of a path: a key, or the n-th element of an array (`[[outbound]]` tables too).
#[derive(Clone, Copy, Debug)]
pub enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

pub use Step::{Index, Key};

/// A parsed config file, kept for looking entries up.
pub struct Locator<'a> {
    doc: Option<ImDocument<&'a str>>,
}

/// What a path walks through.
enum Node<'d> {
    Table(&'d Table),
    Inline(&'d InlineTable),
    Tables(&'d ArrayOfTables),
    Value(&'d Value),
}

impl<'d> Node<'d> {
    fn of(item: &'d Item) -> Option<Self> {
        match item {
            Item::None => None,
            Item::Table(t) => Some(Node::Table(t)),
            Item::ArrayOfTables(a) => Some(Node::Tables(a)),
            Item::Value(Value::InlineTable(t)) => Some(Node::Inline(t)),
            Item::Value(v) => Some(Node::Value(v)),
        }
    }

    fn of_value(value: &'d Value) -> Self {
        match value {
            Value::InlineTable(t) => Node::Inline(t),
            v => Node::Value(v),
        }
    }

    /// Where it starts in the file: a table's header, a value's first character.
    fn start(&self) -> Option<usize> {
        let span = match self {
            Node::Table(t) => t.span(),
            Node::Inline(t) => t.span(),
            Node::Tables(a) => a.get(0).and_then(Table::span),
            Node::Value(v) => v.span(),
        };
        span.map(|s| s.start)
    }

    fn step(&self, step: Step<'_>) -> Option<Node<'d>> {
        match (step, self) {
            (Key(k), Node::Table(t)) => Node::of(t.get(key_in(t.iter().map(|(k, _)| k).collect(), k)?)?),
            (Key(k), Node::Inline(t)) => Some(Node::of_value(t.get(key_in(t.iter().map(|(k, _)| k).collect(), k)?)?)),
            (Index(i), Node::Tables(a)) => a.get(i).map(Node::Table),
            (Index(i), Node::Value(Value::Array(a))) => a.get(i).map(Node::of_value),
            _ => None,
        }
    }
}

/// The key as the file spells it: exactly, or else in another case (header names are
/// case-insensitive, and the config keeps them lowercase).
fn key_in<'k>(keys: Vec<&'k str>, wanted: &str) -> Option<&'k str> {
    keys.iter().find(|k| **k == wanted).or_else(|| keys.iter().find(|k| k.eq_ignore_ascii_case(wanted))).copied()
}

impl<'a> Locator<'a> {
    pub fn new(text: &'a str) -> Self {
        Locator { doc: ImDocument::parse(text).ok() }
    }

    /// The byte offset of the deepest part of `path` the file has: a value where it is
    /// written, a table at its header. `None` when not even the path's first key is in the
    /// file (the entry has its default).
    pub fn offset(&self, path: &[Step<'_>]) -> Option<usize> {
        let mut node = Node::Table(self.doc.as_ref()?.as_table());
        let mut found = None;
        for step in path {
            let Some(next) = node.step(*step) else { break };
            found = next.start().or(found);
            node = next;
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# An example: [[inbound]] ports = [1]; tag_mark = 0x1
trust_domain = "example.org"
# peer_timeout = "1s"

[tunnel]
peer_timeout = "0s"

[[inbound]]
ports = [80]

[[inbound]]
ports = []

[[http_rule]]
set = { Authorization = "Bearer x", x-env = "y" }
"#;

    fn line(offset: Option<usize>) -> Option<usize> {
        offset.map(|o| crate::config::position_of(TEXT, o).0)
    }

    #[test]
    fn finds_entries_not_comments() {
        let at = Locator::new(TEXT);
        assert_eq!(line(at.offset(&[Key("tunnel"), Key("peer_timeout")])), Some(6));
        assert_eq!(line(at.offset(&[Key("inbound"), Index(1)])), Some(11));
        assert_eq!(line(at.offset(&[Key("inbound"), Index(1), Key("ports")])), Some(12));
        assert_eq!(line(at.offset(&[Key("http_rule"), Index(0), Key("set"), Key("authorization")])), Some(15));
        assert_eq!(line(at.offset(&[Key("trust_domain")])), Some(2));
    }

    #[test]
    fn an_entry_left_at_its_default_points_at_what_holds_it_or_nowhere() {
        let at = Locator::new(TEXT);
        assert_eq!(line(at.offset(&[Key("tunnel"), Key("max_handshakes")])), Some(5));
        assert_eq!(at.offset(&[Key("intercept"), Key("tag_mark")]), None);
        assert_eq!(line(at.offset(&[Key("inbound"), Index(7)])), Some(8));
    }
}
