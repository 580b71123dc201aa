//! No module of the library imports one that imports it back (directly or around a longer
//! loop): each module has one job, and a cycle means two jobs have grown into each other.
//! Read from the source, so a new cycle fails here before review.
//!
//! An import is any path in the code (outside tests and comments) that names a module:
//! `crate::a::b`, `super::x` (repeated too), `self::x`, and a bare `child::Item` inside the
//! module that declares `child`. An item that a module only re-exports (`pub use
//! part::Item`) is followed to the module that defines it, so a facade cannot hide a loop.
//! A module may use the items its own ancestors define (a facade and the parts behind it are
//! one room).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// Module path (`relay::attempt`) -> source file text, tests and comments left out.
fn modules(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in fs::read_dir(dir).unwrap().map(Result::unwrap) {
            let path = entry.path();
            if path.is_dir() {
                if !path.ends_with("bin") {
                    walk(root, &path, out);
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(root).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
                parts.pop();
            }
            let text = fs::read_to_string(&path).unwrap();
            out.insert(parts.join("::"), code_of(&text));
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// The text before the tests, without comment lines.
fn code_of(text: &str) -> String {
    let code = text.split("#[cfg(test)]").next().unwrap_or("");
    code.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn join(base: &[&str], rest: &str) -> String {
    let mut parts: Vec<&str> = base.to_vec();
    parts.extend(rest.split("::").filter(|p| !p.is_empty()));
    parts.join("::")
}

/// The longest known module that `path` (`a::b::Item`) starts with, and what follows it.
fn resolve<'a>(path: &str, known: &'a BTreeMap<String, String>) -> Option<(&'a String, String)> {
    let all: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
    for len in (0..=all.len()).rev() {
        if let Some((key, _)) = known.get_key_value(&all[..len].join("::")) {
            return Some((key, all[len..].join("::")));
        }
    }
    None
}

/// Where `module` says `pub use PATH::Item` (or `PATH::{.., Item, ..}`): PATH, absolute.
fn reexport_source(module: &str, code: &str, item: &str) -> Option<String> {
    let segments: Vec<&str> = module.split("::").filter(|p| !p.is_empty()).collect();
    for (i, _) in code.match_indices("pub use ") {
        let statement: String = code[i + 8..].chars().take_while(|c| *c != ';').collect();
        let statement: String = statement.split_whitespace().collect();
        let (path, names) = match statement.split_once("::{") {
            Some((path, names)) => (path.to_string(), names.trim_end_matches('}').to_string()),
            None => match statement.rsplit_once("::") {
                Some((path, name)) => (path.to_string(), name.to_string()),
                None => continue,
            },
        };
        let named = names.split(',').any(|n| {
            let n = n.trim();
            n == item || n.ends_with(&format!(" as {item}"))
        });
        if !named {
            continue;
        }
        let absolute = if let Some(rest) = path.strip_prefix("crate::") {
            rest.to_string()
        } else if let Some(rest) = path.strip_prefix("self::") {
            join(&segments, rest)
        } else if let Some(rest) = path.strip_prefix("super::") {
            join(&segments[..segments.len().saturating_sub(1)], rest)
        } else {
            join(&segments, &path)
        };
        return Some(absolute);
    }
    None
}

/// Every module `module` imports, per the rules in this file's header.
fn imports(module: &str, code: &str, known: &BTreeMap<String, String>) -> BTreeSet<String> {
    let segments: Vec<&str> = module.split("::").filter(|p| !p.is_empty()).collect();
    let children: Vec<String> = known
        .keys()
        .filter_map(|k| {
            let rest = if module.is_empty() {
                k.as_str()
            } else {
                k.strip_prefix(module)?.strip_prefix("::")?
            };
            (!rest.is_empty() && !rest.contains("::")).then(|| rest.to_string())
        })
        .collect();
    let mut out = BTreeSet::new();
    let mut i = 0;
    let bytes = code.as_bytes();
    while i < code.len() {
        let starts_word = i == 0 || {
            let c = bytes[i - 1] as char;
            !(c.is_alphanumeric() || c == '_' || c == ':')
        };
        if !starts_word || !(bytes[i] as char).is_alphabetic() {
            i += 1;
            continue;
        }
        let path: String = code[i..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        i += path.len().max(1);
        let Some((head, _)) = path.split_once("::") else {
            continue;
        };
        let full = match head {
            "crate" => path["crate::".len()..].to_string(),
            "self" => join(&segments, &path["self::".len()..]),
            "super" => {
                let mut rest = path.as_str();
                let mut base = segments.clone();
                while let Some(r) = rest.strip_prefix("super::") {
                    base.pop();
                    rest = r;
                }
                join(&base, rest)
            }
            child if children.iter().any(|c| c == child) => join(&segments, &path),
            _ => continue,
        };
        let Some((mut target, mut item)) = resolve(&full, known) else {
            continue;
        };
        // Seen through re-exports: `facade::Item` where the facade says `pub use part::Item`
        // is an import of `part` (bounded: re-exports of re-exports, a few deep).
        for _ in 0..4 {
            let name = item.split("::").next().unwrap_or("");
            if name.is_empty() {
                break;
            }
            let Some(source) = reexport_source(target, &known[target], name) else {
                break;
            };
            match resolve(&format!("{source}::{name}"), known) {
                Some((t, rest)) if t != target => (target, item) = (t, rest),
                _ => break,
            }
        }
        let is_ancestor = target.is_empty() || module.starts_with(&format!("{target}::"));
        if target != module && !is_ancestor {
            out.insert(target.clone());
        }
    }
    out
}

/// Every loop in the import graph of the modules under `root`, each as `a -> b -> a`.
fn cycles(root: &Path) -> Vec<String> {
    let known = modules(root);
    let graph: BTreeMap<&String, BTreeSet<String>> = known
        .iter()
        .map(|(m, code)| (m, imports(m, code, &known)))
        .collect();
    // A cycle exists when a module reaches itself by following imports.
    let mut found = Vec::new();
    for start in graph.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<(String, Vec<String>)> =
            vec![((*start).clone(), vec![(*start).clone()])];
        while let Some((at, path)) = stack.pop() {
            for next in &graph[&at] {
                if next == *start {
                    found.push(path.join(" -> ") + " -> " + next);
                } else if seen.insert(next.clone()) {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push((next.clone(), longer));
                }
            }
        }
    }
    found
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    assert!(
        modules(Path::new("src")).contains_key("relay::attempt"),
        "read the library's modules"
    );
    let found = cycles(Path::new("src"));
    assert!(found.is_empty(), "module cycles:\n{}", found.join("\n"));
}

/// The reader sees each kind of path this file's header names: a tree written here with one
/// loop per kind is caught, and the same tree without loops passes.
#[test]
fn every_kind_of_import_is_seen() {
    let dir = std::env::temp_dir().join(format!("module-graph-{}", std::process::id()));
    let write = |path: &str, text: &str| {
        let path = dir.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    };
    let _ = fs::remove_dir_all(&dir);
    // conf (a facade) calls its child `check` by a bare relative path; `check` calls
    // `section`; `section` uses the error that `conf` re-exports from `conf::error`: no loop.
    write("lib.rs", "pub mod conf;\npub mod section;\n");
    write(
        "conf/mod.rs",
        "mod check;\nmod error;\npub use error::ConfError;\npub fn parse() { check::run() }\n",
    );
    write(
        "conf/check.rs",
        "pub fn run() { crate::section::check() }\n",
    );
    write("conf/error.rs", "pub struct ConfError;\n");
    write(
        "section.rs",
        "use crate::conf::ConfError;\npub fn check() {}\n",
    );
    assert_eq!(cycles(&dir), Vec::<String>::new());
    // The same error defined in the facade itself: section -> conf -> conf::check -> section.
    write(
        "conf/mod.rs",
        "mod check;\npub struct ConfError;\npub fn parse() { check::run() }\n",
    );
    let found = cycles(&dir);
    assert!(
        found
            .iter()
            .any(|c| c == "conf -> conf::check -> section -> conf"),
        "{found:?}"
    );
    // A `self::` and a `super::super::` path make loops too.
    write("conf/mod.rs", "mod check;\nmod error;\npub use error::ConfError;\npub fn parse() { self::check::run() }\n");
    write(
        "conf/error.rs",
        "pub struct ConfError;\npub fn f() { super::super::section::check() }\n",
    );
    write("section.rs", "pub fn check() { crate::conf::error::f() }\n");
    let found = cycles(&dir);
    assert!(
        found
            .iter()
            .any(|c| c == "conf::error -> section -> conf::error"),
        "{found:?}"
    );
    let _ = fs::remove_dir_all(&dir);
}
