//! The config module's source as syntax: its types, functions and impls by name, and what the
//! serde attributes and doc comments on them say.
use std::collections::BTreeMap;
use std::path::Path;
use syn::{Attribute, Expr, ImplItem, Item, ItemEnum, ItemFn, ItemStruct, Lit, Meta};

/// The items of `src/config/*.rs` a reference needs, by name.
pub struct Source {
    pub structs: BTreeMap<String, (ItemStruct, String)>,
    pub enums: BTreeMap<String, (ItemEnum, String)>,
    pub fns: BTreeMap<String, ItemFn>,
    /// `impl Default for X`: X's `default()`.
    pub default_impls: BTreeMap<String, syn::Block>,
    /// `impl TryFrom<String> for X`: X's `try_from()`.
    pub parse_impls: BTreeMap<String, syn::Block>,
    /// `impl From<X> for String`: X's `from()`.
    pub print_impls: BTreeMap<String, syn::Block>,
}

impl Source {
    pub fn read(dir: &Path) -> Source {
        let mut source = Source {
            structs: BTreeMap::new(),
            enums: BTreeMap::new(),
            fns: BTreeMap::new(),
            default_impls: BTreeMap::new(),
            parse_impls: BTreeMap::new(),
            print_impls: BTreeMap::new(),
        };
        let mut files: Vec<_> = std::fs::read_dir(dir).expect("src/config is readable").map(|e| e.expect("directory entry").path()).collect();
        files.sort();
        for path in files.into_iter().filter(|p| p.extension().is_some_and(|e| e == "rs")) {
            let text = std::fs::read_to_string(&path).expect("readable source");
            let file = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let name = format!("proxy/src/config/{}", path.file_name().unwrap().to_string_lossy());
            for item in file.items {
                source.add(item, &name);
            }
        }
        source
    }

    fn add(&mut self, item: Item, file: &str) {
        match item {
            Item::Struct(s) => {
                self.structs.insert(s.ident.to_string(), (s, file.to_string()));
            }
            Item::Enum(e) => {
                self.enums.insert(e.ident.to_string(), (e, file.to_string()));
            }
            Item::Fn(f) => {
                self.fns.insert(f.sig.ident.to_string(), f);
            }
            Item::Impl(i) => {
                let Some((_, trait_path, _)) = &i.trait_ else { return };
                let trait_name = last_ident(trait_path);
                let self_name = type_name(&i.self_ty);
                let method = |name: &str| {
                    i.items.iter().find_map(|it| match it {
                        ImplItem::Fn(f) if f.sig.ident == name => Some(f.block.clone()),
                        _ => None,
                    })
                };
                match (trait_name.as_str(), generic_arg(trait_path).as_deref(), self_name.as_deref()) {
                    ("Default", _, Some(x)) => {
                        self.default_impls.insert(x.to_string(), method("default").expect("Default has default()"));
                    }
                    ("TryFrom", Some("String"), Some(x)) => {
                        self.parse_impls.insert(x.to_string(), method("try_from").expect("TryFrom has try_from()"));
                    }
                    ("From", Some(x), Some("String")) => {
                        self.print_impls.insert(x.to_string(), method("from").expect("From has from()"));
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

/// The last segment of a path, as text.
pub fn last_ident(path: &syn::Path) -> String {
    path.segments.last().map(|s| s.ident.to_string()).unwrap_or_default()
}

/// `X` of a path type `a::b::X<..>`.
pub fn type_name(ty: &syn::Type) -> Option<String> {
    match ty {
        syn::Type::Path(p) => Some(last_ident(&p.path)),
        _ => None,
    }
}

/// The first generic argument of a path's last segment, if it is a type: `String` of `TryFrom<String>`.
pub fn generic_arg(path: &syn::Path) -> Option<String> {
    generic_types(path).first().and_then(type_name)
}

/// The generic type arguments of a path's last segment.
pub fn generic_types(path: &syn::Path) -> Vec<syn::Type> {
    match path.segments.last().map(|s| &s.arguments) {
        Some(syn::PathArguments::AngleBracketed(args)) => args
            .args
            .iter()
            .filter_map(|a| match a {
                syn::GenericArgument::Type(t) => Some(t.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The doc comment: lines joined, one leading space dropped from each.
pub fn doc(attrs: &[Attribute]) -> String {
    let mut lines = Vec::new();
    for attr in attrs.iter().filter(|a| a.path().is_ident("doc")) {
        if let Meta::NameValue(nv) = &attr.meta {
            if let Expr::Lit(syn::ExprLit { lit: Lit::Str(s), .. }) = &nv.value {
                let line = s.value();
                lines.push(line.strip_prefix(' ').unwrap_or(&line).trim_end().to_string());
            }
        }
    }
    lines.join("\n").trim().to_string()
}

/// What `#[serde(...)]` says on a container, field or variant.
#[derive(Default, Debug)]
pub struct Serde {
    pub rename: Option<String>,
    pub rename_all: Option<String>,
    /// `default` alone: `Some(None)`; `default = "f"`: `Some(Some("f"))`.
    pub default: Option<Option<String>>,
    pub flatten: bool,
    pub skip: bool,
    pub try_from: Option<String>,
    pub untagged: bool,
    pub aliases: Vec<String>,
}

pub fn serde(attrs: &[Attribute]) -> Serde {
    let mut out = Serde::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        attr.parse_nested_meta(|meta| {
            let name = meta.path.get_ident().map(|i| i.to_string()).unwrap_or_default();
            let value = if meta.input.peek(syn::Token![=]) { Some(meta.value()?.parse::<syn::LitStr>()?.value()) } else { None };
            if value.is_none() && meta.input.peek(syn::token::Paren) {
                // `rename(deserialize = "x")`: the deserialize side is what a config file meets.
                let mut de = None;
                meta.parse_nested_meta(|inner| {
                    let v = inner.value()?.parse::<syn::LitStr>()?.value();
                    if inner.path.is_ident("deserialize") {
                        de = Some(v);
                    }
                    Ok(())
                })?;
                match name.as_str() {
                    "rename" => out.rename = de,
                    "rename_all" => out.rename_all = de,
                    _ => {}
                }
                return Ok(());
            }
            match name.as_str() {
                "rename" => out.rename = value,
                "rename_all" => out.rename_all = value,
                "default" => out.default = Some(value),
                "flatten" => out.flatten = true,
                "skip" | "skip_deserializing" => out.skip = true,
                "try_from" | "from" => out.try_from = value,
                "untagged" => out.untagged = true,
                "alias" => out.aliases.extend(value),
                _ => {}
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("cannot read #[serde(...)]: {e}"));
    }
    out
}

/// A Rust name as serde's `rename_all` spells it.
pub fn renamed(ident: &str, rule: Option<&str>) -> String {
    let words = || {
        let mut words: Vec<String> = Vec::new();
        for (i, c) in ident.char_indices() {
            if c.is_uppercase() && i > 0 || words.is_empty() {
                words.push(String::new());
            }
            words.last_mut().unwrap().push(c.to_ascii_lowercase());
        }
        words
    };
    match rule {
        None => ident.to_string(),
        Some("lowercase") => ident.to_lowercase(),
        Some("UPPERCASE") => ident.to_uppercase(),
        Some("snake_case") if ident.contains('_') || ident.chars().all(|c| !c.is_uppercase()) => ident.to_string(),
        Some("snake_case") => words().join("_"),
        Some("kebab-case") if ident.chars().all(|c| !c.is_uppercase()) => ident.replace('_', "-"),
        Some("kebab-case") => words().join("-"),
        Some("SCREAMING_SNAKE_CASE") => words().join("_").to_uppercase(),
        Some(other) => panic!("config_reference does not know serde's rename_all = {other:?} yet"),
    }
}
