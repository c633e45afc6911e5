//! The import rules of `docs/ARCHITECTURE.md` ("Import rules"), checked against the code: which
//! top-level module may use which, and no import cycles between top-level modules nor between the
//! files (or folders) of one module.
//!
//! References are read from the source text: `use` trees and inline `crate::`/`super::`/`self::`
//! paths, resolved through `pub use` re-exports to the module that defines them. Unit-test modules
//! (`#[cfg(test)] mod …`) are not counted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type ModPath = Vec<String>;

struct Crate {
    /// Every module that has its own file, by path (`[]` is the crate root).
    modules: BTreeSet<ModPath>,
    /// Source text (comments and test modules removed) of each module file.
    sources: BTreeMap<ModPath, String>,
    /// `pub use` re-exports: (module, exported name) -> the absolute path it names.
    aliases: BTreeMap<(ModPath, String), ModPath>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn module_path(rel: &Path) -> ModPath {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().to_string())
        .collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts
}

/// Drops `//` comments and everything from the first `#[cfg(test)]` module on.
fn clean(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]" {
            if let Some(next) = lines.peek() {
                let n = next.trim_start();
                if n.starts_with("mod ") || n.starts_with("pub mod ") {
                    break;
                }
            }
        }
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// Expands one `use` tree (`a::{b, c::{d as e}}`) into (path, name it is bound to) pairs.
fn expand_use(tree: &str) -> Vec<(Vec<String>, String)> {
    fn go(prefix: &[String], s: &str, out: &mut Vec<(Vec<String>, String)>) {
        let s = s.trim();
        if s.is_empty() {
            return;
        }
        // Split at the first top-level `{`.
        if let Some(open) = s.find('{') {
            let head = s[..open].trim().trim_end_matches("::");
            let close = s.rfind('}').unwrap_or(s.len());
            let inner = &s[open + 1..close];
            let mut p = prefix.to_vec();
            p.extend(
                head.split("::")
                    .filter(|x| !x.is_empty())
                    .map(|x| x.trim().to_string()),
            );
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        go(&p, &inner[start..i], out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            go(&p, &inner[start..], out);
            return;
        }
        let (path, alias) = match s.split_once(" as ") {
            Some((p, a)) => (p.trim(), Some(a.trim().to_string())),
            None => (s, None),
        };
        let mut p = prefix.to_vec();
        p.extend(path.split("::").map(|x| x.trim().to_string()));
        if p.last().is_some_and(|l| l == "self") {
            p.pop();
        }
        let name = alias.unwrap_or_else(|| p.last().cloned().unwrap_or_default());
        out.push((p, name));
    }
    let mut out = Vec::new();
    go(&[], tree, &mut out);
    out
}

/// `use` statements of a cleaned source: (is `pub`-ish, tree text).
fn use_statements(src: &str) -> Vec<(bool, String)> {
    let mut out = Vec::new();
    let bytes = src.as_bytes();
    let mut i = 0;
    while let Some(off) = src[i..].find("use ") {
        let at = i + off;
        i = at + 4;
        let before = src[..at].trim_end();
        let boundary = at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
        let statement_start = before.is_empty()
            || before.ends_with(';')
            || before.ends_with('{')
            || before.ends_with('}')
            || before.ends_with(']')
            || before.ends_with("pub")
            || before.ends_with(')');
        if !boundary || !statement_start {
            continue;
        }
        let public = before.ends_with("pub")
            || before.ends_with("pub(crate)")
            || before.ends_with("pub(super)");
        let Some(end) = src[i..].find(';') else { break };
        out.push((public, src[i..i + end].to_string()));
        i += end;
    }
    out
}

/// Inline paths that start with `crate::`, `super::` or `self::` (not `$crate`).
fn inline_paths(src: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes = src.as_bytes();
    for kw in ["crate::", "super::", "self::"] {
        let mut i = 0;
        while let Some(off) = src[i..].find(kw) {
            let at = i + off;
            i = at + kw.len();
            if at > 0 {
                let b = bytes[at - 1];
                if b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b == b':' {
                    continue;
                }
            }
            let rest: String = src[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let segs: Vec<String> = rest
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            out.push(segs);
        }
    }
    out
}

/// Makes a path that starts with `crate`/`super`/`self` absolute, seen from module `from`.
fn absolute(from: &ModPath, path: &[String]) -> Option<ModPath> {
    let mut cur: ModPath = match path.first().map(String::as_str) {
        Some("crate") => Vec::new(),
        Some("self") => from.clone(),
        Some("super") => from.clone(),
        _ => return None,
    };
    let mut rest = path;
    if rest[0] == "crate" || rest[0] == "self" {
        rest = &rest[1..];
    }
    while rest.first().is_some_and(|s| s == "super") {
        cur.pop();
        rest = &rest[1..];
    }
    cur.extend(rest.iter().cloned());
    Some(cur)
}

impl Crate {
    fn load() -> Crate {
        let src = root().join("src");
        let mut modules = BTreeSet::new();
        let mut sources = BTreeMap::new();
        for e in walk(&src) {
            let rel = e.strip_prefix(&src).unwrap().to_path_buf();
            if rel == Path::new("main.rs") {
                continue; // the binary: only calls `rbuild::cli::main()`
            }
            let m = module_path(&rel);
            let text = std::fs::read_to_string(&e).unwrap();
            modules.insert(m.clone());
            sources.insert(m, clean(&text));
        }
        let mut aliases = BTreeMap::new();
        for (m, text) in &sources {
            for (public, tree) in use_statements(text) {
                if !public {
                    continue;
                }
                for (path, name) in expand_use(&tree) {
                    if name == "*" {
                        continue;
                    }
                    // `pub use x::y` inside module m: relative paths start at m.
                    let abs = match absolute(m, &path) {
                        Some(a) => a,
                        None => {
                            let mut a = m.clone();
                            a.extend(path.iter().cloned());
                            a
                        }
                    };
                    aliases.insert((m.clone(), name), abs);
                }
            }
        }
        Crate {
            modules,
            sources,
            aliases,
        }
    }

    /// The deepest module an absolute path names, following re-exports.
    fn resolve(&self, path: &[String], depth: usize) -> ModPath {
        let mut cur: ModPath = Vec::new();
        for (i, seg) in path.iter().enumerate() {
            let mut next = cur.clone();
            next.push(seg.clone());
            if self.modules.contains(&next) {
                cur = next;
                continue;
            }
            if depth < 8 {
                if let Some(target) = self.aliases.get(&(cur.clone(), seg.clone())) {
                    let mut t = target.clone();
                    t.extend(path[i + 1..].iter().cloned());
                    return self.resolve(&t, depth + 1);
                }
            }
            break;
        }
        cur
    }

    /// Every module each module file refers to (resolved, deduplicated).
    fn references(&self) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
        let mut out: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
        for (m, text) in &self.sources {
            let mut paths: Vec<Vec<String>> = inline_paths(text);
            for (_, tree) in use_statements(text) {
                paths.extend(expand_use(&tree).into_iter().map(|(p, _)| p));
            }
            let set = out.entry(m.clone()).or_default();
            for p in paths {
                let abs = match absolute(m, &p) {
                    Some(a) => a,
                    // `use child::x` in a module: relative to it.
                    None if p.len() > 1 => {
                        let mut a = m.clone();
                        a.extend(p.iter().cloned());
                        if !self.modules.contains(&a[..m.len() + 1]) {
                            continue;
                        }
                        a
                    }
                    None => continue,
                };
                set.insert(self.resolve(&abs, 0));
            }
        }
        out
    }

    /// Edges between siblings: for `from -> to`, the children of their common ancestor that
    /// contain each. A module using its own ancestors or descendants adds none. Keyed by the
    /// common ancestor; each edge remembers one file that makes it.
    fn sibling_edges(&self) -> BTreeMap<ModPath, BTreeMap<(String, String), ModPath>> {
        let mut out: BTreeMap<ModPath, BTreeMap<(String, String), ModPath>> = BTreeMap::new();
        for (from, tos) in self.references() {
            for to in tos {
                let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
                if common == from.len() || common == to.len() {
                    continue;
                }
                out.entry(from[..common].to_vec())
                    .or_default()
                    .entry((from[common].clone(), to[common].clone()))
                    .or_insert_with(|| from.clone());
            }
        }
        out
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
    out
}

/// The "import rules" block of docs/ARCHITECTURE.md: `module -> allowed, modules` per line.
fn rules(doc: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut rules = BTreeMap::new();
    let mut inside = false;
    let mut found = false;
    for line in doc.lines() {
        let t = line.trim();
        if t.starts_with("```") {
            if inside {
                break;
            }
            if t.to_lowercase().contains("import rules") {
                inside = true;
                found = true;
            }
            continue;
        }
        if !inside || t.is_empty() || t.starts_with('#') {
            continue;
        }
        let (m, allowed) = t
            .split_once("->")
            .unwrap_or_else(|| panic!("import rules: {t:?} is not `module -> a, b`"));
        let allowed = allowed
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty() && s != "(none)")
            .collect();
        rules.insert(m.trim().to_string(), allowed);
    }
    assert!(
        found,
        "docs/ARCHITECTURE.md has no fenced block titled \"import rules\""
    );
    rules
}

/// Strongly connected components with more than one member (Tarjan).
fn cycles(edges: &BTreeMap<(String, String), ModPath>) -> Vec<Vec<String>> {
    let mut graph: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (a, b) in edges.keys() {
        graph.entry(a).or_default().push(b);
        graph.entry(b).or_default();
    }
    struct T<'a> {
        graph: &'a BTreeMap<&'a str, Vec<&'a str>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let i = t.index.len();
        t.index.insert(v, i);
        t.low.insert(v, i);
        t.stack.push(v);
        t.on.insert(v);
        for &w in &t.graph[v] {
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        graph: &graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for &v in graph.keys() {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

fn doc_rules() -> BTreeMap<String, BTreeSet<String>> {
    let doc = std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).unwrap();
    rules(&doc)
}

#[test]
fn every_top_level_module_has_import_rules() {
    let rules = doc_rules();
    let krate = Crate::load();
    let missing: Vec<String> = krate
        .modules
        .iter()
        .filter(|m| m.len() == 1)
        .map(|m| m[0].clone())
        .filter(|m| !rules.contains_key(m))
        .collect();
    assert!(
        missing.is_empty(),
        "top-level modules missing from the import rules of docs/ARCHITECTURE.md: {missing:?}"
    );
}

#[test]
fn top_level_imports_follow_the_rules() {
    let rules = doc_rules();
    let krate = Crate::load();
    let edges = krate.sibling_edges();
    let mut bad = Vec::new();
    for ((from, to), file) in edges.get(&Vec::new()).cloned().unwrap_or_default() {
        // A module the rules do not list is reported by the other test.
        if let Some(allowed) = rules.get(&from) {
            if !allowed.contains(&to) {
                bad.push(format!("{from} -> {to} (in {})", file.join("::")));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "imports not allowed by docs/ARCHITECTURE.md (import rules):\n  {}",
        bad.join("\n  ")
    );
}

#[test]
fn no_import_cycles_between_modules_or_files() {
    let krate = Crate::load();
    let mut found = Vec::new();
    for (parent, edges) in krate.sibling_edges() {
        for comp in cycles(&edges) {
            let at = if parent.is_empty() {
                "crate".to_string()
            } else {
                parent.join("::")
            };
            let via: Vec<String> = edges
                .iter()
                .filter(|((a, b), _)| comp.contains(a) && comp.contains(b))
                .map(|((a, b), f)| format!("{a} -> {b} (in {})", f.join("::")))
                .collect();
            found.push(format!("cycle in {at}: {}", via.join(", ")));
        }
    }
    assert!(found.is_empty(), "import cycles:\n  {}", found.join("\n  "));
}

/// The reader itself: a use tree, a re-export and a cycle are seen as such.
#[test]
fn reader_sees_use_trees_reexports_and_cycles() {
    let got: Vec<Vec<String>> = expand_use("crate::{a::{b, c as d}, e::self}")
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        got,
        vec![
            s(&["crate", "a", "b"]),
            s(&["crate", "a", "c"]),
            s(&["crate", "e"])
        ]
    );
    let krate = Crate::load();
    // `store::blob` is a re-export of `store::content::blob`.
    assert_eq!(
        krate.resolve(&s(&["store", "blob", "BlobWriter"]), 0),
        s(&["store", "content", "blob"])
    );
    // Real edges are seen, at the top level and between the parts of a module.
    let real = krate.sibling_edges();
    let has = |at: &[&str], a: &str, b: &str| {
        real.get(&s(at))
            .is_some_and(|e| e.contains_key(&(a.to_string(), b.to_string())))
    };
    assert!(has(&[], "cli", "store"));
    assert!(has(&["store"], "gc", "meta"));
    assert!(has(&["store"], "content", "meta"));
    assert!(has(&["export"], "oci_layout", "layout"));
    let mut edges = BTreeMap::new();
    edges.insert(("a".to_string(), "b".to_string()), Vec::new());
    edges.insert(("b".to_string(), "c".to_string()), Vec::new());
    assert!(cycles(&edges).is_empty());
    edges.insert(("c".to_string(), "a".to_string()), Vec::new());
    assert_eq!(cycles(&edges), vec![s(&["a", "b", "c"])]);
    assert_eq!(
        inline_paths("x = $crate::a; y = crate::store::Store::open(super::z)"),
        vec![s(&["crate", "store", "Store", "open"]), s(&["super", "z"])]
    );
}
