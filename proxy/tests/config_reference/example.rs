//! The key paths an annotated example config shows, set or commented out: `key = ...` and
//! `# key = ...` lines under the `[table]` or `[[array]]` header above them (a commented-out
//! header counts), and the keys of inline tables (`tls = { server_name = ..., port = 443 }`).
use std::collections::BTreeSet;

pub fn paths(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut table: Vec<String> = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        let line = line.strip_prefix('#').map(str::trim_start).unwrap_or(line);
        if let Some(header) = header(line) {
            table = header.split('.').map(|s| s.trim().to_string()).collect();
            out.insert(table.join("."));
            continue;
        }
        let Some((key, value)) = line.split_once('=') else { continue };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
            continue;
        }
        let path: Vec<String> = table.iter().cloned().chain(key.split('.').map(String::from)).collect();
        out.insert(path.join("."));
        // The value up to a trailing comment, if it parses: an inline table's keys count too.
        if let Ok(doc) = format!("v = {}", strip_comment(value)).parse::<toml::Table>() {
            if let Some(toml::Value::Table(inline)) = doc.get("v") {
                for k in inline.keys() {
                    out.insert(format!("{}.{k}", path.join(".")));
                }
            }
        }
    }
    out
}

/// `x` of a `[x]` or `[[x]]` line (with an optional trailing comment).
fn header(line: &str) -> Option<&str> {
    let rest = line.strip_prefix('[')?;
    let (inner, after) = match rest.strip_prefix('[') {
        Some(r) => r.split_once("]]")?,
        None => rest.split_once(']')?,
    };
    let after = after.trim_start();
    let name_like = !inner.is_empty() && inner.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    (name_like && (after.is_empty() || after.starts_with('#'))).then_some(inner)
}

/// A value without its trailing `# comment` (a `#` inside a string stays).
fn strip_comment(value: &str) -> &str {
    let mut in_string = false;
    for (i, c) in value.char_indices() {
        match c {
            '"' => in_string = !in_string,
            '#' if !in_string => return &value[..i],
            _ => {}
        }
    }
    value
}
