//! The reference as data: every table of the config file from `Config` down, each key with its
//! type in TOML terms, whether it is required or its default, and its doc comment; and the value
//! types (strings with a form of their own) that keys share.
use crate::atoms::{self, Atom};
use crate::source::{self, Source};
use std::collections::BTreeMap;

pub struct Reference {
    pub sections: Vec<Section>,
    pub value_types: Vec<ValueType>,
}

/// One table: the top level (empty path), a `[table]`, an `[[array]]` of tables, or a table
/// inside one (`outbound.tls`).
pub struct Section {
    pub path: Vec<String>,
    pub array: bool,
    /// Where the section is written inside an `[[array]]` entry: its parent's title.
    pub inside: Option<String>,
    pub doc: String,
    pub keys: Vec<Key>,
    /// The Rust type and file, for messages.
    pub rust: String,
}

pub struct Key {
    pub name: String,
    pub ty: Ty,
    pub need: Need,
    pub doc: String,
    /// The values of a keyword (a string from a fixed set).
    pub choices: Vec<Choice>,
    pub rust: String,
}

#[derive(Debug, PartialEq)]
pub enum Need {
    Required,
    /// Absent means something the doc comment says.
    Optional,
    /// The default, as TOML.
    Default(String),
}

pub struct Choice {
    pub variant: String,
    /// As TOML: `"strict"`. Empty for a variant with a value of its own (a path, an address).
    pub value: String,
    pub doc: String,
}

pub enum Ty {
    Integer {
        at_least_one: bool,
    },
    Boolean,
    /// A string, with what it holds when that says more than "string".
    Str(Option<&'static str>),
    /// A string (or an integer) of a form of its own: `ValueType` `index`.
    Value(usize),
    /// A string from `Key::choices`.
    Keyword,
    Array(Box<Ty>),
    Map(Box<Ty>, Box<Ty>),
    /// The table `Reference::sections[index]`.
    Table(usize),
}

pub struct ValueType {
    pub rust: String,
    pub name: String,
    /// "string", or "integer or string".
    pub form: String,
    pub doc: String,
    pub choices: Vec<Choice>,
}

impl Reference {
    pub fn build(source: &Source) -> Reference {
        let mut reference = Reference { sections: Vec::new(), value_types: Vec::new() };
        reference.section(source, "Config", Vec::new(), false, None, String::new());
        reference
    }

    /// A section's title as the file writes it: `[listen]`, `[[workload]]`, `[outbound.tls]`.
    pub fn title(section: &Section) -> String {
        match (section.path.is_empty(), section.array) {
            (true, _) => "top level".into(),
            (false, true) => format!("[[{}]]", section.path.join(".")),
            (false, false) => format!("[{}]", section.path.join(".")),
        }
    }

    /// The value types by name.
    pub fn value_types_sorted(&self) -> Vec<&ValueType> {
        let mut all: Vec<&ValueType> = self.value_types.iter().collect();
        all.sort_by_key(|v| v.name.to_lowercase());
        all
    }

    /// Every key's dotted path (`tunnel.dial_timeout`) and every table's (`outbound.tls`).
    pub fn paths(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.sections {
            if !s.path.is_empty() {
                out.push(s.path.join("."));
            }
            for k in &s.keys {
                out.push(s.path.iter().chain([&k.name]).cloned().collect::<Vec<_>>().join("."));
            }
        }
        out
    }

    fn section(&mut self, source: &Source, rust: &str, path: Vec<String>, array: bool, inside: Option<String>, field_doc: String) -> usize {
        let (item, file) = source.structs.get(rust).unwrap_or_else(|| panic!("config_reference: no struct {rust} in proxy/src/config"));
        let type_doc = source::doc(&item.attrs);
        let doc = [field_doc, type_doc].into_iter().filter(|d| !d.is_empty()).collect::<Vec<_>>().join("\n\n");
        let index = self.sections.len();
        self.sections.push(Section { path: path.clone(), array, inside, doc, keys: Vec::new(), rust: format!("{rust} ({file})") });
        let keys = self.fields(source, rust, &path);
        self.sections[index].keys = keys;
        index
    }

    fn fields(&mut self, source: &Source, rust: &str, path: &[String]) -> Vec<Key> {
        let (item, file) = &source.structs[rust];
        let container = source::serde(&item.attrs);
        let derives_default = derives(&item.attrs, "Default");
        let mut keys = Vec::new();
        for field in &item.fields {
            let attrs = source::serde(&field.attrs);
            if attrs.skip {
                continue;
            }
            let ident = field.ident.as_ref().expect("config tables have named fields").to_string();
            let rust_name = format!("{rust}::{ident} ({file})");
            if attrs.flatten {
                let inner = source::type_name(&field.ty).expect("a flattened field has a struct type");
                keys.extend(self.fields(source, &inner, path));
                continue;
            }
            let name = attrs.rename.clone().unwrap_or_else(|| source::renamed(&ident, container.rename_all.as_deref()));
            let doc = source::doc(&field.attrs);
            let (optional, inner) = unwrap_option(&field.ty);
            // A table-valued field is a section of its own; its doc comment opens the section.
            if let Some((table, many)) = table_type(source, &inner) {
                let child: Vec<String> = path.iter().cloned().chain([name.clone()]).collect();
                let inside = self.sections.iter().rfind(|s| s.array && !s.path.is_empty() && path.starts_with(&s.path)).map(Reference::title);
                let at = self.section(source, &table, child, many, inside, doc);
                if path.is_empty() {
                    continue;
                }
                let doc = self.sections[at].doc.clone();
                keys.push(Key {
                    name,
                    ty: Ty::Table(at),
                    need: if optional || attrs.default.is_some() || container.default.is_some() { Need::Optional } else { Need::Required },
                    doc,
                    choices: Vec::new(),
                    rust: rust_name,
                });
                continue;
            }
            let (ty, choices) = self.ty(source, &inner, &rust_name);
            // A keyword's type says what the key is for when the field does not.
            let doc = match (&ty, source::type_name(&inner).and_then(|t| source.enums.get(&t))) {
                (Ty::Keyword, Some((e, _))) => [doc, source::doc(&e.attrs)].into_iter().filter(|d| !d.is_empty()).collect::<Vec<_>>().join("\n\n"),
                _ => doc,
            };
            let default = match &attrs.default {
                Some(Some(func)) => {
                    let f = source.fns.get(func).unwrap_or_else(|| panic!("{rust_name}: default function {func} not found"));
                    Some(atoms::of_block(&f.block))
                }
                Some(None) => None,
                None if container.default.is_some() && !derives_default => {
                    let block = source.default_impls.get(rust).unwrap_or_else(|| panic!("{rust}: #[serde(default)] without impl Default"));
                    let expr = atoms::struct_field(block, &ident).unwrap_or_else(|| panic!("{rust_name}: not set in {rust}::default()"));
                    Some(atoms::of_expr(&expr))
                }
                None => None,
            };
            let defaulted = attrs.default.is_some() || container.default.is_some();
            let need = if optional {
                // Absent is `None`; a default of `Some(..)` would need saying here.
                assert!(
                    default.as_ref().is_none_or(|d| d.first() == Some(&Atom::Path(vec!["None".into()]))),
                    "{rust_name}: an optional key with a default"
                );
                Need::Optional
            } else if let Some(atoms) = default {
                Need::Default(
                    self.render(&ty, &choices, &atoms).unwrap_or_else(|| {
                        panic!("{rust_name}: cannot write its default ({atoms:?}) as TOML: teach config_reference's model.rs how")
                    }),
                )
            } else if defaulted {
                Need::Default(
                    self.type_default(source, &ty, &choices, &inner).unwrap_or_else(|| panic!("{rust_name}: no TOML form for Default::default()")),
                )
            } else {
                Need::Required
            };
            keys.push(Key { name, ty, need, doc, choices, rust: rust_name });
        }
        keys
    }

    /// The type of a (non-table) value in TOML terms, and a keyword's choices.
    fn ty(&mut self, source: &Source, ty: &syn::Type, at: &str) -> (Ty, Vec<Choice>) {
        let syn::Type::Path(p) = ty else { panic!("{at}: config_reference knows only path types") };
        let name = source::last_ident(&p.path);
        let args = source::generic_types(&p.path);
        let plain = match name.as_str() {
            "u8" | "u16" | "u32" | "u64" | "usize" | "i32" | "i64" => Some(Ty::Integer { at_least_one: false }),
            "NonZeroUsize" | "NonZeroU32" | "NonZeroU64" => Some(Ty::Integer { at_least_one: true }),
            "bool" => Some(Ty::Boolean),
            "String" => Some(Ty::Str(None)),
            "PathBuf" => Some(Ty::Str(Some("a path"))),
            "SocketAddr" => Some(Ty::Str(Some("address:port"))),
            "IpAddr" => Some(Ty::Str(Some("an IP address"))),
            _ => None,
        };
        if let Some(t) = plain {
            return (t, Vec::new());
        }
        match (name.as_str(), args.as_slice()) {
            ("Spanned", [inner]) => return self.ty(source, inner, at),
            ("Vec", [inner]) => return (Ty::Array(Box::new(self.ty(source, inner, at).0)), Vec::new()),
            ("BTreeMap" | "HashMap", [k, v]) => return (Ty::Map(Box::new(self.ty(source, k, at).0), Box::new(self.ty(source, v, at).0)), Vec::new()),
            _ => {}
        }
        let attrs = source
            .structs
            .get(&name)
            .map(|(s, _)| &s.attrs)
            .or_else(|| source.enums.get(&name).map(|(e, _)| &e.attrs))
            .unwrap_or_else(|| panic!("{at}: type {name} is neither a known TOML type nor defined in proxy/src/config"));
        let serde = source::serde(attrs);
        match serde.try_from.as_deref() {
            Some("String") => (Ty::Value(self.value_type(source, &name, "string")), Vec::new()),
            Some(list) if list.starts_with("Vec<") => {
                let inner: syn::Type = syn::parse_str(list).expect("a Vec type");
                self.ty(source, &inner, at)
            }
            Some(other) => {
                let (spec, _) =
                    source.enums.get(other).unwrap_or_else(|| panic!("{at}: {name} is read from {other}, which config_reference does not know"));
                assert!(source::serde(&spec.attrs).untagged, "{at}: {name} is read from {other}: config_reference knows untagged enums only");
                let mut forms: Vec<String> = Vec::new();
                for v in &spec.variants {
                    let form = match v.fields.iter().next().and_then(|f| source::type_name(&f.ty)).as_deref() {
                        Some("String") => "string",
                        Some("i64" | "u64" | "u16" | "u32") => "integer",
                        Some("bool") => "boolean",
                        other => panic!("{at}: variant {} of {other:?}: config_reference does not know its TOML form", v.ident),
                    };
                    if !forms.iter().any(|f| f == form) {
                        forms.push(form.into());
                    }
                }
                (Ty::Value(self.value_type(source, &name, &forms.join(" or a "))), Vec::new())
            }
            None => {
                let (e, _) =
                    source.enums.get(&name).unwrap_or_else(|| panic!("{at}: {name} is a struct but no table: give it #[serde(try_from = ...)]"));
                let choices = e
                    .variants
                    .iter()
                    .map(|v| {
                        assert!(v.fields.is_empty(), "{at}: {name}::{} carries data: config_reference knows keyword enums only", v.ident);
                        let rename = source::serde(&v.attrs).rename;
                        let value = rename.unwrap_or_else(|| source::renamed(&v.ident.to_string(), serde.rename_all.as_deref()));
                        Choice { variant: v.ident.to_string(), value: toml_string(&value), doc: source::doc(&v.attrs) }
                    })
                    .collect();
                (Ty::Keyword, choices)
            }
        }
    }

    fn value_type(&mut self, source: &Source, rust: &str, form: &str) -> usize {
        if let Some(i) = self.value_types.iter().position(|v| v.rust == rust) {
            return i;
        }
        let (doc, choices) = match (source.structs.get(rust), source.enums.get(rust)) {
            (Some((s, _)), _) => (source::doc(&s.attrs), Vec::new()),
            (_, Some((e, _))) => {
                let variants: Vec<String> = e.variants.iter().map(|v| v.ident.to_string()).collect();
                let strings =
                    source.print_impls.get(rust).or(source.parse_impls.get(rust)).map(|b| atoms::variant_strings(b, &variants)).unwrap_or_default();
                let choices = e
                    .variants
                    .iter()
                    .map(|v| {
                        let value = strings.iter().find(|(var, _)| v.ident == var).map(|(_, s)| toml_string(s)).unwrap_or_default();
                        Choice { variant: v.ident.to_string(), value, doc: source::doc(&v.attrs) }
                    })
                    .collect();
                (source::doc(&e.attrs), choices)
            }
            _ => unreachable!("looked up before"),
        };
        self.value_types.push(ValueType { rust: rust.into(), name: display_name(rust), form: form.into(), doc, choices });
        self.value_types.len() - 1
    }

    /// A default written in code (`atoms`) as TOML, for a value of type `ty`.
    fn render(&self, ty: &Ty, choices: &[Choice], atoms: &[Atom]) -> Option<String> {
        let first_str = || atoms.iter().find_map(|a| if let Atom::Str(s) = a { Some(toml_string(s)) } else { None });
        let variant_of = |choices: &[Choice]| {
            atoms.iter().find_map(|a| match a {
                Atom::Path(p) => choices.iter().find(|c| Some(&c.variant) == p.last() && !c.value.is_empty()).map(|c| c.value.clone()),
                _ => None,
            })
        };
        match ty {
            Ty::Integer { .. } => atoms.iter().find_map(|a| if let Atom::Int(i) = a { Some(i.replace('_', "")) } else { None }),
            Ty::Boolean => atoms.iter().find_map(|a| if let Atom::Bool(b) = a { Some(b.to_string()) } else { None }),
            Ty::Str(_) => first_str(),
            Ty::Keyword => variant_of(choices),
            Ty::Value(i) => {
                let v = &self.value_types[*i];
                if v.rust == "HumanDuration" {
                    duration(atoms)
                } else if !v.choices.is_empty() {
                    variant_of(&v.choices)
                } else {
                    first_str()
                }
            }
            Ty::Array(inner) => {
                if atoms.contains(&Atom::Empty) {
                    return Some("[]".into());
                }
                let Ty::Value(i) = &**inner else { return None };
                let v = &self.value_types[*i];
                let items: Vec<String> = atoms
                    .iter()
                    .filter_map(|a| match a {
                        Atom::Path(p) => v.choices.iter().find(|c| Some(&c.variant) == p.last()).map(|c| c.value.clone()),
                        _ => None,
                    })
                    .collect();
                (!items.is_empty()).then(|| format!("[{}]", items.join(", ")))
            }
            Ty::Map(..) => atoms.contains(&Atom::Empty).then(|| "{}".into()),
            Ty::Table(_) => None,
        }
    }

    /// `Default::default()` of a field's type, as TOML.
    fn type_default(&self, source: &Source, ty: &Ty, choices: &[Choice], rust_ty: &syn::Type) -> Option<String> {
        match ty {
            Ty::Integer { at_least_one: false } => Some("0".into()),
            Ty::Boolean => Some("false".into()),
            Ty::Str(None) => Some("\"\"".into()),
            Ty::Array(_) => Some("[]".into()),
            Ty::Map(..) => Some("{}".into()),
            Ty::Keyword | Ty::Value(_) => {
                let name = source::type_name(rust_ty)?;
                let (e, _) = source.enums.get(&name)?;
                let v = e.variants.iter().find(|v| v.attrs.iter().any(|a| a.path().is_ident("default")))?;
                let choices = if let Ty::Value(i) = ty { &self.value_types[*i].choices[..] } else { choices };
                choices.iter().find(|c| v.ident == c.variant).map(|c| c.value.clone()).filter(|v| !v.is_empty())
            }
            _ => None,
        }
    }
}

/// A duration built with `from_secs(N)`, `from_millis(N)` or a `secs(N)` helper, as idgate
/// reads durations: `"5s"`, `"1h"`.
fn duration(atoms: &[Atom]) -> Option<String> {
    let unit = atoms
        .iter()
        .position(|a| matches!(a, Atom::Path(p) if matches!(p.last().map(String::as_str), Some("secs" | "from_secs" | "from_millis"))))?;
    let Atom::Path(p) = &atoms[unit] else { unreachable!() };
    let n: u64 = atoms[unit..].iter().find_map(|a| if let Atom::Int(i) = a { i.replace('_', "").parse().ok() } else { None })?;
    let ms = if p.last().unwrap() == "from_millis" { n } else { n * 1000 };
    let text = [(86_400_000, "d"), (3_600_000, "h"), (60_000, "m"), (1000, "s"), (1, "ms")]
        .iter()
        .find(|(size, _)| ms % size == 0)
        .map(|(size, unit)| format!("{}{unit}", ms / size))?;
    Some(toml_string(&text))
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// `Option<T>` is optional `T`; `toml::Spanned<T>` is `T`.
fn unwrap_option(ty: &syn::Type) -> (bool, syn::Type) {
    if let syn::Type::Path(p) = ty {
        let name = source::last_ident(&p.path);
        let args = source::generic_types(&p.path);
        match (name.as_str(), args.as_slice()) {
            ("Option", [inner]) => return (true, unwrap_option(inner).1),
            ("Spanned", [inner]) => return unwrap_option(inner),
            _ => {}
        }
    }
    (false, ty.clone())
}

/// The struct a table-valued field holds (`T`, or `Vec<T>` for an array of tables).
fn table_type(source: &Source, ty: &syn::Type) -> Option<(String, bool)> {
    let syn::Type::Path(p) = ty else { return None };
    let name = source::last_ident(&p.path);
    let is_table = |n: &str| source.structs.get(n).is_some_and(|(s, _)| source::serde(&s.attrs).try_from.is_none());
    if name == "Vec" {
        let inner = source::type_name(source::generic_types(&p.path).first()?)?;
        return is_table(&inner).then_some((inner, true));
    }
    is_table(&name).then_some((name, false))
}

fn derives(attrs: &[syn::Attribute], what: &str) -> bool {
    attrs.iter().filter(|a| a.path().is_ident("derive")).any(|a| {
        let mut found = false;
        let _ = a.parse_nested_meta(|m| {
            found |= m.path.segments.last().is_some_and(|s| s.ident == what);
            Ok(())
        });
        found
    })
}

/// A value type's name for readers: `HumanDuration` is a "duration", `SpiffeIdValue` a "SPIFFE ID".
fn display_name(rust: &str) -> String {
    let names: BTreeMap<&str, &str> = [
        ("HumanDuration", "duration"),
        ("SpiffeIdValue", "SPIFFE ID"),
        ("AllowPattern", "SPIFFE ID pattern"),
        ("Cidr", "CIDR"),
        ("HeaderKey", "header name"),
        ("RevokedSerial", "certificate serial"),
        ("ServerNameValue", "TLS server name"),
        ("KeyExchange", "key exchange group"),
        ("Sha256Digest", "SHA-256 digest"),
        ("PeerChoice", "peer"),
        ("GuardCgroup", "cgroup"),
        ("Template", "header value template"),
    ]
    .into();
    if let Some(n) = names.get(rust) {
        return n.to_string();
    }
    let mut words: Vec<String> = Vec::new();
    for (i, c) in rust.char_indices() {
        if c.is_uppercase() && i > 0 {
            words.push(String::new());
        }
        if words.is_empty() {
            words.push(String::new());
        }
        words.last_mut().unwrap().push(c.to_ascii_lowercase());
    }
    words.join(" ")
}
