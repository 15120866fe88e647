//! The layering rules of ARCHITECTURE.md, checked on the source: nothing imports from a layer
//! above its own, the import map between files has no circle, and no source file is longer
//! than a head holds (500 lines: the crate, the tests, the page and the scripts).
//!
//! The map is drawn from the code as written: every `crate::…`, `super::…` and `self::…`
//! path (in `use` lines, grouped imports expanded, and inline), and every use of a child
//! module declared with `mod x;`, resolved to the file that defines the longest module prefix.
//! A file's use of its own ancestors (`super::` up the tree) is part of belonging to them and
//! is not an edge; `#[cfg(test)]` modules are left out (a test may reach anywhere).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Layers, bottom up: a module may import from its own layer and those below.
const LAYERS: &[&[&str]] = &[
    &["num", "error", "clock"],
    &["tensor"],
    &["probe", "weights", "image"],
    &["prune"],
    &["models"],
    &["bench", "eval", "overlay", "quantize", "web", "hub", "testing"],
];

const MAX_LINES: usize = 500;

type Module = Vec<String>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `src/tensor/cpu/mod.rs` → `["tensor", "cpu"]`; `src/lib.rs` → `[]`.
fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Module = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The source without `#[cfg(test)]` / `#[cfg(all(test, …))]` inline modules and comments.
fn without_tests(src: &str) -> String {
    let lines: Vec<&str> = src.lines().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < lines.len() {
        let t = lines[i].trim();
        let is_mod = |l: &str| {
            let l = l.trim_start();
            (l.starts_with("mod ") || l.starts_with("pub mod ") || l.starts_with("pub(crate) mod ")) && l.trim_end().ends_with('{')
        };
        if (t.starts_with("#[cfg(test)]") || t.starts_with("#[cfg(all(test")) && i + 1 < lines.len() && is_mod(lines[i + 1]) {
            let mut depth = 0i32;
            i += 1;
            while i < lines.len() {
                depth += lines[i].matches('{').count() as i32 - lines[i].matches('}').count() as i32;
                i += 1;
                if depth <= 0 {
                    break;
                }
            }
            continue;
        }
        let code = match lines[i].find("//") {
            Some(at) => &lines[i][..at],
            None => lines[i],
        };
        out.push_str(code);
        out.push('\n');
        i += 1;
    }
    out
}

/// `a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else { return vec![tree.to_string()] };
    let (prefix, inner) = (&tree[..open], &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())]);
    let (mut parts, mut depth, mut cur) = (Vec::new(), 0, String::new());
    for ch in inner.chars() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ => {}
        }
        if ch == ',' && depth == 0 {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(ch);
        }
    }
    parts.push(cur);
    parts.iter().filter(|p| !p.trim().is_empty()).flat_map(|p| expand(p).into_iter().map(move |x| format!("{prefix}{x}"))).collect()
}

/// Every `crate::`/`super::`/`self::` path in `code` (outside `use` items), and the `use` trees.
fn paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = String::new();
    let mut s = code;
    while let Some(at) = find_use(s) {
        rest.push_str(&s[..at]);
        let end = s[at..].find(';').map_or(s.len(), |e| at + e);
        let tree = s[at..end].trim_start().trim_start_matches("pub(crate) ").trim_start_matches("pub ").trim_start_matches("use ").replace('\n', " ");
        if ["crate::", "super::", "self::"].iter().any(|p| tree.starts_with(p)) {
            out.extend(expand(&tree));
        }
        s = &s[(end + 1).min(s.len())..];
    }
    rest.push_str(s);
    let bytes = rest.as_bytes();
    for root in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(i) = rest[from..].find(root) {
            let start = from + i;
            from = start + root.len();
            if start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_' || bytes[start - 1] == b':' || bytes[start - 1] == b'$') {
                continue;
            }
            let len = rest[start..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')).unwrap_or(rest.len() - start);
            out.push(rest[start..start + len].trim_end_matches(':').to_string());
        }
    }
    out
}

/// The start of the next `use` item (at a line start, possibly `pub`).
fn find_use(s: &str) -> Option<usize> {
    let mut off = 0;
    for line in s.split_inclusive('\n') {
        let t = line.trim_start();
        if t.starts_with("use ") || t.starts_with("pub use ") || t.starts_with("pub(crate) use ") {
            return Some(off + (line.len() - t.len()));
        }
        off += line.len();
    }
    None
}

fn resolve(from: &Module, path: &str, modules: &BTreeSet<Module>) -> Option<Module> {
    let segs: Vec<&str> = path.split("::").map(|s| s.split(" as ").next().unwrap_or(s).trim()).collect();
    let (mut base, mut rest) = match segs.first()? {
        &"crate" => (Vec::new(), &segs[1..]),
        &"super" | &"self" => (from.clone(), &segs[..]),
        _ => return None,
    };
    while let Some(&s) = rest.first() {
        match s {
            "super" => {
                base.pop();
            }
            "self" => {}
            _ => break,
        }
        rest = &rest[1..];
    }
    let mut best = base.clone();
    for s in rest {
        base.push(s.to_string());
        if modules.contains(&base) {
            best = base.clone();
        } else {
            break;
        }
    }
    Some(best)
}

fn name(m: &Module) -> String {
    if m.is_empty() {
        "lib".into()
    } else {
        m.join("/")
    }
}

struct Map {
    edges: BTreeMap<Module, BTreeSet<Module>>,
}

fn import_map() -> Map {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.retain(|f| !f.starts_with(src.join("bin")));
    let modules: BTreeSet<Module> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for f in &files {
        let m = module_of(&src, f);
        let code = without_tests(&std::fs::read_to_string(f).unwrap());
        let mut refs = paths(&code);
        // A child module used by name (`cpu::matmul(…)` after `mod cpu;`).
        for line in code.lines() {
            let t = line.trim_start().trim_start_matches("pub(crate) ").trim_start_matches("pub ");
            if let Some(child) = t.strip_prefix("mod ").and_then(|r| r.strip_suffix(';')) {
                let used = code.match_indices(&format!("{child}::")).any(|(i, _)| {
                    let b = code.as_bytes();
                    i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] == b':')
                });
                if used {
                    refs.push(format!("self::{child}"));
                }
            }
        }
        let out = edges.entry(m.clone()).or_default();
        for r in refs {
            if let Some(t) = resolve(&m, &r, &modules) {
                // Not an edge: itself, or one of its ancestors (the module it belongs to).
                if t != m && modules.contains(&t) && !m.starts_with(&t) {
                    out.insert(t);
                }
            }
        }
    }
    Map { edges }
}

fn layer(m: &Module) -> usize {
    let top = m.first().map_or("", String::as_str);
    LAYERS.iter().position(|l| l.contains(&top)).unwrap_or_else(|| panic!("module `{top}` has no layer in tests/architecture.rs's LAYERS (add it, bottom up)"))
}

#[test]
fn nothing_imports_from_a_layer_above_its_own() {
    let map = import_map();
    let mut up = Vec::new();
    for (from, tos) in &map.edges {
        if from.is_empty() {
            continue; // lib.rs declares every layer
        }
        for to in tos.iter().filter(|t| !t.is_empty()) {
            if layer(to) > layer(from) {
                up.push(format!("{} → {}", name(from), name(to)));
            }
        }
    }
    assert!(up.is_empty(), "upward imports (see ARCHITECTURE.md's layers):\n{}", up.join("\n"));
}

#[test]
fn the_import_map_has_no_circle() {
    let map = import_map();
    // Tarjan's strongly connected components; any with two or more files is a circle.
    struct T<'a> {
        edges: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'a Module, usize>,
        low: BTreeMap<&'a Module, usize>,
        stack: Vec<&'a Module>,
        on: BTreeSet<&'a Module>,
        circles: Vec<Vec<String>>,
    }
    impl<'a> T<'a> {
        fn visit(&mut self, v: &'a Module) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on.insert(v);
            for w in self.edges.get(v).into_iter().flatten() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let l = self.low[v].min(self.low[w]);
                    self.low.insert(v, l);
                } else if self.on.contains(w) {
                    let l = self.low[v].min(self.index[w]);
                    self.low.insert(v, l);
                }
            }
            if self.low[v] == self.index[v] {
                let mut comp = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on.remove(w);
                    comp.push(name(w));
                    if w == v {
                        break;
                    }
                }
                if comp.len() > 1 {
                    comp.sort();
                    self.circles.push(comp);
                }
            }
        }
    }
    let mut t = T { edges: &map.edges, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), on: BTreeSet::new(), circles: Vec::new() };
    for v in map.edges.keys() {
        if !t.index.contains_key(v) {
            t.visit(v);
        }
    }
    assert!(t.circles.is_empty(), "files that import each other (directly or round a circle): {:?}", t.circles);
    // The map is really drawn (a parser that found nothing would pass the checks above).
    let n: usize = map.edges.values().map(BTreeSet::len).sum();
    assert!(n > 200, "only {n} imports found: the parser is broken");
    let cpu = map.edges.get(&vec!["tensor".to_string(), "cpu".to_string(), "attention".to_string()]).expect("tensor/cpu/attention.rs");
    assert!(cpu.contains(&vec!["tensor".to_string(), "cpu".to_string(), "gemm".to_string()]), "attention runs on the GEMM engine: {cpu:?}");
}

#[test]
fn a_seeded_circle_and_an_upward_import_are_caught() {
    // The parser on a made-up file: grouped imports, inline paths, a child module, ancestors.
    let code = "use crate::tensor::{Device, cpu::{gemm::X, simd}};\nmod inner;\nfn f() { crate::prune::n_keep(); inner::g(); super::super::Tensor; }\n#[cfg(test)]\nmod tests {\n    use crate::models::clip;\n}\n";
    let code = without_tests(code);
    let mut got = paths(&code);
    got.sort();
    assert_eq!(got, ["crate::prune::n_keep", "crate::tensor::Device", "crate::tensor::cpu::gemm::X", "crate::tensor::cpu::simd", "super::super::Tensor"]);
    let modules: BTreeSet<Module> =
        [vec![], vec!["tensor".into()], vec!["tensor".into(), "cpu".into()], vec!["tensor".into(), "cpu".into(), "gemm".into()], vec!["prune".into()]].into();
    let from: Module = vec!["tensor".into(), "cpu".into(), "attention".into()];
    assert_eq!(resolve(&from, "crate::tensor::cpu::gemm::X", &modules), Some(vec!["tensor".into(), "cpu".into(), "gemm".into()]));
    assert_eq!(resolve(&from, "super::super::Tensor", &modules), Some(vec!["tensor".into()]));
    assert!(layer(&vec!["prune".into()]) > layer(&from), "tensor → prune is upward");
}

#[test]
fn no_source_file_is_longer_than_a_head_holds() {
    // Ours in every language: the crate, the tests and fixture scripts, the page, the scripts
    // (installed packages under node_modules are not ours).
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "node_modules") {
                    walk(&p, out);
                }
            } else if p.extension().is_some_and(|x| ["rs", "js", "mjs", "py", "sh", "wgsl"].iter().any(|e| x == *e)) {
                out.push(p);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for d in ["src", "tests", "www", "scripts"] {
        walk(&root.join(d), &mut files);
    }
    assert!(files.len() > 150, "only {} files found", files.len());
    let mut long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            (n > MAX_LINES).then(|| format!("{} ({n} lines)", f.strip_prefix(root).unwrap().display()))
        })
        .collect();
    long.sort();
    assert!(long.is_empty(), "source files over {MAX_LINES} lines: split them by concern: {long:?}");
}
