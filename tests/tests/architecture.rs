#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
//! The host's layering, held by its imports (README.md, "Layout"; each folder's module doc says
//! the same): only `plugin/` names `abi_stable` types; the decision (`auth/`) never reads the
//! module that reloads it; nothing below the HTTP surface imports it; `config/` compiles the
//! policy without importing the decision.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

fn host_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("host/src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a file imports: every `crate::NAME`, and the first segment of each entry
/// of a `use crate::{...}` group.
fn imported_modules(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0usize;
            let mut at_start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => at_start = true,
                    c if c.is_whitespace() => {}
                    _ if at_start && depth == 0 => {
                        let name = ident(&group[j..]);
                        if !name.is_empty() {
                            out.insert(name);
                        }
                        at_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// `(file relative to host/src, its imported top-level modules, its text without comments)`.
fn sources() -> Vec<(String, BTreeSet<String>, String)> {
    let root = host_src();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f).unwrap();
            let code: String = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            let rel = f.strip_prefix(&root).unwrap().to_string_lossy().to_string();
            (rel, imported_modules(&code), code)
        })
        .collect()
}

#[test]
fn the_import_reader_sees_groups_and_paths() {
    let text = "use crate::{\n    auth::{a, b},\n    config::{self, C},\n};\nfn f() { crate::reload::x(); }";
    let got: Vec<String> = imported_modules(text).into_iter().collect();
    assert_eq!(got, ["auth", "config", "reload"]);
}

#[test]
fn only_plugin_names_abi_stable_types() {
    let offenders: Vec<String> = sources()
        .into_iter()
        .filter(|(f, _, code)| {
            !f.starts_with("plugin/")
                && (code.contains("abi_stable") || code.contains("portcullis_plugin_api::abi"))
        })
        .map(|(f, _, _)| f)
        .collect();
    assert!(
        offenders.is_empty(),
        "abi_stable outside plugin/: {offenders:?}"
    );
}

#[test]
fn lower_layers_do_not_import_the_ones_above() {
    // (folder, modules it must not import)
    let rules: &[(&str, &[&str])] = &[
        ("auth/", &["reload", "http", "gateway", "api", "app", "cli"]),
        (
            "config/",
            &["auth", "reload", "http", "gateway", "api", "app", "cli"],
        ),
        (
            "plugin/",
            &["auth", "reload", "http", "gateway", "api", "app", "cli"],
        ),
        (
            "keys/",
            &[
                "auth", "config", "plugin", "reload", "http", "gateway", "api", "app",
            ],
        ),
        (
            "jose/",
            &[
                "auth", "config", "plugin", "keys", "reload", "http", "gateway", "api",
            ],
        ),
        (
            "matching/",
            &[
                "auth", "config", "plugin", "reload", "http", "gateway", "api",
            ],
        ),
        (
            "observe/",
            &["reload", "http", "gateway", "api", "app", "cli"],
        ),
        ("reload/", &["gateway", "api", "app", "cli"]),
        ("http/answer.rs", &["reload", "gateway", "api", "app"]),
        ("http/cors.rs", &["reload", "gateway", "api", "app"]),
        ("http/listen/", &["reload", "gateway", "api", "app"]),
        ("gateway/", &["api", "cli"]),
        ("api/", &["cli"]),
    ];
    let mut broken = Vec::new();
    for (file, imports, _) in sources() {
        for (place, banned) in rules {
            if file.starts_with(place) {
                for m in imports.iter().filter(|m| banned.contains(&m.as_str())) {
                    broken.push(format!("{file} imports crate::{m}"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "layering broken:\n{}", broken.join("\n"));
}
