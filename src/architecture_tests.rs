//! The house rules, checked on the source text: dependencies point one way (`api` → `ledger` →
//! `store` / `vendors` → `domain`), only `api` sees the generated proto types, and no module
//! imports a sibling that imports it back. A path is any `crate::…`, `$crate::…`, `super::…` or
//! `self::…` in the code (comments excluded), resolved against the file's own module.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What each top-level module may name of the crate besides itself.
const ALLOWED: &[(&str, &[&str])] = &[
    ("domain", &[]),
    ("store", &["domain"]),
    ("vendors", &["domain"]),
    ("ledger", &["store", "domain", "telemetry"]),
    // Metric names are a catalogue every layer above the domain records under.
    ("telemetry", &["config"]),
];

/// The only module that may name the generated types (and the server, which registers them).
const PROTO_USERS: &[&str] = &["api", "proto"];

struct SourceFile {
    /// The file's module path, e.g. ["ledger", "feed", "listener"].
    module: Vec<String>,
    path: PathBuf,
    /// The crate paths it names, resolved, e.g. ["ledger", "tx", "LedgerTx"].
    references: Vec<Vec<String>>,
}

fn source_files() -> Vec<SourceFile> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect(&root, &root, &mut files);
    assert!(files.len() > 20, "found only {} source files", files.len());
    files
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<SourceFile>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read src")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(root).expect("under src");
            let mut module: Vec<String> = relative
                .with_extension("")
                .iter()
                .map(|c| c.to_string_lossy().into_owned())
                .collect();
            if module
                .last()
                .is_some_and(|m| m == "mod" || m == "lib" || m == "main")
            {
                module.pop();
            }
            let text = std::fs::read_to_string(&path).expect("read source");
            let references = references(&module, &code_of(&text));
            out.push(SourceFile {
                module,
                path,
                references,
            });
        }
    }
}

/// The text without comments (line comments and doc comments), so prose naming a module is no
/// dependency.
fn code_of(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            // Not inside a string: good enough for this codebase, which has no "//" in code
            // strings outside URLs; a URL then loses its tail, which names no module.
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every crate-relative path in `code`, resolved against `module` (and the inline `mod x { … }`
/// blocks around it); a brace group contributes each item's first segment.
fn references(module: &[String], code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let chars: Vec<char> = code.chars().collect();
    // Inline modules open around the current position: (name, brace depth inside it).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '{' => depth += 1,
            '}' => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            _ => {}
        }
        let starts_word = i == 0 || !(is_ident_char(chars[i - 1]) || chars[i - 1] == ':');
        if !starts_word {
            i += 1;
            continue;
        }
        let rest: String = chars[i..chars.len().min(i + 8)].iter().collect();
        if rest.starts_with("mod ") {
            let (name, after) = path_segments(&chars, i + 4);
            let brace = chars[after..].iter().position(|c| !c.is_whitespace());
            if let (Some(name), Some(offset)) = (name.first(), brace)
                && chars[after + offset] == '{'
            {
                inline.push((name.clone(), depth + 1));
            }
            i += 4;
            continue;
        }
        let anchor = ["$crate::", "crate::", "super::", "self::"]
            .into_iter()
            .find(|a| rest.starts_with(a));
        let Some(anchor) = anchor else {
            i += 1;
            continue;
        };
        let mut base: Vec<String> = match anchor {
            "$crate::" | "crate::" => Vec::new(),
            _ => module
                .iter()
                .cloned()
                .chain(inline.iter().map(|(name, _)| name.clone()))
                .collect(),
        };
        i += anchor.len();
        if anchor == "super::" {
            base.pop();
            // Further `super::`s climb further.
            while chars[i..].iter().collect::<String>().starts_with("super::") {
                base.pop();
                i += "super::".len();
            }
        }
        let (segments, next) = path_segments(&chars, i);
        i = next;
        if chars.get(i) == Some(&'{') {
            let close = chars[i..]
                .iter()
                .position(|&c| c == '}')
                .map_or(chars.len(), |p| i + p);
            let group: String = chars[i + 1..close].iter().collect();
            for item in group.split(',') {
                let first: String = item
                    .trim()
                    .chars()
                    .take_while(|&c| is_ident_char(c))
                    .collect();
                if !first.is_empty() {
                    let mut path = base.clone();
                    path.extend(segments.iter().cloned());
                    path.push(first);
                    out.push(path);
                }
            }
            i = close;
        } else {
            let mut path = base;
            path.extend(segments);
            out.push(path);
        }
    }
    out
}

/// Identifiers separated by `::` from `start`; where they end.
fn path_segments(chars: &[char], start: usize) -> (Vec<String>, usize) {
    let mut segments = Vec::new();
    let mut i = start;
    loop {
        let ident: String = chars[i..]
            .iter()
            .take_while(|&&c| is_ident_char(c))
            .collect();
        if ident.is_empty() {
            break;
        }
        i += ident.len();
        segments.push(ident);
        if chars[i..].iter().take(2).collect::<String>() == "::" {
            i += 2;
        } else {
            break;
        }
    }
    (segments, i)
}

#[test]
fn dependencies_point_one_way() {
    let mut broken = Vec::new();
    for file in source_files() {
        let Some(top) = file.module.first() else {
            continue;
        };
        for reference in &file.references {
            let Some(target) = reference.first() else {
                continue;
            };
            if target == top {
                continue;
            }
            if let Some((_, allowed)) = ALLOWED.iter().find(|(m, _)| m == top)
                && !allowed.contains(&target.as_str())
            {
                broken.push(format!(
                    "{} names crate::{} ({top} may name only {allowed:?})",
                    file.path.display(),
                    reference.join("::")
                ));
            }
            if target == "proto" && !PROTO_USERS.contains(&top.as_str()) {
                broken.push(format!(
                    "{} names crate::{} (only api sees proto types)",
                    file.path.display(),
                    reference.join("::")
                ));
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn no_module_imports_a_sibling_that_imports_it_back() {
    let files = source_files();
    // Every module (file or directory) by its path.
    let modules: BTreeSet<Vec<String>> = files
        .iter()
        .flat_map(|f| (1..=f.module.len()).map(|n| f.module[..n].to_vec()))
        .collect();
    // Edges between siblings: a file inside sibling A names something inside sibling B.
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for file in &files {
        for reference in &file.references {
            // The longest common prefix is the parent; the next segment on each side names
            // the two siblings.
            let common = file
                .module
                .iter()
                .zip(reference)
                .take_while(|(a, b)| a == b)
                .count();
            let (Some(from), Some(to)) = (file.module.get(common), reference.get(common)) else {
                continue;
            };
            let parent = &file.module[..common];
            let (mut from_path, mut to_path) = (parent.to_vec(), parent.to_vec());
            from_path.push(from.clone());
            to_path.push(to.clone());
            if modules.contains(&to_path) {
                edges.entry(from_path).or_default().insert(to_path);
            }
        }
    }
    let mut cycles = Vec::new();
    for (from, targets) in &edges {
        for to in targets {
            if reaches(&edges, to, from, &mut BTreeSet::new()) {
                cycles.push(format!("{} <-> {}", from.join("::"), to.join("::")));
            }
        }
    }
    assert!(cycles.is_empty(), "import circles:\n{}", cycles.join("\n"));
}

fn reaches(
    edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
    from: &Vec<String>,
    target: &Vec<String>,
    seen: &mut BTreeSet<Vec<String>>,
) -> bool {
    if from == target {
        return true;
    }
    if !seen.insert(from.clone()) {
        return false;
    }
    edges
        .get(from)
        .is_some_and(|next| next.iter().any(|n| reaches(edges, n, target, seen)))
}

#[test]
fn the_checks_see_what_they_check() {
    // A reference of each kind resolves as the checks expect, so a regression in the parser
    // cannot pass silently.
    let module: Vec<String> = ["ledger", "feed", "listener"].map(String::from).to_vec();
    let code = "use super::charges;\nuse crate::store::{Store, dispatch};\n$crate::domain::x::y(); super::super::tx::LedgerTx\nmod inner { use super::sibling; }";
    let refs = references(&module, code);
    let expect = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(refs.contains(&expect(&["ledger", "feed", "listener", "sibling"])));
    assert!(refs.contains(&expect(&["ledger", "feed", "charges"])));
    assert!(refs.contains(&expect(&["store", "Store"])));
    assert!(refs.contains(&expect(&["store", "dispatch"])));
    assert!(refs.contains(&expect(&["domain", "x", "y"])));
    assert!(refs.contains(&expect(&["ledger", "tx", "LedgerTx"])));
}
