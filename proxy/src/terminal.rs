//! Text that a workload or a peer chose (an exe path, a refusal's detail) made safe for an
//! operator's terminal: control characters are shown escaped, never sent raw, so they cannot
//! recolour, rewrite or hide what the operator reads.
use std::fmt::Write;

/// JSON text (one record or document) with DEL and the C1 controls (U+0080 to U+009F) escaped
/// too: serde_json escapes only the C0 controls. Outside strings JSON is plain ASCII, and
/// inside one `\u00XX` decodes to the same character, so the JSON means what it meant.
pub fn escape_json(json: String) -> String {
    // In UTF-8, DEL is 0x7f and every C1 control starts with 0xc2.
    if memchr::memchr2(0x7f, 0xc2, json.as_bytes()).is_none() {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 32);
    for c in json.chars() {
        if ('\u{7f}'..='\u{9f}').contains(&c) {
            let _ = write!(out, "\\u{:04x}", c as u32); // writing to a String cannot fail
        } else {
            out.push(c);
        }
    }
    out
}

/// Plain text for a table cell or a line: every control character (C0, DEL, C1, and so also
/// newlines) as a Rust-style escape (`\u{1b}`).
pub fn escape_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            let _ = write!(out, "{}", c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "/tmp/\u{1b}[2J\u{7}red\u{7f}\u{9b}31m\u{85}x\u{a9}\n";

    #[test]
    fn json_keeps_its_meaning_without_raw_controls() {
        let json = escape_json(serde_json::to_string(&serde_json::json!({ "exe": HOSTILE })).unwrap());
        assert!(!json.chars().any(char::is_control), "{json:?}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&json).unwrap()["exe"], HOSTILE);
        assert!(json.contains('\u{a9}'), "printable non-ASCII stays as it is: {json:?}");
    }

    #[test]
    fn text_shows_every_control_escaped() {
        assert_eq!(escape_text(HOSTILE), "/tmp/\\u{1b}[2J\\u{7}red\\u{7f}\\u{9b}31m\\u{85}x\u{a9}\\u{a}");
        assert_eq!(escape_text("/usr/bin/curl"), "/usr/bin/curl");
    }
}
