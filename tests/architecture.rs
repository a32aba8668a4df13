//! The module dependency rules of ARCHITECTURE.md ("Architecture Invariant: …" under the
//! code map), checked on the source: every `crate::` path in each module's files, in `use`
//! items and in expressions, and every path through a name such a `use` binds (`use
//! crate::web::{self, …}` then `web::start`). Comments and string literals are skipped.
//! A broken rule fails with the file, the line, the path and the rule.
//!
//! Each rule's text must also appear in ARCHITECTURE.md as an "Architecture Invariant:"
//! line, so the document and the check cannot drift apart.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One rule: what the files of `module` may not reach.
struct Rule {
    /// Top-level module the rule is about (`src/<module>.rs` and `src/<module>/`).
    modules: &'static [&'static str],
    /// Whether `path` (segments after `crate::`) breaks the rule, for a file of `module`.
    broken: fn(module: &str, path: &[String]) -> bool,
    /// The rule as ARCHITECTURE.md states it, after "Architecture Invariant: ".
    text: &'static str,
}

/// The commands: each is one subcommand's module, and shares code through the library
/// modules (`series`, `labelled`, `pipeline`, ...), never through another command.
const COMMANDS: &[&str] = &[
    "analyze",
    "validate",
    "calibrate",
    "inspect",
    "status",
    "passwd",
    "audit_export",
    "send",
    "config_edit",
];

/// What `daemon` may name in `web`: its contract in `web/mod.rs`.
const WEB_CONTRACT: &[&str] = &["start", "WebState", "WebHandle"];

fn first(path: &[String]) -> &str {
    path.first().map_or("", String::as_str)
}

const RULES: &[Rule] = &[
    Rule {
        modules: &["dicom"],
        broken: |_, p| first(p) != "dicom",
        text: "`dicom` imports nothing of the crate.",
    },
    Rule {
        modules: &["report"],
        broken: |_, p| first(p) != "report",
        text: "`report` imports nothing of the crate (plain data and serde).",
    },
    Rule {
        modules: &["db"],
        broken: |_, p| ["analysis", "pipeline", "web", "worker", "daemon"].contains(&first(p)),
        text: "`db` imports nothing of `analysis`, `pipeline`, `web`, `worker` or `daemon`; \
               it stores `report` types through the versioned documents of `stored.rs`.",
    },
    Rule {
        modules: &["analysis"],
        broken: |_, p| ["db", "web", "worker", "daemon", "pipeline"].contains(&first(p)),
        text: "`analysis` imports nothing of `db`, `web`, `worker`, `daemon` or `pipeline`.",
    },
    Rule {
        modules: &["web"],
        broken: |_, p| ["analysis", "pipeline", "objects"].contains(&first(p)),
        text: "`web` imports nothing of `analysis`, `pipeline` or `objects` (they pull in \
               tract); it reads reports through `report` and `db`.",
    },
    Rule {
        modules: &["daemon"],
        broken: |_, p| first(p) == "web" && p.len() > 1 && !WEB_CONTRACT.contains(&p[1].as_str()),
        text: "`daemon` uses `web` only through its contract in `web/mod.rs` (`start`, \
               `WebState`, `WebHandle`), never its pages.",
    },
    Rule {
        modules: COMMANDS,
        broken: |module, p| first(p) != module && COMMANDS.contains(&first(p)),
        text: "no command module (`analyze`, `validate`, `calibrate`, `inspect`, `status`, \
               `passwd`, `audit_export`, `send`, `config_edit`) imports another.",
    },
    Rule {
        modules: &["outbox"],
        broken: |_, p| ["analysis", "pipeline", "web", "worker", "daemon"].contains(&first(p)),
        text: "`outbox` imports nothing of `analysis`, `pipeline`, `web`, `worker` or \
               `daemon`: it knows rows and destinations; the DICOM wire is `dimse::scu`'s.",
    },
];

/// A `crate::` path found in a file: its segments after `crate::` and its line.
#[derive(Debug, PartialEq)]
struct Found {
    path: Vec<String>,
    line: usize,
}

/// The source with comments and the contents of string and character literals replaced by
/// spaces, newlines kept (so that line numbers stay right).
fn code_only(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |ch: char| if ch == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < c.len() {
        let ident_before = i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_');
        if c[i] == '/' && c.get(i + 1) == Some(&'/') {
            while i < c.len() && c[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c[i] == '/' && c.get(i + 1) == Some(&'*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(c[i]));
                    i += 1;
                }
            }
        } else if !ident_before && (c[i] == 'r' || (c[i] == 'b' && c.get(i + 1) == Some(&'r'))) && {
            let mut j = i + if c[i] == 'b' { 2 } else { 1 };
            while c.get(j) == Some(&'#') {
                j += 1;
            }
            c.get(j) == Some(&'"')
        } {
            // Raw string: r"…", r#"…"#, br"…".
            let mut j = i + if c[i] == 'b' { 2 } else { 1 };
            let mut hashes = 0;
            while c[j] == '#' {
                hashes += 1;
                j += 1;
            }
            j += 1;
            loop {
                if j >= c.len() {
                    break;
                }
                if c[j] == '"' && (0..hashes).all(|h| c.get(j + 1 + h) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            for &ch in &c[i..j.min(c.len())] {
                out.push(blank(ch));
            }
            i = j;
        } else if c[i] == '"' {
            let mut j = i + 1;
            while j < c.len() && c[j] != '"' {
                j += if c[j] == '\\' { 2 } else { 1 };
            }
            for &ch in &c[i..(j + 1).min(c.len())] {
                out.push(blank(ch));
            }
            i = j + 1;
        } else if c[i] == '\'' {
            // A character literal ('x', '\n', '\u{1F600}', '"'), or a lifetime ('a).
            let end = if c.get(i + 1) == Some(&'\\') {
                (i + 2..c.len()).find(|&j| c[j] == '\'')
            } else if c.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(e) => {
                    for &ch in &c[i..=e] {
                        out.push(blank(ch));
                    }
                    i = e + 1;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// Tokens that paths are made of: identifiers, `::` and single punctuation characters.
#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Colons,
    Punct(char),
}

fn tokens(code: &str) -> Vec<(Tok, usize)> {
    let c: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch.is_alphabetic() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push((Tok::Ident(c[start..i].iter().collect()), line));
        } else if ch.is_ascii_digit() {
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_' || c[i] == '.') {
                i += 1;
            }
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            out.push((Tok::Colons, line));
            i += 2;
        } else {
            out.push((Tok::Punct(ch), line));
            i += 1;
        }
    }
    out
}

/// Parses a use tree (or an expression path) at `toks[*i]`, after `prefix::`. Every full
/// path goes to `paths`, every name it binds (a leaf, `self`, `as` name) to `binds`.
fn tree(
    toks: &[(Tok, usize)],
    i: &mut usize,
    prefix: &mut Vec<String>,
    line: usize,
    paths: &mut Vec<Found>,
    binds: &mut Vec<(String, Vec<String>)>,
) {
    let depth = prefix.len();
    loop {
        match toks.get(*i).map(|t| &t.0) {
            Some(Tok::Punct('{')) => {
                *i += 1;
                loop {
                    match toks.get(*i).map(|t| &t.0) {
                        Some(Tok::Punct('}')) | None => {
                            *i += 1;
                            break;
                        }
                        Some(Tok::Punct(',')) => *i += 1,
                        _ => {
                            let before = *i;
                            tree(toks, i, prefix, line, paths, binds);
                            if *i == before {
                                *i += 1;
                            }
                        }
                    }
                }
                break;
            }
            Some(Tok::Punct('*')) => {
                *i += 1;
                paths.push(Found {
                    path: prefix.clone(),
                    line,
                });
                break;
            }
            Some(Tok::Ident(name)) => {
                *i += 1;
                if name == "self" {
                    if let Some(last) = prefix.last() {
                        binds.push((last.clone(), prefix.clone()));
                    }
                    paths.push(Found {
                        path: prefix.clone(),
                        line,
                    });
                    break;
                }
                prefix.push(name.clone());
                if toks.get(*i).map(|t| &t.0) == Some(&Tok::Colons) {
                    *i += 1;
                    continue;
                }
                let mut bound = name.clone();
                if toks.get(*i).map(|t| &t.0) == Some(&Tok::Ident("as".into())) {
                    if let Some((Tok::Ident(alias), _)) = toks.get(*i + 1) {
                        bound = alias.clone();
                    }
                    *i += 2;
                }
                binds.push((bound, prefix.clone()));
                paths.push(Found {
                    path: prefix.clone(),
                    line,
                });
                break;
            }
            _ => {
                if !prefix.is_empty() {
                    paths.push(Found {
                        path: prefix.clone(),
                        line,
                    });
                }
                break;
            }
        }
    }
    prefix.truncate(depth);
}

/// Every `crate::` path of one file, and every path through a name a `crate::` path binds.
fn crate_paths(src: &str) -> Vec<Found> {
    let toks = tokens(&code_only(src));
    let (mut paths, mut binds) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < toks.len() {
        let starts = toks[i].0 == Tok::Ident("crate".into())
            && toks.get(i + 1).map(|t| &t.0) == Some(&Tok::Colons)
            && (i == 0 || toks[i - 1].0 != Tok::Colons);
        if starts {
            let line = toks[i].1;
            i += 2;
            tree(&toks, &mut i, &mut Vec::new(), line, &mut paths, &mut binds);
        } else {
            i += 1;
        }
    }
    let bound: HashMap<String, Vec<String>> = binds.into_iter().collect();
    let mut i = 0;
    while i + 1 < toks.len() {
        if let (Tok::Ident(name), Tok::Colons) = (&toks[i].0, &toks[i + 1].0) {
            let after_colons = i > 0 && toks[i - 1].0 == Tok::Colons;
            if let (false, Some(target)) = (after_colons, bound.get(name)) {
                let mut path = target.clone();
                let mut j = i + 2;
                while let Some((Tok::Ident(seg), _)) = toks.get(j) {
                    path.push(seg.clone());
                    if toks.get(j + 1).map(|t| &t.0) != Some(&Tok::Colons) {
                        break;
                    }
                    j += 2;
                }
                paths.push(Found {
                    path,
                    line: toks[i].1,
                });
                i = j;
                continue;
            }
        }
        i += 1;
    }
    paths
}

/// The top-level module of a file under `src/`, or None for the crate roots.
fn module_of(relative: &Path) -> Option<String> {
    let mut parts = relative.components();
    let first = parts.next()?.as_os_str().to_str()?.to_string();
    if parts.next().is_some() {
        return Some(first);
    }
    let stem = first.strip_suffix(".rs")?;
    (!["lib", "main"].contains(&stem)).then(|| stem.to_string())
}

/// The broken rules of one file, one line each.
fn check(file: &str, module: &str, src: &str) -> Vec<String> {
    let mut out = Vec::new();
    for found in crate_paths(src) {
        for rule in RULES.iter().filter(|r| r.modules.contains(&module)) {
            if (rule.broken)(module, &found.path) {
                out.push(format!(
                    "{file}:{}: `crate::{}` breaks \"Architecture Invariant: {}\"",
                    found.line,
                    found.path.join("::"),
                    rule.text
                ));
            }
        }
    }
    out
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

#[test]
fn every_module_keeps_its_dependency_rules() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut broken = Vec::new();
    let mut modules_seen = std::collections::BTreeSet::new();
    for path in &files {
        let relative = path.strip_prefix(&src).unwrap();
        let Some(module) = module_of(relative) else {
            continue;
        };
        modules_seen.insert(module.clone());
        let text = std::fs::read_to_string(path).unwrap();
        let shown = path.strip_prefix(root).unwrap().display().to_string();
        broken.extend(check(&shown, &module, &text));
    }
    assert!(
        broken.is_empty(),
        "module dependency rules broken (see ARCHITECTURE.md, code map):\n{}",
        broken.join("\n")
    );
    for rule in RULES {
        for m in rule.modules {
            assert!(
                modules_seen.contains(*m),
                "a rule names module `{m}`, which src/ does not have"
            );
        }
    }
}

#[test]
fn every_rule_is_written_in_architecture_md() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md"))
            .unwrap();
    // Line breaks and the indentation of a wrapped list item do not count.
    let flat = doc.split_whitespace().collect::<Vec<_>>().join(" ");
    for rule in RULES {
        let line = format!("Architecture Invariant: {}", rule.text);
        assert!(
            flat.contains(&line),
            "ARCHITECTURE.md does not state the rule that tests/architecture.rs checks:\n{line}"
        );
    }
}

#[test]
fn paths_are_found_in_use_trees_expressions_and_through_bound_names() {
    let src = r##"
        use crate::web::{self, WebState};
        use crate::{pipeline, series::collect as gather};
        // use crate::analysis::Commented;
        /* use crate::analysis::Blocked; */
        const S: &str = "crate::analysis::InAString";
        const R: &str = r#"crate::analysis::InARawString"#;
        fn f<'a>(x: &'a str) -> char {
            let _ = web::start(x);
            let _ = crate::db::now_secs();
            let _ = gather::run();
            '"'
        }
        fn g() { web::status::render(); }
    "##;
    let found: Vec<(String, usize)> = crate_paths(src)
        .into_iter()
        .map(|f| (f.path.join("::"), f.line))
        .collect();
    let expected = [
        ("web", 2),
        ("web::WebState", 2),
        ("pipeline", 3),
        ("series::collect", 3),
        ("db::now_secs", 10),
        ("web::start", 9),
        ("series::collect::run", 11),
        ("web::status::render", 14),
    ];
    for (path, line) in expected {
        assert!(
            found.contains(&(path.to_string(), line)),
            "{path} at line {line} not found in {found:?}"
        );
    }
    assert!(
        !found.iter().any(|(p, _)| p.starts_with("analysis")),
        "comments and strings must not count: {found:?}"
    );
}

#[test]
fn a_broken_rule_names_the_file_the_line_and_the_rule() {
    let daemon = "use crate::web::{self, WebState};\n\nfn f() { web::studies::render(); }\n";
    let broken = check("src/daemon.rs", "daemon", daemon);
    assert_eq!(broken.len(), 1, "{broken:?}");
    assert!(
        broken[0].starts_with("src/daemon.rs:3: `crate::web::studies::render` breaks")
            && broken[0].contains("`daemon` uses `web` only through its contract"),
        "{}",
        broken[0]
    );
    assert!(
        check(
            "src/daemon.rs",
            "daemon",
            "use crate::web::{start, WebHandle};"
        )
        .is_empty()
    );

    let db = "use crate::analysis::report::SeriesReport;\n";
    let broken = check("src/db/results.rs", "db", db);
    assert!(broken[0].starts_with("src/db/results.rs:1: `crate::analysis::report::SeriesReport`"));

    assert_eq!(
        check("src/dicom/x.rs", "dicom", "fn f() { crate::sys::now(); }").len(),
        1
    );
    assert!(
        check(
            "src/dicom/x.rs",
            "dicom",
            "use crate::dicom::header::sha256;"
        )
        .is_empty()
    );
    assert_eq!(
        check(
            "src/calibrate/mod.rs",
            "calibrate",
            "use crate::validate::fmt;"
        )
        .len(),
        1
    );
    assert!(
        check(
            "src/calibrate/mod.rs",
            "calibrate",
            "use crate::labelled::fmt;"
        )
        .is_empty()
    );
    assert_eq!(
        check("src/web/x.rs", "web", "use crate::analysis::Analyser;").len(),
        1
    );
    assert_eq!(
        check("src/analysis/x.rs", "analysis", "use crate::db::Reader;").len(),
        1
    );
}
