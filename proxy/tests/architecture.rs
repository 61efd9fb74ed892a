//! The module structure `src/lib.rs` promises: its layer table names every top-level module,
//! a module uses only modules of its own layer or lower ones, and no modules use each other in
//! a cycle (at any depth: `a` uses `b` uses `a` between files of one directory fails too).
//! Uses are read from the source text (`crate::…`, `super::…`, `use` groups) outside comments.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every module file under `src/` by its path (`a/b.rs` and `a/b/mod.rs` are `a::b`).
fn modules() -> BTreeMap<Module, PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("src/ is readable") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&src(), &mut files);
    let mut out = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(src()).expect("under src/").with_extension("");
        let mut module: Module = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
        if module.last().is_some_and(|m| m == "mod") {
            module.pop();
        }
        if module == ["lib"] || module == ["main"] {
            continue;
        }
        out.insert(module, file);
    }
    out
}

/// The layer table of `lib.rs`'s doc comment: `//! | 3 | `a`, `b` | ... |`.
fn layers() -> BTreeMap<String, u32> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("src/lib.rs");
    let mut out = BTreeMap::new();
    for line in lib.lines() {
        let Some(row) = line.strip_prefix("//! | ") else { continue };
        let mut cells = row.split('|');
        let (Some(layer), Some(names)) = (cells.next(), cells.next()) else { continue };
        let Ok(layer) = layer.trim().parse::<u32>() else { continue };
        for name in names.split(',') {
            out.insert(name.trim().trim_matches('`').to_string(), layer);
        }
    }
    out
}

/// The code of a file without its comments (line comments, doc comments, block comments).
fn code(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut in_block = false;
    for (n, line) in text.lines().enumerate() {
        let mut line = line.to_string();
        if in_block {
            match line.find("*/") {
                Some(end) => {
                    line = line[end + 2..].to_string();
                    in_block = false;
                }
                None => continue,
            }
        }
        if let Some(start) = line.find("/*") {
            in_block = !line[start..].contains("*/");
            line.truncate(start);
        }
        if let Some(start) = line.find("//") {
            line.truncate(start);
        }
        out.push((n + 1, line));
    }
    out
}

/// The `::`-separated path that starts at `rest` (after `crate::` or `super::`), and what follows it.
fn path_at(rest: &str) -> (Vec<String>, &str) {
    let mut segments = Vec::new();
    let mut rest = rest;
    loop {
        let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(rest.len());
        if end == 0 {
            break;
        }
        segments.push(rest[..end].to_string());
        rest = &rest[end..];
        match rest.strip_prefix("::") {
            Some(next) => rest = next,
            None => break,
        }
    }
    (segments, rest)
}

/// The modules a file's code names, each with the line it is named on.
fn uses(module: &Module, text: &str) -> Vec<(usize, Vec<String>)> {
    // `super` from `a/b.rs` and from `a/b/mod.rs` alike is `a`.
    let parent: Vec<String> = module[..module.len() - 1].to_vec();
    let mut out = Vec::new();
    for (n, line) in code(text) {
        for (anchor, base) in [("crate::", Vec::new()), ("super::", parent.clone())] {
            let mut from = 0;
            while let Some(at) = line[from..].find(anchor) {
                let start = from + at;
                from = start + anchor.len();
                let before = line[..start].chars().next_back();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                    continue;
                }
                let (segments, rest) = path_at(&line[from..]);
                let mut path = base.clone();
                path.extend(segments);
                if let Some(group) = rest.strip_prefix('{') {
                    for item in group.split('}').next().unwrap_or("").split(',') {
                        let (more, _) = path_at(item.trim());
                        let mut full = path.clone();
                        full.extend(more);
                        out.push((n, full));
                    }
                } else {
                    out.push((n, path));
                }
            }
        }
    }
    out
}

/// The longest prefix of `path` that is a module file.
fn resolve<'a>(modules: &'a BTreeMap<Module, PathBuf>, path: &[String]) -> Option<&'a Module> {
    (1..=path.len()).rev().find_map(|k| modules.get_key_value(&path[..k]).map(|(m, _)| m))
}

struct Graph {
    edges: BTreeMap<Module, BTreeSet<Module>>,
    /// One place each edge is made, for the failure message.
    at: BTreeMap<(Module, Module), String>,
}

fn graph() -> Graph {
    let modules = modules();
    let mut graph = Graph { edges: BTreeMap::new(), at: BTreeMap::new() };
    for (module, file) in &modules {
        let text = std::fs::read_to_string(file).expect("module file");
        for (line, path) in uses(module, &text) {
            let Some(target) = resolve(&modules, &path) else { continue };
            // A module's own items and its ancestors (which declare it) are not a dependency.
            if target == module || module.starts_with(target) {
                continue;
            }
            graph.edges.entry(module.clone()).or_default().insert(target.clone());
            let rel = file.strip_prefix(src()).expect("under src/").display().to_string();
            graph.at.entry((module.clone(), target.clone())).or_insert(format!("src/{rel}:{line}"));
        }
    }
    graph
}

fn name(m: &Module) -> String {
    m.join("::")
}

#[test]
fn the_layer_table_names_every_top_level_module() {
    let layers = layers();
    let tops: BTreeSet<String> = modules().keys().map(|m| m[0].clone()).collect();
    let listed: BTreeSet<String> = layers.keys().cloned().collect();
    assert_eq!(tops, listed, "src/lib.rs's layer table must list exactly the top-level modules");
}

#[test]
fn no_module_uses_a_higher_layer() {
    let layers = layers();
    let graph = graph();
    let mut wrong = Vec::new();
    for (from, targets) in &graph.edges {
        for to in targets {
            let (Some(&a), Some(&b)) = (layers.get(&from[0]), layers.get(&to[0])) else { continue };
            if b > a {
                wrong.push(format!("{}: `{}` (layer {a}) uses `{}` (layer {b})", graph.at[&(from.clone(), to.clone())], name(from), name(to)));
            }
        }
    }
    assert!(wrong.is_empty(), "uses against the layer order of src/lib.rs:\n{}", wrong.join("\n"));
}

/// Strongly connected components of more than one module (Tarjan, iterative enough for a crate).
fn cycles(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct State<'a> {
        edges: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'a Module, usize>,
        low: BTreeMap<&'a Module, usize>,
        stack: Vec<&'a Module>,
        on_stack: BTreeSet<&'a Module>,
        out: Vec<Vec<Module>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a Module) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.edges.get(v).into_iter().flatten() {
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.clone());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.out.push(component);
            }
        }
    }
    let mut state = State { edges, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), on_stack: BTreeSet::new(), out: Vec::new() };
    for v in edges.keys() {
        if !state.index.contains_key(v) {
            visit(&mut state, v);
        }
    }
    state.out
}

#[test]
fn no_modules_use_each_other() {
    let graph = graph();
    let found: Vec<String> = cycles(&graph.edges)
        .iter()
        .map(|c| {
            let members: BTreeSet<&Module> = c.iter().collect();
            let edges: Vec<String> = c
                .iter()
                .flat_map(|from| graph.edges[from].iter().filter(|to| members.contains(to)).map(move |to| (from, to)))
                .map(|(from, to)| format!("  {}: {} -> {}", graph.at[&(from.clone(), to.clone())], name(from), name(to)))
                .collect();
            format!("{}\n{}", c.iter().map(name).collect::<Vec<_>>().join(", "), edges.join("\n"))
        })
        .collect();
    assert!(found.is_empty(), "modules that use each other:\n{}", found.join("\n"));
}

#[test]
fn the_reader_sees_uses_and_skips_comments() {
    let module: Module = vec!["a".into(), "b".into()];
    let text = "use crate::x::{y, z::w};\n// crate::hidden\nlet v = super::c::d(); /* crate::no */\n";
    let found: Vec<String> = uses(&module, text).into_iter().map(|(_, p)| p.join("::")).collect();
    assert_eq!(found, ["x::y", "x::z::w", "a::c::d"]);
}
