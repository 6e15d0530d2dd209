//! The dependency picture of `src/` (shared/DESIGN.md): every module imports only
//! modules of lower layers, and the files of one folder import each other without a
//! circle. Read from the source's `crate::…` and `super::…` paths.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first: a top-level module may import only modules of the
/// layers before its own.
const LAYERS: &[&[&str]] = &[
    &["error"],
    &["rng", "canvas", "files"],
    &["outdir", "gpu"],
    &["collective"],
    &["data"],
    &["nn"],
    &["reference", "train"],
    &["twa"],
    &["landscape"],
    &["confusion"],
    &["run"],
    &["bench"],
];

fn layer_of(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|l| l.contains(&module))
        .unwrap_or_else(|| panic!("module `{module}` is in no layer of tests/layers.rs"))
}

/// Every `.rs` file below `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file below `src/`: `twa/average.rs` → [twa, average],
/// `twa/mod.rs` → [twa].
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The code of a file without its `#[cfg(test)]` module (tests may reach anywhere)
/// and without comments.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module paths `code` names: `crate::a::b` → [a, b], `super::b` (from a file of
/// folder [a]) → [a, b].
fn references(code: &str, folder: &[String]) -> BTreeSet<Vec<String>> {
    let mut out = BTreeSet::new();
    for (prefix, base) in [("crate::", Vec::new()), ("super::", folder.to_vec())] {
        let mut rest = code;
        while let Some(i) = rest.find(prefix) {
            let before = rest[..i].chars().last();
            rest = &rest[i + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let mut path = base.clone();
            path.extend(name.split("::").filter(|s| !s.is_empty()).map(String::from));
            // `prefix::a::{b::c, d}`: each first name of the list after the path.
            let after = &rest[name.len()..];
            if name.is_empty() || name.ends_with("::") {
                if let Some(list) = after.strip_prefix('{') {
                    let list = &list[..list.find('}').unwrap_or(list.len())];
                    for item in list.split(',') {
                        let first: String = item
                            .trim()
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        if !first.is_empty() && first != "self" {
                            let mut p = path.clone();
                            p.push(first);
                            out.insert(p);
                        }
                    }
                }
            }
            if !path.is_empty() {
                out.insert(path);
            }
        }
    }
    out
}

#[test]
fn imports_point_down_the_layers_and_no_folder_has_a_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut upward = Vec::new();
    // Per folder: file module → sibling modules it imports.
    let mut siblings: BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in &files {
        let module = module_path(&src, file);
        // The binary's modules (main.rs, cli/, progress.rs) sit above the library.
        if module.is_empty() || ["main", "cli", "progress", "lib"].contains(&module[0].as_str()) {
            continue;
        }
        let folder: Vec<String> = if file.ends_with("mod.rs") {
            module.clone()
        } else {
            module[..module.len() - 1].to_vec()
        };
        let text = std::fs::read_to_string(file).unwrap();
        for path in references(&code(&text), &folder) {
            let (from, to) = (&module[0], &path[0]);
            if from != to && layer_of(to) >= layer_of(from) {
                upward.push(format!("{} imports {}", file.display(), path.join("::")));
            }
            // A sibling in the same folder: the next name after the shared folder.
            if from == to && path.len() > folder.len() && path[..folder.len()] == folder[..] {
                let sibling = &path[folder.len()];
                let me = module.get(folder.len()).cloned().unwrap_or_default();
                if !me.is_empty() && sibling != &me {
                    siblings
                        .entry(folder.clone())
                        .or_default()
                        .entry(me)
                        .or_default()
                        .insert(sibling.clone());
                }
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that climb:\n{}",
        upward.join("\n")
    );
    let mut circles = Vec::new();
    for (folder, graph) in &siblings {
        for (a, targets) in graph {
            for b in targets {
                if reaches(graph, b, a, &mut BTreeSet::new()) {
                    circles.push(format!("{}: {a} → {b} → … → {a}", folder.join("/")));
                }
            }
        }
    }
    assert!(circles.is_empty(), "circles:\n{}", circles.join("\n"));
}

fn reaches(
    graph: &BTreeMap<String, BTreeSet<String>>,
    from: &str,
    to: &str,
    seen: &mut BTreeSet<String>,
) -> bool {
    if from == to {
        return true;
    }
    if !seen.insert(from.to_string()) {
        return false;
    }
    graph
        .get(from)
        .is_some_and(|next| next.iter().any(|n| reaches(graph, n, to, seen)))
}

/// The app's modules (`app/src`, one file each) import each other without a circle:
/// the state below the panels and the app, the platform below the workers, the
/// page's entry point on top.
#[test]
fn the_app_has_no_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("app/src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let module = module_path(&src, file).join("::");
        if module == "main" || module == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        for path in references(&code(&text), &[]) {
            // `crate::TwaApp` is the library root's re-export of the state's type.
            let target = if path[0] == "TwaApp" {
                "state"
            } else {
                &path[0]
            };
            if target != module {
                graph
                    .entry(module.clone())
                    .or_default()
                    .insert(target.to_string());
            }
        }
    }
    let circles: Vec<String> = graph
        .iter()
        .flat_map(|(a, targets)| targets.iter().map(move |b| (a, b)))
        .filter(|(a, b)| reaches(&graph, b, a, &mut BTreeSet::new()))
        .map(|(a, b)| format!("{a} → {b} → … → {a}"))
        .collect();
    assert!(
        circles.is_empty(),
        "circles in app/src:\n{}",
        circles.join("\n")
    );
}
