//! docs/configuration.md: the reference in Markdown.
use crate::model::{Choice, Key, Need, Reference, Section, Ty};
use crate::text::{anchor, md, md_paragraph};
use std::fmt::Write;

const WIDTH: usize = 100;

pub fn render(r: &Reference) -> String {
    let mut out = String::new();
    out.push_str(
        "# idgate.toml reference\n\n\
         <!-- Generated from the doc comments of proxy/src/config/ by proxy/tests/config_reference/;\n     \
         do not edit. After a change there: IDGATE_BLESS=1 cargo test -p idgate --test config_reference -->\n\n",
    );
    out.push_str(&md_paragraph(
        "Every key of `/etc/idgate/idgate.toml`, table by table: its type, whether it is required or its default, and what it \
         does. What the parts of the file are for and how they work together: [configuration-guide.md](configuration-guide.md); \
         every key in place, with its default: the annotated example [configs/idgate.toml](../configs/idgate.toml); on an \
         installed host, `man idgate.toml`. Forms of values that several keys share (durations, CIDRs, SPIFFE IDs, ...) are \
         under [Value types](#value-types).",
        WIDTH,
    ));
    out.push_str("\n\n");
    let contents: Vec<String> = r.sections.iter().map(|s| format!("[{}](#{})", title_text(s), anchor(&heading(s)))).collect();
    let contents = format!("Tables: {}, [value types](#value-types).", contents.join(", "));
    writeln!(out, "{}\n", crate::text::wrap(&contents, WIDTH).join("\n")).unwrap();
    for s in &r.sections {
        section(&mut out, r, s);
    }
    out.push_str("## Value types\n\n");
    for v in r.value_types_sorted() {
        writeln!(out, "### {}\n", v.name).unwrap();
        let form = if v.form.starts_with(['a', 'e', 'i', 'o', 'u']) { format!("An {}.", v.form) } else { format!("A {}.", v.form) };
        paragraphs(&mut out, &format!("{form} {}", v.doc));
        choices(&mut out, &v.choices);
    }
    let anchors: Vec<String> = r
        .sections
        .iter()
        .map(heading)
        .chain(r.sections.iter().flat_map(|s| s.keys.iter().map(move |k| key_heading(s, k))))
        .map(|h| anchor(&h))
        .collect();
    for (i, a) in anchors.iter().enumerate() {
        assert!(!anchors[..i].contains(a), "two headings of configuration.md have the anchor #{a}");
    }
    out.trim_end().to_string() + "\n"
}

fn title_text(s: &Section) -> String {
    if s.path.is_empty() {
        "top level".into()
    } else {
        format!("`{}`", Reference::title(s))
    }
}

fn heading(s: &Section) -> String {
    if s.path.is_empty() {
        "Top level".into()
    } else {
        format!("`{}`", Reference::title(s))
    }
}

fn key_heading(s: &Section, k: &Key) -> String {
    let path = s.path.iter().chain([&k.name]).cloned().collect::<Vec<_>>().join(".");
    // A table's own section is `[path]`: its key gets a heading of its own.
    if matches!(k.ty, Ty::Table(_)) {
        format!("`{path}` (table)")
    } else {
        format!("`{path}`")
    }
}

fn section(out: &mut String, r: &Reference, s: &Section) {
    writeln!(out, "## {}\n", heading(s)).unwrap();
    if s.array {
        writeln!(out, "An array of tables: one `{}` header per entry.\n", Reference::title(s)).unwrap();
    }
    if let Some(parent) = &s.inside {
        let name = s.path.last().unwrap();
        writeln!(
            out,
            "A table in an `{parent}` entry: `{}` after the entry's keys, or inline, `{name} = {{ key = value, ... }}`.\n",
            Reference::title(s)
        )
        .unwrap();
    }
    paragraphs(out, &s.doc);
    for k in &s.keys {
        writeln!(out, "### {}\n", key_heading(s, k)).unwrap();
        let need = match &k.need {
            Need::Required => "**required**".to_string(),
            Need::Optional => "optional".to_string(),
            Need::Default(d) => format!("default `{d}`"),
        };
        let ty = if matches!(k.ty, Ty::Keyword) { keywords(&k.choices) } else { ty_text(r, &k.ty) };
        writeln!(out, "{ty}; {need}.\n").unwrap();
        paragraphs(out, &k.doc);
        choices(out, &k.choices);
    }
}

fn paragraphs(out: &mut String, doc: &str) {
    for p in crate::text::paragraphs(doc) {
        out.push_str(&md_paragraph(&p, WIDTH));
        out.push_str("\n\n");
    }
}

fn choices(out: &mut String, choices: &[Choice]) {
    let documented: Vec<&Choice> = choices.iter().filter(|c| !c.doc.is_empty()).collect();
    if documented.is_empty() {
        return;
    }
    for c in documented {
        let text = crate::text::paragraphs(&c.doc).join(" ");
        let line = if c.value.is_empty() { text } else { format!("`{}`: {text}", c.value) };
        let body = md_paragraph(&line, WIDTH - 2).replace('\n', "\n  ");
        writeln!(out, "- {body}").unwrap();
    }
    out.push('\n');
}

fn keywords(choices: &[Choice]) -> String {
    let values: Vec<String> = choices.iter().map(|c| format!("`{}`", c.value)).collect();
    match values.as_slice() {
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
        [] => "string".into(),
    }
}

fn ty_text(r: &Reference, ty: &Ty) -> String {
    match ty {
        Ty::Integer { at_least_one: false } => "integer".into(),
        Ty::Integer { at_least_one: true } => "integer (at least 1)".into(),
        Ty::Boolean => "boolean".into(),
        Ty::Str(None) => "string".into(),
        Ty::Str(Some(what)) => format!("string ({})", md(what)),
        Ty::Value(i) => format!("[{}](#{})", r.value_types[*i].name, anchor(&r.value_types[*i].name)),
        Ty::Keyword => "string".into(),
        Ty::Array(t) => format!("array of {}", ty_text(r, t)),
        Ty::Map(k, v) => format!("table of {} = {}", ty_text(r, k), ty_text(r, v)),
        Ty::Table(i) => format!("table [`{}`](#{})", Reference::title(&r.sections[*i]), anchor(&heading(&r.sections[*i]))),
    }
}
