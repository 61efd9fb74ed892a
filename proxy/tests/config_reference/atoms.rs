//! The literals and paths of an expression in source order, `vec![...]` bodies included: what
//! a default value or a string mapping is written with.
use syn::visit::Visit;

#[derive(Debug, Clone, PartialEq)]
pub enum Atom {
    Str(String),
    /// As written, without a type suffix: `0x1d6a_0001`.
    Int(String),
    Bool(bool),
    /// The path's segments: `KeyExchange::X25519`, `None`, `secs`.
    Path(Vec<String>),
    /// A `vec![]` or `Vec::new()` / `BTreeMap::new()`: an empty collection.
    Empty,
}

#[derive(Default)]
struct Collect(Vec<Atom>);

impl<'a> Visit<'a> for Collect {
    fn visit_lit(&mut self, lit: &'a syn::Lit) {
        match lit {
            syn::Lit::Str(s) => self.0.push(Atom::Str(s.value())),
            syn::Lit::Int(i) => {
                let text = i.to_string();
                self.0.push(Atom::Int(text[..text.len() - i.suffix().len()].to_string()));
            }
            syn::Lit::Bool(b) => self.0.push(Atom::Bool(b.value)),
            _ => {}
        }
    }

    fn visit_expr_path(&mut self, p: &'a syn::ExprPath) {
        self.0.push(Atom::Path(p.path.segments.iter().map(|s| s.ident.to_string()).collect()));
    }

    fn visit_pat(&mut self, p: &'a syn::Pat) {
        match p {
            syn::Pat::Path(pp) => self.0.push(Atom::Path(pp.path.segments.iter().map(|s| s.ident.to_string()).collect())),
            syn::Pat::TupleStruct(ts) => self.0.push(Atom::Path(ts.path.segments.iter().map(|s| s.ident.to_string()).collect())),
            _ => syn::visit::visit_pat(self, p),
        }
    }

    fn visit_expr_call(&mut self, c: &'a syn::ExprCall) {
        if let syn::Expr::Path(p) = &*c.func {
            let segs: Vec<String> = p.path.segments.iter().map(|s| s.ident.to_string()).collect();
            if c.args.is_empty()
                && segs.last().is_some_and(|s| s == "new")
                && segs.len() >= 2
                && matches!(segs[segs.len() - 2].as_str(), "Vec" | "BTreeMap" | "HashMap")
            {
                self.0.push(Atom::Empty);
                return;
            }
        }
        syn::visit::visit_expr_call(self, c);
    }

    fn visit_macro(&mut self, m: &'a syn::Macro) {
        if m.path.is_ident("vec") {
            let body = m.parse_body_with(syn::punctuated::Punctuated::<syn::Expr, syn::Token![,]>::parse_terminated).expect("vec![a, b, ...]");
            if body.is_empty() {
                self.0.push(Atom::Empty);
            }
            for e in &body {
                self.visit_expr(e);
            }
        }
    }
}

pub fn of_expr(e: &syn::Expr) -> Vec<Atom> {
    let mut c = Collect::default();
    c.visit_expr(e);
    c.0
}

pub fn of_block(b: &syn::Block) -> Vec<Atom> {
    let mut c = Collect::default();
    c.visit_block(b);
    c.0
}

/// The value expression of `field` in the `X { field: value, .. }` (or `Self { .. }`) a
/// `default()` builds.
pub fn struct_field(block: &syn::Block, field: &str) -> Option<syn::Expr> {
    struct Find<'f>(&'f str, Option<syn::Expr>);
    impl<'a> Visit<'a> for Find<'_> {
        fn visit_expr_struct(&mut self, s: &'a syn::ExprStruct) {
            for f in &s.fields {
                if matches!(&f.member, syn::Member::Named(i) if i == self.0) {
                    self.1 = Some(f.expr.clone());
                }
            }
            syn::visit::visit_expr_struct(self, s);
        }
    }
    let mut find = Find(field, None);
    find.visit_block(block);
    find.1
}

/// The literal strings a `TryFrom<String>` or `From<X> for String` maps to each variant of
/// `variants`: match arms (`"auto" => Ok(X::Auto)`, `X::Auto => "auto"`) and comparisons
/// (`if s == "same-ip" { return Ok(X::SameIp) }`). The first literal wins for each variant.
pub fn variant_strings(block: &syn::Block, variants: &[String]) -> Vec<(String, String)> {
    struct Map<'v> {
        variants: &'v [String],
        out: Vec<(String, String)>,
    }
    impl Map<'_> {
        fn pair(&mut self, atoms: &[Atom]) {
            let s = atoms.iter().find_map(|a| if let Atom::Str(s) = a { Some(s.clone()) } else { None });
            let v = atoms.iter().find_map(|a| match a {
                Atom::Path(p) if p.len() >= 2 && self.variants.contains(p.last().unwrap()) => p.last().cloned(),
                _ => None,
            });
            if let (Some(s), Some(v)) = (s, v) {
                if !self.out.iter().any(|(known, _)| *known == v) {
                    self.out.push((v, s));
                }
            }
        }
    }
    impl<'a> Visit<'a> for Map<'_> {
        fn visit_arm(&mut self, arm: &'a syn::Arm) {
            let mut c = Collect::default();
            c.visit_pat(&arm.pat);
            c.visit_expr(&arm.body);
            self.pair(&c.0);
        }
        fn visit_expr_if(&mut self, e: &'a syn::ExprIf) {
            if let syn::Expr::Binary(b) = &*e.cond {
                if matches!(b.op, syn::BinOp::Eq(_)) {
                    let mut c = Collect::default();
                    c.visit_expr(&e.cond);
                    c.visit_block(&e.then_branch);
                    self.pair(&c.0);
                }
            }
            syn::visit::visit_expr_if(self, e);
        }
    }
    let mut map = Map { variants, out: Vec::new() };
    map.visit_block(block);
    map.out
}
