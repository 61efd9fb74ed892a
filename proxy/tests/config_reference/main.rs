//! The configuration reference, `docs/configuration.md` and the man page idgate.toml(5)
//! (`packaging/man/idgate.toml.5`), generated from the doc comments and serde attributes of the
//! config structs in `src/config/`. The tests fail when a committed copy is not what the code
//! says, when the reference and serde disagree on a table's keys, on what is required or on a
//! default, when a key has no doc comment, and when the annotated example `configs/idgate.toml`
//! does not show a key.
//!
//! After changing a config struct or its doc comments:
//! `IDGATE_BLESS=1 cargo test -p idgate --test config_reference` writes both files again.
mod atoms;
mod example;
mod markdown;
mod model;
mod roff;
mod source;
mod text;

use model::{Need, Reference, Section};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const REGENERATE: &str = "IDGATE_BLESS=1 cargo test -p idgate --test config_reference";

/// A valid entry for each table that needs one (every required key set, cross-field checks
/// met with two of everything the tests may leave out one at a time), by path.
const ENTRIES: &[(&str, &[&str])] = &[
    ("", &["trust_domain = \"example.org\""]),
    ("workload", &["spiffe_id = \"spiffe://example.org/web\"", "uid = 1000", "gid = 1000"]),
    ("outbound", &["cidrs = [\"192.0.2.0/24\"]", "ports = [80]", "protocol = \"http\""]),
    ("outbound.tls", &["server_name = \"api.example.com\""]),
    ("inbound", &["ports = [8080]", "allow = [\"spiffe://example.org/web\"]"]),
    ("http_rule", &["set = { x-api-key = \"${env:API_KEY}\" }", "remove = [\"cookie\"]"]),
    ("http_rule.aws_sigv4", &["credential = \"s3\"", "service = \"s3\"", "region = \"us-east-1\""]),
    (
        "credential",
        &[
            "name = \"s3\"",
            "kind = \"aws_web_identity\"",
            "role_arn = \"arn:aws:iam::1:role/r\"",
            "region = \"us-east-1\"",
            "endpoint = \"https://sts.example.org/\"",
        ],
    ),
];

/// Optional keys (in serde's eyes) that a cross-field check requires for the entry above: the
/// role of an `aws_web_identity` source.
const REQUIRED_BY_KIND: &[&str] = &["credential.role_arn"];

/// Tables a section's entry refers to, written after it.
const REFERRED: &[(&str, &str)] = &[(
    "http_rule.aws_sigv4",
    "[[credential]]\nname = \"s3\"\nkind = \"aws_web_identity\"\nrole_arn = \"arn:aws:iam::1:role/r\"\nregion = \"us-east-1\"\n",
)];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("proxy/ is in the repository").to_path_buf()
}

fn reference() -> Reference {
    Reference::build(&source::Source::read(&repo().join("proxy/src/config")))
}

fn dotted(s: &Section, key: &str) -> String {
    s.path.iter().map(String::as_str).chain([key]).collect::<Vec<_>>().join(".")
}

#[test]
fn committed_reference_is_what_the_code_says() {
    let r = reference();
    let mut stale = Vec::new();
    for (path, text) in [("docs/configuration.md", markdown::render(&r)), ("packaging/man/idgate.toml.5", roff::render(&r))] {
        let file = repo().join(path);
        if std::env::var_os("IDGATE_BLESS").is_some() {
            std::fs::write(&file, &text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            continue;
        }
        let committed = std::fs::read_to_string(&file).unwrap_or_default();
        if committed != text {
            let (line, (old, new)) = committed
                .lines()
                .chain(std::iter::repeat(""))
                .zip(text.lines().chain(std::iter::repeat("")))
                .enumerate()
                .find(|(_, (a, b))| a != b)
                .unwrap();
            stale.push(format!("{path}:{}: committed\n    {old}\n  generated\n    {new}", line + 1));
        }
    }
    assert!(
        stale.is_empty(),
        "the reference differs from the config structs' doc comments; regenerate it with\n  {REGENERATE}\nand commit it:\n{}",
        stale.join("\n")
    );
}

#[test]
fn every_key_table_and_value_has_a_doc_comment() {
    let r = reference();
    let mut missing = Vec::new();
    for s in &r.sections {
        if !s.path.is_empty() && s.doc.is_empty() {
            missing.push(format!("{}: {}", Reference::title(s), s.rust));
        }
        for k in &s.keys {
            if k.doc.is_empty() {
                missing.push(format!("{}: {}", dotted(s, &k.name), k.rust));
            }
            for c in k.choices.iter().filter(|c| c.doc.is_empty()) {
                missing.push(format!("{} = {}: variant {} of {}", dotted(s, &k.name), c.value, c.variant, k.rust));
            }
        }
    }
    for v in &r.value_types {
        if v.doc.is_empty() {
            missing.push(format!("value type {}: {}", v.name, v.rust));
        }
        for c in v.choices.iter().filter(|c| !c.value.is_empty() && c.doc.is_empty()) {
            missing.push(format!("{} {}: variant {}::{}", v.name, c.value, v.rust, c.variant));
        }
    }
    assert!(missing.is_empty(), "{} without a doc comment (what it does, its default, its unit):\n  {}", missing.len(), missing.join("\n  "));
}

/// The config text that reaches `section`: its tables' headers and `ENTRIES`, without `skip`.
fn document(r: &Reference, section: &Section, skip: Option<&str>) -> String {
    let mut out = String::new();
    let ancestors = r.sections.iter().filter(|s| section.path.starts_with(&s.path));
    for s in ancestors {
        if s.path.len() == 1 {
            // Before the first table: root keys would otherwise land in it.
            if let Some((_, tables)) = REFERRED.iter().find(|(p, _)| *p == section.path.join(".")) {
                out.push_str(tables);
            }
        }
        if !s.path.is_empty() {
            out.push_str(&format!("{}\n", Reference::title(s)));
        }
        let path = s.path.join(".");
        for line in ENTRIES.iter().find(|(p, _)| *p == path).map(|(_, lines)| *lines).unwrap_or_default() {
            let key = line.split('=').next().unwrap().trim();
            if !(std::ptr::eq(s, section) && Some(key) == skip) {
                out.push_str(&format!("{line}\n"));
            }
        }
    }
    out
}

fn parse(text: &str) -> Result<idgate::config::Config, idgate::config::ConfigErrors> {
    idgate::config::parse(Path::new("/etc/idgate/idgate.toml"), text)
}

#[test]
fn the_reference_names_the_keys_serde_reads() {
    let r = reference();
    let mut wrong = Vec::new();
    for s in &r.sections {
        let text = document(&r, s, None) + "zz_not_a_key = 0\n";
        let e = parse(&text).expect_err("an unknown key is an error").to_string();
        let Some((_, expected)) = e.split_once("expected") else { panic!("{}: no list of keys in {e:?}", Reference::title(s)) };
        let serde: BTreeSet<String> = expected.split('`').skip(1).step_by(2).map(String::from).collect();
        let children = r.sections.iter().filter(|c| c.path.len() == s.path.len() + 1 && c.path.starts_with(&s.path));
        let documented: BTreeSet<String> = s.keys.iter().map(|k| k.name.clone()).chain(children.map(|c| c.path.last().unwrap().clone())).collect();
        if serde != documented {
            wrong.push(format!(
                "{}: serde reads {:?}, the reference has {:?}",
                Reference::title(s),
                serde.difference(&documented).collect::<Vec<_>>(),
                documented.difference(&serde).collect::<Vec<_>>()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "the reference's keys are not serde's (teach config_reference's model.rs the attribute it missed):\n  {}",
        wrong.join("\n  ")
    );
}

#[test]
fn documented_defaults_and_required_keys_are_the_codes() {
    let r = reference();
    let mut wrong = Vec::new();
    for s in &r.sections {
        assert!(
            s.path.is_empty() || !(s.array || s.inside.is_some()) || ENTRIES.iter().any(|(p, _)| *p == s.path.join(".")),
            "{}: give ENTRIES in config_reference/main.rs a valid entry for it",
            Reference::title(s)
        );
        for k in &s.keys {
            let without = document(&r, s, Some(&k.name));
            match &k.need {
                Need::Default(value) => {
                    let absent = format!("{:?}", parse(&without));
                    let given = format!("{:?}", parse(&format!("{without}{} = {value}\n", k.name)));
                    if absent.starts_with("Err") {
                        wrong.push(format!("{}: the test's config is not valid: {absent}", dotted(s, &k.name)));
                    } else if absent != given {
                        let (a, b) = difference(&absent, &given);
                        wrong.push(format!(
                            "{}: documented default {value}; the config parsed without it has\n    {a}\n  with it\n    {b}",
                            dotted(s, &k.name)
                        ));
                    }
                }
                Need::Required => match parse(&without) {
                    Err(e) if e.to_string().contains(&format!("missing field `{}`", k.name)) => {}
                    other => wrong.push(format!("{}: documented as required, but without it: {:.300}", dotted(s, &k.name), format!("{other:?}"))),
                },
                Need::Optional if REQUIRED_BY_KIND.contains(&dotted(s, &k.name).as_str()) => {}
                Need::Optional => {
                    if let Err(e) = parse(&without) {
                        wrong.push(format!("{}: documented as optional, but without it: {e}", dotted(s, &k.name)));
                    }
                }
            }
        }
    }
    assert!(wrong.is_empty(), "the reference disagrees with the code:\n  {}", wrong.join("\n  "));
}

/// Where two texts first differ: a little of each around that place.
fn difference(a: &str, b: &str) -> (String, String) {
    let at = a.char_indices().zip(b.chars()).find(|((_, x), y)| x != y).map(|((i, _), _)| i).unwrap_or(a.len().min(b.len()));
    let around = |t: &str| t.chars().skip(a[..at].chars().count().saturating_sub(40)).take(100).collect::<String>();
    (format!("...{}...", around(a)), format!("...{}...", around(b)))
}

#[test]
fn the_example_config_shows_every_key() {
    let r = reference();
    let shown = example::paths(&std::fs::read_to_string(repo().join("configs/idgate.toml")).expect("configs/idgate.toml"));
    let missing: Vec<String> = r.paths().into_iter().filter(|p| !shown.contains(p)).collect();
    assert!(
        missing.is_empty(),
        "configs/idgate.toml does not show {} key(s) of the reference; add each as `key = value` or `# key = <default>` under its table:\n  {}",
        missing.len(),
        missing.join("\n  ")
    );
}
