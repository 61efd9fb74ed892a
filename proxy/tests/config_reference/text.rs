//! Doc comment text for Markdown and for roff: paragraphs, `code` spans, escapes, wrapping.

/// The paragraphs of a doc comment, each on one line.
pub fn paragraphs(doc: &str) -> Vec<String> {
    doc.split("\n\n").map(|p| p.split_whitespace().collect::<Vec<_>>().join(" ")).filter(|p| !p.is_empty()).collect()
}

/// Text and `code` spans, in order: `(is_code, text)`.
fn spans(text: &str) -> Vec<(bool, &str)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('`') {
        let Some(len) = rest[open + 1..].find('`') else { break };
        out.push((false, &rest[..open]));
        out.push((true, &rest[open + 1..open + 1 + len]));
        rest = &rest[open + 2 + len..];
    }
    out.push((false, rest));
    out
}

/// Words of `text` in lines of at most `width` columns (a longer word gets a line of its own).
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        match lines.last_mut() {
            Some(line) if line.chars().count() + 1 + word.chars().count() <= width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    lines
}

/// Markdown: `code` kept, `<`, `>`, `*` and `\` outside code escaped.
pub fn md(text: &str) -> String {
    spans(text)
        .into_iter()
        .map(|(code, t)| if code { format!("`{t}`") } else { t.replace('\\', "\\\\").replace('<', "&lt;").replace('>', "&gt;").replace('*', "\\*") })
        .collect()
}

/// A Markdown paragraph wrapped at `width`, no line starting as a list, heading or quote would.
pub fn md_paragraph(text: &str, width: usize) -> String {
    wrap(&md(text), width)
        .into_iter()
        .map(|line| {
            let digits = line.chars().take_while(|c| c.is_ascii_digit()).count();
            if line.starts_with(['-', '+', '#', '>', '=', '|']) {
                format!("\\{line}")
            } else if digits > 0 && line[digits..].starts_with(['.', ')']) {
                format!("{}\\{}", &line[..digits], &line[digits..])
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// roff: `code` in bold, backslashes, minus signs in code and non-ASCII escaped.
pub fn roff(text: &str) -> String {
    let escape = |t: &str, code: bool| -> String {
        t.chars()
            .map(|c| match c {
                '\\' => "\\e".to_string(),
                '-' if code => "\\-".to_string(),
                c if c.is_ascii() => c.to_string(),
                c => format!("\\[u{:04X}]", c as u32),
            })
            .collect()
    };
    spans(text).into_iter().map(|(code, t)| if code { format!("\\fB{}\\fR", escape(t, true)) } else { escape(t, false) }).collect()
}

/// A roff paragraph: wrapped, no line starting with a control character.
pub fn roff_paragraph(text: &str, width: usize) -> String {
    wrap(&roff(text), width).into_iter().map(|l| if l.starts_with(['.', '\'']) { format!("\\&{l}") } else { l }).collect::<Vec<_>>().join("\n")
}

/// The anchor GitHub gives a heading: lower case, punctuation but `-` and `_` dropped, spaces as `-`.
pub fn anchor(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}
