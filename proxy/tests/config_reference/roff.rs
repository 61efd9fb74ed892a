//! packaging/man/idgate.toml.5: the reference as a man page, idgate.toml(5).
use crate::model::{Choice, Need, Reference, Section, Ty};
use crate::text::{roff, roff_paragraph};
use std::fmt::Write;

const WIDTH: usize = 100;

const HEAD: &str = r#".\" Generated from the doc comments of proxy/src/config/ by proxy/tests/config_reference/;
.\" do not edit. After a change there: IDGATE_BLESS=1 cargo test -p idgate --test config_reference
.TH IDGATE.TOML 5 "" "idgate" "File Formats"
.ad l
.nh
.SH NAME
idgate.toml \- configuration of idgate, the transparent mTLS proxy
.SH SYNOPSIS
.B /etc/idgate/idgate.toml
.SH DESCRIPTION
One TOML file per host. The packages install a minimal one: idgate runs with a CA of
its own and intercepts nothing. Every key, with its default, is in the annotated example
.IR /usr/share/doc/idgate/examples/idgate.toml .
.PP
.B idgate check
validates a file as
.B idgate run
would before it binds a socket, and reports every problem as
.IR file:line:column:\ message .
.B systemctl reload idgate
applies an edited file without dropping flows; settings that apply only at a restart are
named in its answer.
.PP
Below, every key table by table: its type, whether it is required or its default, and what it
does. Forms of values that several keys share are under
.BR "VALUE TYPES" .
"#;

const TAIL: &str = r#".SH FILES
.TP
.I /etc/idgate/idgate.toml
this file (a conffile: an upgrade never replaces an edited copy).
.TP
.I /usr/share/doc/idgate/examples/idgate.toml
the annotated example.
.SH SEE ALSO
.BR idgate (1),
.BR idgate-check (1),
.BR idgate-reload (1),
.BR idgate-ca (1)
"#;

pub fn render(r: &Reference) -> String {
    let mut out = HEAD.to_string();
    for s in &r.sections {
        section(&mut out, r, s);
    }
    out.push_str(".SH \"VALUE TYPES\"\n");
    for v in r.value_types_sorted() {
        writeln!(out, ".TP\n\\fI{}\\fR", roff(&v.name)).unwrap();
        let form = if v.form.starts_with(['a', 'e', 'i', 'o', 'u']) { format!("An {}.", v.form) } else { format!("A {}.", v.form) };
        let mut text = crate::text::paragraphs(&v.doc).into_iter();
        writeln!(out, "{}", roff_paragraph(&format!("{form} {}", text.next().unwrap_or_default()), WIDTH)).unwrap();
        for p in text {
            writeln!(out, ".IP\n{}", roff_paragraph(&p, WIDTH)).unwrap();
        }
        choices(&mut out, &v.choices);
    }
    out.push_str(TAIL);
    out
}

fn section(out: &mut String, r: &Reference, s: &Section) {
    if s.path.is_empty() {
        out.push_str(".SH \"TOP-LEVEL KEYS\"\n");
    } else {
        writeln!(out, ".SH \"{}\"", Reference::title(s)).unwrap();
    }
    if s.array {
        writeln!(out, "An array of tables: one \\fB{}\\fR header per entry.\n.PP", Reference::title(s)).unwrap();
    }
    if let Some(parent) = &s.inside {
        let name = s.path.last().unwrap();
        writeln!(
            out,
            "A table in an \\fB{parent}\\fR entry: \\fB{}\\fR after the entry's keys, or inline, \\fB{name} = {{ key = value, .\\|.\\|. }}\\fR.\n.PP",
            Reference::title(s)
        )
        .unwrap();
    }
    for (i, p) in crate::text::paragraphs(&s.doc).iter().enumerate() {
        if i > 0 {
            out.push_str(".PP\n");
        }
        writeln!(out, "{}", roff_paragraph(p, WIDTH)).unwrap();
    }
    for k in &s.keys {
        writeln!(out, ".TP\n\\fB{}\\fR", roff(&k.name)).unwrap();
        let need = match &k.need {
            Need::Required => "required".to_string(),
            Need::Optional => "optional".to_string(),
            Need::Default(d) => format!("default \\fB{}\\fR", roff(d)),
        };
        let ty = if matches!(k.ty, Ty::Keyword) { keywords(&k.choices) } else { ty_text(r, &k.ty) };
        writeln!(out, "{ty}; {need}.").unwrap();
        paragraphs(out, &k.doc);
        choices(out, &k.choices);
    }
}

/// The paragraphs of an entry's body (after its type line or first paragraph).
fn paragraphs(out: &mut String, doc: &str) {
    for p in crate::text::paragraphs(doc) {
        writeln!(out, ".IP\n{}", roff_paragraph(&p, WIDTH)).unwrap();
    }
}

fn choices(out: &mut String, choices: &[Choice]) {
    let documented: Vec<&Choice> = choices.iter().filter(|c| !c.doc.is_empty()).collect();
    if documented.is_empty() {
        return;
    }
    out.push_str(".RS\n");
    for c in documented {
        let text = crate::text::paragraphs(&c.doc).join(" ");
        if c.value.is_empty() {
            writeln!(out, ".IP \\(bu 2\n{}", roff_paragraph(&text, WIDTH)).unwrap();
        } else {
            writeln!(out, ".TP\n\\fB{}\\fR\n{}", roff(&c.value), roff_paragraph(&text, WIDTH)).unwrap();
        }
    }
    out.push_str(".RE\n");
}

fn keywords(choices: &[Choice]) -> String {
    let values: Vec<String> = choices.iter().map(|c| format!("\\fB{}\\fR", roff(&c.value))).collect();
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
        Ty::Str(None) | Ty::Keyword => "string".into(),
        Ty::Str(Some(what)) => format!("string ({})", roff(what)),
        Ty::Value(i) => format!("\\fI{}\\fR", roff(&r.value_types[*i].name)),
        Ty::Array(t) => format!("array of {}", ty_text(r, t)),
        Ty::Map(k, v) => format!("table of {} = {}", ty_text(r, k), ty_text(r, v)),
        Ty::Table(i) => format!("table \\fB{}\\fR", Reference::title(&r.sections[*i])),
    }
}
