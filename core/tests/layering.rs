//! The layering of core's modules, checked against the source (after rust-analyzer's tidy
//! tests): ARCHITECTURE.md's layer table lists every module of `core/src` in order, and a module
//! may use only the modules listed before it. This test reads the table, then every path that
//! names a module of the crate in `core/src` (`use crate::...`, `use super::...`, and paths
//! through the names those bring in), and fails on each use against the order, naming the file
//! and line.
//!
//! The crate root (`lib.rs`) may use everything; `sys` and its files are one module; a module may
//! re-export (`pub use`) the items of its own submodules.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

fn core_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The module order from ARCHITECTURE.md: the backticked names in the second column of the
/// table under the heading `### Layers`, in order.
fn layer_order() -> Vec<String> {
    let path = core_dir().join("../ARCHITECTURE.md");
    let text = fs::read_to_string(&path).expect("ARCHITECTURE.md");
    let section = text
        .split("\n### Layers")
        .nth(1)
        .expect("ARCHITECTURE.md has a `### Layers` section");
    let mut order = Vec::new();
    for line in section.lines().skip(1) {
        if line.starts_with('#') {
            break;
        }
        let cells: Vec<&str> = line.split('|').collect();
        if cells.len() < 4 || cells[2].trim().starts_with('-') {
            continue;
        }
        for name in cells[2].split('`').skip(1).step_by(2) {
            order.push(name.to_string());
        }
    }
    assert!(
        !order.is_empty(),
        "the layer table in ARCHITECTURE.md is empty"
    );
    order
}

/// Every module of the crate (`pool::handler`), with its file. The crate root is "".
fn modules() -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, prefix: &[String], out: &mut BTreeMap<String, PathBuf>) {
        for entry in fs::read_dir(dir).expect("core/src").flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                let mut p = prefix.to_vec();
                p.push(name);
                walk(&path, &p, out);
            } else if let Some(stem) = name.strip_suffix(".rs") {
                let mut p = prefix.to_vec();
                if stem != "mod" && stem != "lib" {
                    p.push(stem.to_string());
                }
                out.insert(p.join("::"), path);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&core_dir().join("src"), &[], &mut out);
    out
}

/// The module as the layer table counts it: `sys` and everything under it is one module.
fn unit(module: &str) -> &str {
    if module == "sys" || module.starts_with("sys::") {
        "sys"
    } else {
        module
    }
}

/// The source with comments, string and character literals blanked out (newlines kept, so that
/// line numbers stay right).
fn strip(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let blank = |s: &[u8], out: &mut String| {
        for &c in s {
            out.push(if c == b'\n' { '\n' } else { ' ' });
        }
    };
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            let end = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
            blank(&rest[..end], &mut out);
            i += end;
        } else if rest.starts_with(b"/*") {
            let end = src[i + 2..].find("*/").map_or(rest.len(), |e| e + 4);
            blank(&rest[..end], &mut out);
            i += end;
        } else if rest.starts_with(b"r#\"") || rest.starts_with(b"r\"") {
            let hashes = rest[1..].iter().take_while(|&&c| c == b'#').count();
            let close = format!("\"{}", "#".repeat(hashes));
            let body = 2 + hashes;
            let end = src[i + body..]
                .find(&close)
                .map_or(rest.len(), |e| body + e + close.len());
            blank(&rest[..end], &mut out);
            i += end;
        } else if rest[0] == b'"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != b'"' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(rest.len());
            blank(&rest[..end], &mut out);
            i += end;
        } else if rest[0] == b'\'' && rest.len() > 2 && (rest[1] == b'\\' || rest[2] == b'\'') {
            // A character literal ('x', '\n', '\u{..}'); a lifetime has no closing quote.
            let end = rest[2..]
                .iter()
                .position(|&c| c == b'\'')
                .map_or(rest.len(), |e| e + 3);
            blank(&rest[..end], &mut out);
            i += end;
        } else {
            let c = src[i..].chars().next().expect("in bounds");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The `use` declarations of `code` as (byte offset, tree text), and the code with them
/// blanked out.
fn use_declarations(code: &str) -> (Vec<(usize, String)>, String) {
    let mut uses = Vec::new();
    let mut rest = code.to_string();
    let mut from = 0;
    while let Some(k) = code[from..].find("use ") {
        let at = from + k;
        from = at + 4;
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| is_ident(c) || c == '$' || c == ':') {
            continue;
        }
        let Some(end) = code[at..].find(';') else {
            break;
        };
        uses.push((at, code[at + 4..at + end].to_string()));
        rest.replace_range(at..at + end, &" ".repeat(end));
        from = at + end;
    }
    (uses, rest)
}

/// Expands a use tree (`crate::{a::b, c as d, e::*}`) into (path, name it brings in).
fn expand_tree(tree: &str, prefix: &[String], out: &mut Vec<(Vec<String>, Option<String>)>) {
    let tree = tree.trim();
    // Split off a top-level group.
    if let Some(open) = tree.find('{') {
        let head: Vec<String> = tree[..open]
            .split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        let inner = &tree[open + 1..tree.rfind('}').expect("balanced braces")];
        let mut depth = 0;
        let mut start = 0;
        let mut parts = Vec::new();
        for (k, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&inner[start..k]);
                    start = k + 1;
                }
                _ => {}
            }
        }
        parts.push(&inner[start..]);
        let mut p = prefix.to_vec();
        p.extend(head);
        for part in parts.into_iter().filter(|s| !s.trim().is_empty()) {
            expand_tree(part, &p, out);
        }
        return;
    }
    let (path, alias) = match tree.split_once(" as ") {
        Some((p, a)) => (p.trim(), Some(a.trim().to_string())),
        None => (tree, None),
    };
    let mut p = prefix.to_vec();
    p.extend(path.split("::").map(|s| s.trim().to_string()));
    let name = match p.last().map(String::as_str) {
        Some("*") => {
            p.pop();
            None
        }
        Some("self") => {
            p.pop();
            alias.or_else(|| p.last().cloned())
        }
        Some(last) => alias.or_else(|| Some(last.to_string())),
        None => None,
    };
    out.push((p, name));
}

/// Paths of two or more segments (`a::b::c`) in `code`, with their byte offsets; generic
/// arguments and turbofish are not followed.
fn inline_paths(code: &str) -> Vec<(usize, Vec<String>)> {
    let mut out = Vec::new();
    let chars: Vec<(usize, char)> = code.char_indices().collect();
    let mut k = 0;
    while k < chars.len() {
        let (at, c) = chars[k];
        let prev = if k == 0 { ' ' } else { chars[k - 1].1 };
        if !(c.is_alphabetic() || c == '_') || is_ident(prev) || prev == '$' || prev == ':' {
            k += 1;
            continue;
        }
        let mut segs = Vec::new();
        let mut j = k;
        loop {
            let s = j;
            while j < chars.len() && is_ident(chars[j].1) {
                j += 1;
            }
            if s == j {
                break;
            }
            segs.push(chars[s..j].iter().map(|&(_, c)| c).collect::<String>());
            if j + 1 < chars.len() && chars[j].1 == ':' && chars[j + 1].1 == ':' {
                j += 2;
            } else {
                break;
            }
        }
        if segs.len() > 1 {
            out.push((at, segs));
        }
        k = j.max(k + 1);
    }
    out
}

struct Resolver<'a> {
    modules: &'a BTreeMap<String, PathBuf>,
    here: Vec<String>,
    aliases: BTreeMap<String, Vec<String>>,
}

impl Resolver<'_> {
    /// The absolute path (segments after `crate`) that `segs` names, if it is in this crate.
    fn absolute(&self, segs: &[String]) -> Option<Vec<String>> {
        let first = segs.first()?.as_str();
        let mut abs = match first {
            "crate" => Vec::new(),
            "self" => self.here.clone(),
            "super" => {
                let ups = segs.iter().take_while(|s| *s == "super").count();
                let mut p = self.here.clone();
                p.truncate(p.len().checked_sub(ups)?);
                p.extend(segs[ups..].iter().cloned());
                return Some(p);
            }
            _ => {
                if let Some(target) = self.aliases.get(first) {
                    let mut p = target.clone();
                    p.extend(segs[1..].iter().cloned());
                    return Some(p);
                }
                let mut child = self.here.clone();
                child.push(first.to_string());
                if !self.modules.contains_key(&child.join("::")) {
                    return None;
                }
                let mut p = self.here.clone();
                p.extend(segs.iter().cloned());
                return Some(p);
            }
        };
        abs.extend(segs[1..].iter().cloned());
        Some(abs)
    }

    /// The module an absolute path lies in: the longest prefix that is a module.
    fn module_of(&self, abs: &[String]) -> String {
        (0..=abs.len())
            .rev()
            .map(|n| abs[..n].join("::"))
            .find(|m| self.modules.contains_key(m))
            .unwrap_or_default()
    }
}

/// The inline modules of `code` (`mod tests { ... }`): name and byte range of the body.
fn inline_modules(code: &str) -> Vec<(String, std::ops::Range<usize>)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(k) = code[from..].find("mod ") {
        let at = from + k;
        from = at + 4;
        if code[..at].chars().next_back().is_some_and(is_ident) {
            continue;
        }
        let after = &code[at + 4..];
        let name: String = after.chars().take_while(|&c| is_ident(c)).collect();
        let tail = after[name.len()..].trim_start();
        if name.is_empty() || !tail.starts_with('{') {
            continue;
        }
        let open = code.len() - tail.len();
        let mut depth = 0;
        let mut close = code.len();
        for (j, c) in code[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        close = open + j;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.push((name, open..close));
    }
    out
}

fn line_of(text: &str, at: usize) -> usize {
    text[..at].matches('\n').count() + 1
}

#[test]
fn modules_use_only_modules_before_them_in_the_layer_table() {
    let order = layer_order();
    let modules = modules();
    let rank: BTreeMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), i))
        .collect();
    let mut problems = Vec::new();

    let units: BTreeSet<&str> = modules
        .keys()
        .map(|m| unit(m))
        .filter(|m| !m.is_empty())
        .collect();
    for m in &units {
        if !rank.contains_key(m) {
            problems.push(format!(
                "module `{m}` is missing from the layer table in ARCHITECTURE.md"
            ));
        }
    }
    for m in &order {
        if !units.contains(m.as_str()) {
            problems.push(format!(
                "ARCHITECTURE.md's layer table lists `{m}`, which is not a module of core/src"
            ));
        }
    }

    for (module, file) in &modules {
        let src = fs::read_to_string(file).expect("source file");
        let code = strip(&src);
        let (uses, rest) = use_declarations(&code);
        let file_module: Vec<String> = if module.is_empty() {
            Vec::new()
        } else {
            module.split("::").map(String::from).collect()
        };
        let inline = inline_modules(&code);
        // The module a position is in: the file's, or an inline module inside it.
        let module_at = |at: usize| -> Vec<String> {
            let mut m = file_module.clone();
            m.extend(
                inline
                    .iter()
                    .filter(|(_, r)| r.contains(&at))
                    .map(|(n, _)| n.clone()),
            );
            m
        };
        let mut resolver = Resolver {
            modules: &modules,
            here: file_module.clone(),
            aliases: BTreeMap::new(),
        };
        let mut found: Vec<(usize, Vec<String>)> = Vec::new();
        for (at, tree) in &uses {
            resolver.here = module_at(*at);
            let before = code[..*at].trim_end();
            let reexport = before.ends_with("pub") || before.ends_with("pub(crate)");
            let tree = tree
                .trim_start_matches("pub(crate) ")
                .trim_start_matches("pub ");
            let mut items = Vec::new();
            expand_tree(tree, &[], &mut items);
            for (path, name) in items {
                if let Some(abs) = resolver.absolute(&path) {
                    if let Some(name) = name {
                        resolver.aliases.insert(name, abs.clone());
                    }
                    // A module's public face may re-export its own submodules' items: that is
                    // the submodules serving the module, not the module depending on a layer
                    // above it.
                    if reexport
                        && abs.starts_with(&resolver.here)
                        && abs.len() > resolver.here.len()
                    {
                        continue;
                    }
                    found.push((*at, abs));
                }
            }
        }
        for (at, segs) in inline_paths(&rest) {
            resolver.here = module_at(at);
            if let Some(abs) = resolver.absolute(&segs) {
                found.push((at, abs));
            }
        }
        let me = unit(module);
        let rel = file.strip_prefix(core_dir()).unwrap_or(file).display();
        for (at, abs) in found {
            let target = resolver.module_of(&abs);
            let target = unit(&target);
            if me.is_empty() || target == me {
                continue;
            }
            let line = line_of(&code, at);
            if target.is_empty() {
                problems.push(format!(
                    "core/{rel}:{line}: `{me}` uses `crate::{}` from the crate root; name the \
                     module that defines it",
                    abs.join("::")
                ));
                continue;
            }
            if let (Some(&a), Some(&b)) = (rank.get(me), rank.get(target)) {
                if b >= a {
                    problems.push(format!(
                        "core/{rel}:{line}: `{me}` uses `{target}`, which the layer table in \
                         ARCHITECTURE.md lists after it"
                    ));
                }
            }
        }
    }
    problems.sort();
    problems.dedup();
    assert!(
        problems.is_empty(),
        "the layering is broken:\n{}",
        problems.join("\n")
    );
}

/// The modules that may name `EntryOffset`: calling one is sound only for an offset that came
/// unchanged from the process that made it (see `sys::fnptr`), so the places that make, carry
/// and call them are few and listed here.
const ENTRY_OFFSET_MODULES: &[&str] = &[
    "sys",
    "launch::spec",
    "process",
    "synchronize",
    "pool",
    "pool::protocol",
];

#[test]
fn entry_offsets_stay_in_the_modules_that_make_and_carry_them() {
    let mut problems = Vec::new();
    for (module, file) in modules() {
        let code = strip(&fs::read_to_string(&file).expect("source file"));
        if code.contains("EntryOffset") && !ENTRY_OFFSET_MODULES.contains(&unit(&module)) {
            problems.push(format!(
                "{}: names EntryOffset, which only {ENTRY_OFFSET_MODULES:?} may",
                file.display()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_reader_understands_the_forms_of_use() {
    let mut out = Vec::new();
    expand_tree("crate::{a::{self, b as c}, d::*}", &[], &mut out);
    let got: Vec<(String, Option<String>)> =
        out.into_iter().map(|(p, n)| (p.join("::"), n)).collect();
    assert_eq!(
        got,
        [
            ("crate::a".to_string(), Some("a".to_string())),
            ("crate::a::b".to_string(), Some("c".to_string())),
            ("crate::d".to_string(), None),
        ]
    );
    let code = strip("let s = \"crate::x::y\"; // crate::z\nlet c = '\"'; f::<'a>(crate::w::v)");
    let paths: Vec<String> = inline_paths(&code)
        .into_iter()
        .map(|(_, p)| p.join("::"))
        .collect();
    assert_eq!(paths, ["crate::w::v"]);
}
