//! The crate's layers, checked from its own source (docs/ARCHITECTURE.md has
//! the map). Each top-level module has a rank; a module may use only modules of
//! a *lower* rank (never its own rank's siblings, never upwards), so no import
//! cycle can form between top-level modules. The sans-IO cores may not touch
//! sockets, the async runtime, HTTP clients or the clock.
//!
//! `UPWARD_ALLOWED` lists the upward imports the crate still has, file by file.
//! It may only shrink: a new upward import fails, and so does an entry that is
//! no longer needed (delete it when you remove the import).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules, lowest layer first. Same rank = siblings that may not use each other.
const LAYERS: &[(&str, u8)] = &[
    // The vocabulary and helpers every layer may use.
    ("domain", 0),
    ("util", 0),
    // Sans-IO cores.
    ("media", 1),
    ("monitor", 2),
    // Plain settings and data.
    ("config", 3),
    ("assets", 3),
    ("metrics", 3),
    ("brief", 4),
    ("store", 5),
    // Transports turned into leg events.
    ("legs", 6),
    // Human agents, the queue, offers (nothing of the call).
    ("routing", 7),
    // The call: bridge, handoff machine, per-call task.
    ("call", 8),
    ("cluster", 9),
    ("http", 10),
    // The composition root and what runs on top of it.
    ("gateway", 11),
    ("sim", 11),
    ("demo", 12),
    ("main", 13),
    ("lib", 13),
];

/// Upward imports still to remove: (file, module it uses). May only shrink.
const UPWARD_ALLOWED: &[(&str, &str)] = &[
    ("src/http/api.rs", "gateway"),
    ("src/http/mod.rs", "gateway"),
];

/// The sans-IO cores: state machines that take `now` and return outputs.
const SANS_IO: &[&str] = &[
    "src/domain/",
    "src/media/",
    "src/monitor/",
    "src/util/pii.rs",
    "src/legs/liveness.rs",
    "src/legs/sip/greeting.rs",
    "src/brief/context.rs",
    "src/brief/prompts.rs",
    "src/brief/speech_text.rs",
    "src/call/bridge.rs",
    "src/call/bridge/",
    "src/call/handoff.rs",
    "src/call/guard.rs",
    "src/call/timeline.rs",
];

/// What a sans-IO core may not mention (addresses such as `SocketAddr` are
/// data and allowed; sockets are not).
const IO_TOKENS: &[&str] = &[
    "tokio",
    "reqwest",
    "UdpSocket",
    "TcpStream",
    "TcpListener",
    "Instant::now",
    "SystemTime::now",
    "thread::spawn",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A file's code before its `#[cfg(test)]` module, without comment lines.
fn code_of(text: &str) -> String {
    let code = text.split("\n#[cfg(test)]").next().unwrap_or("");
    code.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// Top-level modules a file's code names through `crate::…` (including
/// `use crate::{a::x, b}` groups).
fn crate_modules(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        // `warmline_crate::` or `$crate::` are not this crate's paths.
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => item_start = true,
                    c if item_start && depth == 1 && !c.is_whitespace() => {
                        item_start = false;
                        let name = ident_at(&group[i..]);
                        if !name.is_empty() && name != "self" {
                            found.insert(name.to_string());
                        }
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident_at(rest);
            if !name.is_empty() {
                found.insert(name.to_string());
            }
        }
    }
    found
}

fn module_of(rel: &str) -> String {
    let inner = rel.trim_start_matches("src/");
    let first = inner.split('/').next().unwrap_or(inner);
    first.trim_end_matches(".rs").to_string()
}

struct Source {
    rel: String,
    module: String,
    code: String,
}

fn sources() -> Vec<Source> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.sort();
    assert!(files.len() > 50, "found only {} source files", files.len());
    files
        .iter()
        .map(|path| {
            let rel = path
                .strip_prefix(&root)
                .unwrap_or(path)
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(path).unwrap_or_default();
            Source {
                module: module_of(&rel),
                code: code_of(&text),
                rel,
            }
        })
        .collect()
}

fn rank(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, r)| *r)
}

#[test]
fn no_module_uses_a_module_of_its_own_or_a_higher_layer() {
    let allowed: BTreeSet<(String, String)> = UPWARD_ALLOWED
        .iter()
        .map(|(f, m)| (f.to_string(), m.to_string()))
        .collect();
    let mut upward = BTreeSet::new();
    let mut unknown = BTreeSet::new();
    for src in sources() {
        let Some(own) = rank(&src.module) else {
            unknown.insert(src.module.clone());
            continue;
        };
        for used in crate_modules(&src.code) {
            if used == src.module {
                continue;
            }
            match rank(&used) {
                Some(r) if r >= own => {
                    upward.insert((src.rel.clone(), used));
                }
                Some(_) => {}
                // `crate::SomeType` re-exported at the root, or a macro path.
                None => {}
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "top-level modules missing from LAYERS (give each a rank): {unknown:?}"
    );
    let new: Vec<_> = upward.difference(&allowed).collect();
    assert!(
        new.is_empty(),
        "imports that point to the same or a higher layer (see docs/ARCHITECTURE.md):\n{}",
        new.iter()
            .map(|(f, m)| format!("  {f} uses crate::{m}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let stale: Vec<_> = allowed.difference(&upward).collect();
    assert!(
        stale.is_empty(),
        "UPWARD_ALLOWED entries no longer needed (delete them; the list only shrinks): {stale:?}"
    );
}

#[test]
fn top_level_modules_form_no_cycle_outside_the_allowlist() {
    let allowed: BTreeSet<(&str, &str)> = UPWARD_ALLOWED.iter().copied().collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for src in sources() {
        for used in crate_modules(&src.code) {
            if used != src.module
                && rank(&used).is_some()
                && !allowed.contains(&(src.rel.as_str(), used.as_str()))
            {
                graph.entry(src.module.clone()).or_default().insert(used);
            }
        }
    }
    // Depth-first search for a back edge.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), 1);
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next.as_str()) {
                Some(1) => {
                    let from = path.iter().position(|n| n == next).unwrap_or(0);
                    let mut cycle = path[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(next, graph, state, path) {
                        return Some(c);
                    }
                }
            }
        }
        path.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if !state.contains_key(node.as_str()) {
            let cycle = visit(node, &graph, &mut state, &mut Vec::new());
            assert!(
                cycle.is_none(),
                "import cycle: {}",
                cycle.unwrap_or_default().join(" -> ")
            );
        }
    }
}

#[test]
fn sans_io_cores_touch_no_socket_runtime_or_clock() {
    let mut found = Vec::new();
    for src in sources() {
        if !SANS_IO.iter().any(|p| src.rel.starts_with(p)) {
            continue;
        }
        for token in IO_TOKENS {
            if src.code.contains(token) {
                found.push(format!("  {} mentions {token}", src.rel));
            }
        }
    }
    assert!(
        found.is_empty(),
        "sans-IO code must take time and I/O as inputs:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_checker_sees_grouped_and_inline_imports() {
    // The parser behind the tests above, on the shapes the crate uses.
    let code = "use crate::{domain::Role, media::{g711, vad::Vad}, self};\n\
                let x = crate::store::Store::open();\n\
                use $crate::nothing;\n";
    let found: Vec<String> = crate_modules(code).into_iter().collect();
    assert_eq!(found, ["domain", "media", "store"]);
    assert_eq!(
        code_of("a\n// crate::x\nb\n#[cfg(test)]\nmod t { crate::y }"),
        "a\nb"
    );
}
