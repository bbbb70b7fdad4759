//! Keeps docs/12-traceability.md honest. The chapter is a table from each
//! server-side requirement of RFC 6455 to the function that enforces it,
//! the tests that prove it, and the paragraph that explains it; these tests
//! parse the table and check that every function and test it names still
//! exists in the file it names, that every linked chapter and anchor exists,
//! and that every section of §4.2, §5 and §7 is accounted for. They also
//! check the links of the whole walkthrough, that every chapter is
//! compiled as a doctest, and that every Rust item the prose of docs/ and
//! README.md names in backticks is declared in the code, so that renaming
//! a function without its documentation fails `cargo test`. Beyond names,
//! they check facts the docs state about the code (files, diagram paths,
//! wire tokens, close reasons, constants' values, chapter 08's lists, the
//! measured figures): see "Facts, not only names" below.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// The chapter with the table.
const TABLE: &str = "docs/12-traceability.md";
/// Chapters written by others: linked to, but not checked here.
const NOT_OURS: &[&str] = &["11-deployment.md"];
/// Every section of §4.2, §5 and §7 that has to appear in the table or in
/// the list of sections without a server-side requirement.
const SECTIONS: &[&str] = &[
    "4.2.1", "4.2.2", "5.1", "5.2", "5.3", "5.4", "5.5", "5.5.1", "5.5.2", "5.5.3", "5.6", "5.7",
    "5.8", "7.1.1", "7.1.2", "7.1.3", "7.1.4", "7.1.5", "7.1.6", "7.1.7", "7.2.1", "7.2.2",
    "7.2.3", "7.3", "7.4.1", "7.4.2",
];
/// The table must not shrink below this many rows by accident.
const MIN_ROWS: usize = 35;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    let path = root().join(relative);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// One row of a traceability table.
#[derive(Debug)]
struct Row {
    line: usize,
    section: String,
    requirement: String,
    enforced: Vec<String>,
    proved: Vec<String>,
    explained: Vec<(String, String)>,
}

/// Splits a Markdown table line into its cells; `\|` is a literal bar.
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    let mut out = vec![String::new()];
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                out.last_mut().unwrap().push('|');
                chars.next();
            }
            '|' => out.push(String::new()),
            c => out.last_mut().unwrap().push(c),
        }
    }
    out.iter().map(|c| c.trim().to_string()).collect()
}

/// The `code spans` of a cell.
fn code_spans(cell: &str) -> Vec<String> {
    cell.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_string())
        .collect()
}

/// The `[text](target)` links of a piece of Markdown.
fn links(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let Some(close) = after.find("](") else { break };
        let label = &after[..close];
        let target_start = &after[close + 2..];
        let Some(end) = target_start.find(')') else {
            break;
        };
        if !label.contains('[') {
            out.push((label.to_string(), target_start[..end].to_string()));
        }
        rest = &target_start[end..];
    }
    out
}

fn parse_table(text: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if !line.starts_with('|') {
            continue;
        }
        let c = cells(line);
        if !c[0].starts_with("[§") {
            continue; // the header and separator lines
        }
        assert_eq!(c.len(), 5, "{TABLE}:{}: expected 5 cells, got {c:?}", i + 1);
        let (label, url) = links(&c[0])
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("{TABLE}:{}: no RFC link", i + 1));
        let section = label.trim_start_matches('§').to_string();
        assert_eq!(
            url,
            format!("https://www.rfc-editor.org/rfc/rfc6455#section-{section}"),
            "{TABLE}:{}: the link must point at the section it names",
            i + 1
        );
        rows.push(Row {
            line: i + 1,
            section,
            requirement: c[1].clone(),
            enforced: code_spans(&c[2]),
            proved: code_spans(&c[3]),
            explained: links(&c[4]),
        });
    }
    rows
}

/// Does `line` declare `fn name`?
fn declares_fn(line: &str, name: &str) -> bool {
    let mut s = line.trim_start();
    for prefix in ["pub(crate) ", "pub(super) ", "pub ", "const ", "unsafe "] {
        s = s.strip_prefix(prefix).unwrap_or(s);
    }
    s.strip_prefix("fn ")
        .and_then(|s| s.strip_prefix(name))
        .is_some_and(|s| s.starts_with('(') || s.starts_with('<'))
}

/// Is `word` in `line` as a whole identifier?
fn has_word(line: &str, word: &str) -> bool {
    line.match_indices(word).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        let after = line[at + word.len()..].chars().next();
        let ident = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        !ident(before) && !ident(after)
    })
}

/// Finds `fn name`, inside an `impl` block of `owner` if one is given.
fn has_fn(source: &str, owner: Option<&str>, name: &str) -> bool {
    let lines: Vec<&str> = source.lines().collect();
    match owner {
        None => lines.iter().any(|l| declares_fn(l, name)),
        Some(owner) => {
            let mut inside = false;
            for line in lines {
                if line.starts_with("impl") && has_word(line, owner) {
                    inside = true;
                } else if inside && line.starts_with('}') {
                    inside = false;
                } else if inside && declares_fn(line, name) {
                    return true;
                }
            }
            false
        }
    }
}

/// Resolves `wschat::a::b::[Type::]fn` or `src/file.rs::[Type::]fn` to the
/// file and the remaining segments.
fn resolve(item: &str) -> Result<(PathBuf, Vec<String>), String> {
    if let Some((file, rest)) = item.split_once(".rs::") {
        let path = root().join(format!("{file}.rs"));
        if !path.is_file() {
            return Err(format!("no file {file}.rs"));
        }
        return Ok((path, rest.split("::").map(String::from).collect()));
    }
    let mut segments = item.split("::");
    if segments.next() != Some("wschat") {
        return Err("a path must start with wschat:: or name a file".into());
    }
    let segments: Vec<&str> = segments.collect();
    let mut dir = root().join("src");
    for (i, segment) in segments.iter().enumerate() {
        let file = dir.join(format!("{segment}.rs"));
        if file.is_file() {
            return Ok((
                file,
                segments[i + 1..].iter().map(|s| s.to_string()).collect(),
            ));
        }
        dir = dir.join(segment);
        if !dir.is_dir() {
            return Err(format!("no module {segment}"));
        }
    }
    Err("the path names a module, not a function".into())
}

fn check_function(item: &str) -> Result<(), String> {
    let (path, rest) = resolve(item)?;
    let source = fs::read_to_string(&path).map_err(|e| e.to_string())?;
    let found = match rest.as_slice() {
        [name] => has_fn(&source, None, name),
        [owner, name] => has_fn(&source, Some(owner), name),
        _ => return Err("expected [Type::]function after the module".into()),
    };
    if found {
        Ok(())
    } else {
        Err(format!("no such function in {}", path.display()))
    }
}

/// Does `name` match `pattern`, where `{...}` stands for one or more
/// characters of a case name (as in `format!("code_{code}_is_1002")`)?
fn matches_pattern(pattern: &str, name: &str) -> bool {
    match pattern.find('{') {
        None => pattern == name,
        Some(open) => {
            let Some(close) = pattern[open..].find('}') else {
                return false;
            };
            let (prefix, rest) = (&pattern[..open], &pattern[open + close + 1..]);
            let Some(tail) = name.strip_prefix(prefix) else {
                return false;
            };
            (1..=tail.len()).any(|n| {
                tail.is_char_boundary(n)
                    && tail[..n]
                        .chars()
                        .all(|c| c.is_alphanumeric() || c == '_' || c == '.')
                    && matches_pattern(rest, &tail[n..])
            })
        }
    }
}

/// The string literals of a source file (enough for case names, which
/// contain no quotes or escapes).
fn string_literals(source: &str) -> Vec<&str> {
    source.split('"').skip(1).step_by(2).collect()
}

fn check_test(item: &str) -> Result<(), String> {
    let (file, name) = item.rsplit_once("::").ok_or("expected FILE::TEST_NAME")?;
    let path = root().join(file);
    let source = fs::read_to_string(&path).map_err(|e| format!("cannot read {file}: {e}"))?;
    if file.starts_with("tests/conformance/") || file.starts_with("src/bin/wschat-conformance/") {
        // Conformance cases are registered by name: `c.add("name", ...)`.
        return if string_literals(&source)
            .iter()
            .any(|literal| matches_pattern(literal, name))
        {
            Ok(())
        } else {
            Err(format!("no conformance case {name} in {file}"))
        };
    }
    let lines: Vec<&str> = source.lines().collect();
    let at = lines
        .iter()
        .position(|l| declares_fn(l, name))
        .ok_or_else(|| format!("no fn {name} in {file}"))?;
    let is_test = lines[at.saturating_sub(3)..at]
        .iter()
        .any(|l| l.trim_start().starts_with("#[test]"));
    if is_test {
        Ok(())
    } else {
        Err(format!("fn {name} in {file} is not a #[test]"))
    }
}

/// The anchors GitHub gives the headings of a Markdown file.
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut in_fence = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence || !line.starts_with('#') {
            continue;
        }
        let title = line.trim_start_matches('#').trim();
        let slug: String = title
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut unique = slug.clone();
        let mut n = 1;
        while seen.contains(&unique) {
            unique = format!("{slug}-{n}");
            n += 1;
        }
        seen.insert(unique);
    }
    seen
}

/// Checks a relative link from a file in docs/.
fn check_link(target: &str) -> Result<(), String> {
    let (file, anchor) = match target.split_once('#') {
        Some((file, anchor)) => (file, Some(anchor)),
        None => (target, None),
    };
    let path = if file.is_empty() {
        return Ok(()); // a link within the same file is checked by the caller
    } else {
        root().join("docs").join(file)
    };
    if !path.exists() {
        return Err(format!("{file} does not exist"));
    }
    if let Some(anchor) = anchor {
        if path.extension().and_then(|e| e.to_str()) != Some("md") {
            return Err(format!("anchor #{anchor} on a file that is not Markdown"));
        }
        let text = fs::read_to_string(&path).map_err(|e| e.to_string())?;
        if !anchors(&text).contains(anchor) {
            return Err(format!("{file} has no heading #{anchor}"));
        }
    }
    Ok(())
}

#[test]
fn every_named_function_test_and_paragraph_exists() {
    let text = read(TABLE);
    let rows = parse_table(&text);
    assert!(
        rows.len() >= MIN_ROWS,
        "{TABLE}: only {} rows (expected at least {MIN_ROWS})",
        rows.len()
    );
    let mut errors = Vec::new();
    for row in &rows {
        let at = format!("{TABLE}:{} (§{})", row.line, row.section);
        if row.requirement.len() < 10 {
            errors.push(format!("{at}: the requirement is not quoted"));
        }
        if row.enforced.is_empty() {
            errors.push(format!("{at}: no enforcing function"));
        }
        if row.proved.is_empty() {
            errors.push(format!("{at}: no test"));
        }
        if row.explained.is_empty() {
            errors.push(format!("{at}: no explaining paragraph"));
        }
        for item in &row.enforced {
            if let Err(e) = check_function(item) {
                errors.push(format!("{at}: `{item}`: {e}"));
            }
        }
        for item in &row.proved {
            if let Err(e) = check_test(item) {
                errors.push(format!("{at}: `{item}`: {e}"));
            }
        }
        for (_, target) in &row.explained {
            if let Err(e) = check_link(target) {
                errors.push(format!("{at}: {target}: {e}"));
            }
        }
    }
    assert!(errors.is_empty(), "\n{}", errors.join("\n"));
}

#[test]
fn every_section_of_4_2_5_and_7_is_accounted_for() {
    let text = read(TABLE);
    let mut covered: BTreeSet<String> = parse_table(&text).into_iter().map(|r| r.section).collect();
    // The list of sections without a server-side requirement: "- **§7.3**: ...".
    for line in text.lines().filter(|l| l.starts_with("- **§")) {
        for part in line.split("**§").skip(1) {
            if let Some(section) = part.split("**").next() {
                covered.insert(section.to_string());
            }
        }
    }
    let missing: Vec<&&str> = SECTIONS.iter().filter(|s| !covered.contains(**s)).collect();
    assert!(missing.is_empty(), "sections not in {TABLE}: {missing:?}");
}

#[test]
fn every_link_of_the_walkthrough_resolves() {
    let mut errors = Vec::new();
    let mut entries: Vec<PathBuf> = fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("md"))
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if NOT_OURS.contains(&name.as_str()) {
            continue;
        }
        let text = fs::read_to_string(&path).unwrap();
        let own_anchors = anchors(&text);
        let mut in_fence = false;
        for (i, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("```") {
                in_fence = !in_fence;
                continue;
            }
            if in_fence {
                continue;
            }
            for (_, target) in links(line) {
                if target.starts_with("http://") || target.starts_with("https://") {
                    continue;
                }
                let result = match target.strip_prefix('#') {
                    Some(anchor) if !own_anchors.contains(anchor) => {
                        Err(format!("no heading #{anchor} here"))
                    }
                    Some(_) => Ok(()),
                    None => check_link(&target),
                };
                if let Err(e) = result {
                    errors.push(format!("docs/{name}:{}: {target}: {e}", i + 1));
                }
            }
        }
    }
    assert!(errors.is_empty(), "\n{}", errors.join("\n"));
}

#[test]
fn every_chapter_is_compiled_as_a_doctest() {
    let walkthrough = read("src/walkthrough.rs");
    let mut missing = Vec::new();
    for entry in fs::read_dir(root().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if path.extension().and_then(|e| e.to_str()) != Some("md")
            || NOT_OURS.contains(&name.as_str())
        {
            continue;
        }
        if !walkthrough.contains(&format!("include_str!(\"../docs/{name}\")")) {
            missing.push(name);
        }
    }
    assert!(
        missing.is_empty(),
        "chapters not included in src/walkthrough.rs: {missing:?}"
    );
}

// ---------------------------------------------------------------------------
// No import circle: no two top-level modules of src/ use each other.
// ---------------------------------------------------------------------------

/// The top-level modules a file's code names through `crate::` (in `use`
/// lines, `use crate::{a, b::c}` groups and inline paths; comments are
/// skipped), other than `own`.
fn crate_modules_used(source: &str, own: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    let code: String = source
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let ident_at = |rest: &str| -> String {
        rest.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `use crate::{a, b::{c, d}}`: the first name of each entry at
            // the group's top level.
            let mut depth = 0;
            let mut entry_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => entry_start = true,
                    c if entry_start && (c.is_ascii_alphabetic() || c == '_') => {
                        used.insert(ident_at(&group[i..]));
                        entry_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            used.insert(ident_at(rest));
        }
    }
    used.remove(own);
    used.remove("");
    used
}

/// Every top-level module of src/ (a file `src/x.rs` and its folder
/// `src/x/`; not the crate root, `main.rs` or `src/bin/`) and the modules
/// its code uses.
fn module_uses() -> std::collections::BTreeMap<String, BTreeSet<String>> {
    let mut uses = std::collections::BTreeMap::<String, BTreeSet<String>>::new();
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    for file in files {
        let relative = file.strip_prefix(root().join("src")).unwrap();
        let first = relative.components().next().unwrap();
        let first = first.as_os_str().to_str().unwrap();
        if matches!(first, "bin" | "lib.rs" | "main.rs") {
            continue;
        }
        let module = first.trim_end_matches(".rs").to_string();
        let source = fs::read_to_string(&file).unwrap();
        let used = crate_modules_used(&source, &module);
        uses.entry(module).or_default().extend(used);
    }
    uses
}

/// The pairs of modules that use each other.
fn import_circles(
    uses: &std::collections::BTreeMap<String, BTreeSet<String>>,
) -> Vec<(String, String)> {
    let mut circles = Vec::new();
    for (module, used) in uses {
        for other in used {
            let back = uses
                .get(other)
                .is_some_and(|theirs| theirs.contains(module));
            if back && module < other {
                circles.push((module.clone(), other.clone()));
            }
        }
    }
    circles
}

/// A reader can take the modules of src/ one at a time, each only after
/// the ones it uses: no two use each other (cluster mode, for one, never
/// names the broadcaster that drives it).
#[test]
fn no_two_modules_of_src_use_each_other() {
    let uses = module_uses();
    assert!(
        uses.get("broadcaster")
            .is_some_and(|used| used.contains("cluster")),
        "the checker sees the broadcaster use cluster/: {uses:?}"
    );
    assert_eq!(import_circles(&uses), [], "modules that use each other");
}

#[test]
fn the_import_checker_itself() {
    let used = crate_modules_used(
        "use crate::a::B;\nuse crate::{b, c::{D, E}, self_mod::X};\n\
         // use crate::commented;\nlet x = crate::d::f();\nuse crate::self_mod::Y;",
        "self_mod",
    );
    assert_eq!(
        used.into_iter().collect::<Vec<_>>(),
        ["a", "b", "c", "d"],
        "use lines, groups and inline paths; not comments or itself"
    );
    let mut uses = std::collections::BTreeMap::new();
    uses.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    uses.insert(
        "b".to_string(),
        BTreeSet::from(["a".to_string(), "c".to_string()]),
    );
    uses.insert("c".to_string(), BTreeSet::new());
    assert_eq!(import_circles(&uses), [("a".to_string(), "b".to_string())]);
}

#[test]
fn the_checker_itself() {
    assert_eq!(cells(r"| a | b \| c | `d` |"), ["a", "b | c", "`d`"]);
    assert_eq!(code_spans("`x`<br>`y::z`"), ["x", "y::z"]);
    assert_eq!(
        links("[01 · Step 4](01-handshake.md#step-4) and [§5.2](https://x)"),
        [
            (
                "01 · Step 4".to_string(),
                "01-handshake.md#step-4".to_string()
            ),
            ("§5.2".to_string(), "https://x".to_string())
        ]
    );
    assert!(declares_fn("    pub fn parse(buf: &[u8])", "parse"));
    assert!(declares_fn("fn header_rules() {", "header_rules"));
    assert!(!declares_fn("fn parse_all(bytes: &[u8])", "parse"));
    assert!(matches_pattern("code_{code}_is_1002", "code_1005_is_1002"));
    assert!(matches_pattern(
        "opcode_{op:x}_alone_is_1002",
        "opcode_b_alone_is_1002"
    ));
    assert!(!matches_pattern("code_{code}_is_1002", "code__is_1002"));
    assert!(!matches_pattern(
        "missing_{name}_is_400",
        "missing_version_is_426"
    ));
    let headings = anchors("# 01 · A\n## Step 4: check every rule of §4.2.1\n## `wschat.v1`: x\n");
    assert!(headings.contains("step-4-check-every-rule-of-421"));
    assert!(headings.contains("wschatv1-x"));
    assert!(headings.contains("01--a"));
    assert!(Path::new(&root().join(TABLE)).is_file());
    assert!(check_function("wschat::protocol::frame::FrameHeader::parse").is_ok());
    assert!(check_function("wschat::protocol::frame::FrameHeader::no_such_fn").is_err());
    assert!(check_function("wschat::protocol::frame::OpCode::parse").is_err()); // wrong impl
    assert!(check_test("src/protocol/frame.rs::header_rules").is_ok());
    assert!(check_test("src/protocol/frame.rs::parse_all").is_err()); // not a #[test]
}

// ---------------------------------------------------------------------------
// Every Rust item named in the prose of docs/ and README.md exists.
//
// Fenced blocks are left out (the Rust ones are compiled as doctests
// already); what is checked is the `code spans` of the prose that name a
// Rust item, in one of these forms:
//
// - a path, `Outbox::try_push` or `wschat::protocol::frame::FrameHeader`,
//   or `src/writer.rs::Pump::run` (a file, then the items in it);
// - a call, `encode_frame(...)`, `Broadcaster::say()` (the arguments are
//   not looked at), or a variant with its fields, `Event::Text { .. }`;
// - a CamelCase name, `FrameHeader`, `Outbox`;
// - a SCREAMING_SNAKE_CASE constant, `OUTBOX_CAPACITY`.
//
// Everything else is left alone: flags (`--addr`), paths (`src/lib.rs`),
// shell commands and HTTP or JSON snippets (they have spaces or
// punctuation no Rust item has), and bare snake_case words (`handle`,
// `pending`), which are as often a field, a JSON key or a metric as a
// function. Each segment of a name must be declared somewhere in src/ or
// tests/ (`fn`, `struct`, `enum` and its variants, `const`, `static`,
// `type`, `trait`, `mod`, `macro_rules!`).
// ---------------------------------------------------------------------------

/// The Markdown files whose prose is checked: every chapter, and the
/// project's README.
fn prose_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("md"))
        .collect();
    files.sort();
    files.push(root().join("README.md"));
    files
}

/// Crates and std modules a path may start with: a name under them is
/// theirs, not ours.
const EXTERNAL_ROOTS: &[&str] = &[
    "std",
    "core",
    "alloc",
    "crossbeam_channel",
    "log",
    "sha1",
    "base64",
    "simple_logger",
];

/// Names from std, the prelude and the dependencies that the prose uses
/// without a path. They are not declared in this crate, and a name on this
/// list is never checked, so it stays short: only what a reader of Rust
/// knows without looking it up.
const WELL_KNOWN: &[&str] = &[
    // the prelude and its variants, and std traits
    "Ord",
    "Option",
    "Some",
    "None",
    "Result",
    "Ok",
    "Err",
    "String",
    "Vec",
    "Box",
    "Default",
    "Drop",
    "Iterator",
    "Send",
    "Sync",
    // std::sync, std::io, std::net, std::time, std::thread
    "Arc",
    "Mutex",
    "Condvar",
    "AtomicBool",
    "AtomicUsize",
    "Ordering",
    "Relaxed",
    "SeqCst",
    "Read",
    "Write",
    "IoSlice",
    "ErrorKind",
    "WouldBlock",
    "TcpStream",
    "TcpListener",
    "SocketAddr",
    "Duration",
    "Instant",
    "JoinHandle",
    // crossbeam_channel's two ends
    "Sender",
    "Receiver",
];

/// Names in backticks that are not Rust at all, so that no code declares
/// them: HTTP header names, the browser's JavaScript API, systemd unit
/// directives, and the kernel's socket options and TCP states.
const NOT_RUST: &[&str] = &[
    "Host",
    "Connection",
    "Upgrade",
    "Origin",
    "WebSocket",
    "XMLHttpRequest",
    "ExecStart",
    "DynamicUser",
    "StateDirectory",
    "LimitNOFILE",
    "TasksMax",
    "TimeoutStopSec",
    // the browser's API, named in the page's chapter
    "TextEncoder",
    "TCP_NODELAY",
    "SO_REUSEADDR",
    "TIME_WAIT",
];

/// Is `s` an identifier?
fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `FrameHeader`, `Outbox`: an upper-case letter, then letters and digits
/// with at least one lower-case letter.
fn is_camel_case(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_uppercase())
        && s.chars().all(|c| c.is_ascii_alphanumeric())
        && s.chars().any(|c| c.is_ascii_lowercase())
}

/// `OUTBOX_CAPACITY`: upper-case words joined by underscores (at least
/// two words, so that `GET` or `FIN` is not taken for a constant).
fn is_screaming_snake_case(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_uppercase())
        && s.contains('_')
        && !s.ends_with('_')
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// The Rust item names a code span refers to, each to be found in the
/// source; empty when the span does not name an item of ours.
fn named_items(span: &str) -> Vec<String> {
    let mut s = span.trim();
    // `src/writer.rs::Pump::run`: the items after the file.
    if let Some((_, items)) = s.split_once(".rs::") {
        s = items;
    }
    // A call or a variant with fields: the path before the arguments.
    if let Some(open) = s.find(['(', '{']) {
        let closer = if s[open..].starts_with('(') { ')' } else { '}' };
        if !s.ends_with(closer) {
            return Vec::new();
        }
        s = s[..open].trim_end();
    }
    // `Arc<[u8]>`, `Option<Outgoing>`: the type before its parameters.
    if let Some(open) = s.find('<') {
        if !s.ends_with('>') {
            return Vec::new();
        }
        s = &s[..open];
    }
    let segments: Vec<&str> = s.split("::").collect();
    if !segments.iter().all(|segment| is_ident(segment)) {
        return Vec::new(); // a path, a flag, a command, a snippet
    }
    let called = span.trim().contains('(');
    match segments.as_slice() {
        // A bare call is a Rust function only in snake_case: `onMessage()`
        // is JavaScript or PHP.
        [name]
            if is_camel_case(name)
                || is_screaming_snake_case(name)
                || (called && name.chars().all(|c| !c.is_ascii_uppercase())) =>
        {
            if WELL_KNOWN.contains(name) || NOT_RUST.contains(name) {
                Vec::new()
            } else {
                vec![name.to_string()]
            }
        }
        [_] => Vec::new(),
        [first, ..] if EXTERNAL_ROOTS.contains(first) => Vec::new(),
        // A method or associated item of a well-known type: `Arc::clone`.
        [.., owner, _] if WELL_KNOWN.contains(owner) => Vec::new(),
        // `wschat::` is this crate; the other segments must all exist.
        _ => segments
            .iter()
            .filter(|segment| **segment != "wschat" && **segment != "crate")
            .map(|segment| segment.to_string())
            .collect(),
    }
}

/// The code spans of a Markdown text outside fenced blocks, each with the
/// line it starts on. A span may run over a line break; a run of n
/// backticks is closed by the next run of exactly n.
fn prose_code_spans(markdown: &str) -> Vec<(usize, String)> {
    let mut prose = String::new();
    let mut in_fence = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            prose.push('\n');
            continue;
        }
        if !in_fence {
            prose.push_str(line);
        }
        prose.push('\n');
    }
    let bytes = prose.as_bytes();
    let run_at = |at: usize| bytes[at..].iter().take_while(|&&b| b == b'`').count();
    let mut spans = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] != b'`' {
            at += 1;
            continue;
        }
        let ticks = run_at(at);
        let start = at + ticks;
        let mut end = start;
        let close = loop {
            match bytes[end..].iter().position(|&b| b == b'`') {
                None => break None,
                Some(offset) => {
                    end += offset;
                    let n = run_at(end);
                    if n == ticks {
                        break Some(end);
                    }
                    end += n;
                }
            }
        };
        let Some(close) = close else { break };
        let line = prose[..at].matches('\n').count() + 1;
        spans.push((line, prose[start..close].replace('\n', " ")));
        at = close + ticks;
    }
    spans
}

/// The names of a piece of Rust source: its declared items and the
/// variants of its enums.
fn declared_names(source: &str, names: &mut BTreeSet<String>) {
    const KEYWORDS: &[&str] = &[
        "fn",
        "struct",
        "enum",
        "const",
        "static",
        "type",
        "trait",
        "mod",
        "union",
        "macro_rules!",
    ];
    // What may stand before the keyword (`pub(crate) const unsafe fn`).
    const QUALIFIERS: &[&str] = &["pub", "unsafe", "async", "extern", "\"C\""];
    // Inside an enum: the depth of braces, 1 where its variants are.
    let mut enum_depth = 0usize;
    for line in source.lines() {
        let code = line.split("//").next().unwrap_or("");
        let words: Vec<&str> = code
            .split_whitespace()
            .map(|w| if w.starts_with("pub(") { "pub" } else { w })
            .collect();
        let mut at = 0;
        while at < words.len()
            && (QUALIFIERS.contains(&words[at])
                || (words[at] == "const"
                    && words
                        .get(at + 1)
                        .is_some_and(|w| *w == "fn" || *w == "unsafe")))
        {
            at += 1;
        }
        let keyword = words.get(at).copied();
        let name = words.get(at + 1).map(|w| {
            let end = w
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(w.len());
            &w[..end]
        });
        if let (Some(keyword), Some(name)) = (keyword, name)
            && KEYWORDS.contains(&keyword)
            && is_ident(name)
        {
            names.insert(name.to_string());
        }
        let trimmed = code.trim();
        if enum_depth == 1 {
            // `Variant,`, `Variant(T)`, `Variant { .. }`, `Variant = 1`
            let end = trimmed
                .find(|c: char| !c.is_ascii_alphanumeric())
                .unwrap_or(trimmed.len());
            let (word, rest) = trimmed.split_at(end);
            let rest = rest.trim_start();
            if word.starts_with(|c: char| c.is_ascii_uppercase())
                && (rest.is_empty() || rest.starts_with([',', '(', '{', '=']))
            {
                names.insert(word.to_string());
            }
        }
        if enum_depth > 0 {
            enum_depth += code.matches('{').count();
            enum_depth = enum_depth.saturating_sub(code.matches('}').count());
        } else if keyword == Some("enum") && trimmed.ends_with('{') {
            enum_depth = 1;
        }
    }
}

/// Every `.rs` file under `dir`, recursively (build output left out).
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().and_then(|n| n.to_str()) != Some("target") {
                rust_files(&path, out);
            }
        } else if path.extension().and_then(|e| e.to_str()) == Some("rs") {
            out.push(path);
        }
    }
}

/// The names the browser client's JavaScript declares at the start of a
/// line (`const STABLE_MS = ...`, `function render(...)`).
fn declared_js_names(source: &str, names: &mut BTreeSet<String>) {
    for line in source.lines() {
        let mut words = line.split_whitespace();
        if let (Some("const" | "let" | "var" | "function" | "class"), Some(name)) =
            (words.next(), words.next())
        {
            let end = name
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '$'))
                .unwrap_or(name.len());
            names.insert(name[..end].to_string());
        }
    }
}

/// Is a string literal a conformance case's name, or the pattern of one
/// (`code_{code}_is_1002`), rather than a message (`"{all_passed} passed"`)?
fn is_case_name(literal: &str) -> bool {
    let mut outside = String::new();
    let mut rest = literal;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            return false;
        };
        let inside = &rest[open + 1..open + close];
        if inside.is_empty()
            || !inside
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        {
            return false;
        }
        outside.push_str(&rest[..open]);
        rest = &rest[open + close + 1..];
    }
    outside.push_str(rest);
    outside.chars().any(|c| c.is_ascii_lowercase())
        && outside.contains('_')
        && outside
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The code's names: every name declared in src/ and tests/, and in the
/// browser client in www/.
struct CodeNames {
    declared: BTreeSet<String>,
    /// Conformance cases are registered by name, `c.add("name", ...)`,
    /// some from a pattern (`code_{code}_is_1002`).
    conformance_cases: Vec<String>,
}

impl CodeNames {
    fn read() -> Self {
        let mut files = Vec::new();
        rust_files(&root().join("src"), &mut files);
        rust_files(&root().join("tests"), &mut files);
        let mut declared = BTreeSet::new();
        let mut conformance_cases = Vec::new();
        for file in files {
            let source = fs::read_to_string(&file).unwrap();
            declared_names(&source, &mut declared);
            if file.starts_with(root().join("tests/conformance"))
                || file.starts_with(root().join("src/bin/wschat-conformance"))
            {
                conformance_cases.extend(
                    string_literals(&source)
                        .into_iter()
                        .filter(|literal| is_case_name(literal))
                        .map(String::from),
                );
            }
        }
        for entry in fs::read_dir(root().join("www")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) == Some("js") {
                declared_js_names(&fs::read_to_string(&path).unwrap(), &mut declared);
            }
        }
        CodeNames {
            declared,
            conformance_cases,
        }
    }

    fn contains(&self, name: &str) -> bool {
        self.declared.contains(name)
            || self
                .conformance_cases
                .iter()
                .any(|case| matches_pattern(case, name))
    }
}

#[test]
fn every_rust_item_named_in_the_docs_exists() {
    let code = CodeNames::read();
    let mut missing = Vec::new();
    let mut checked = 0;
    for path in prose_files() {
        let relative = path.strip_prefix(root()).unwrap().display().to_string();
        for (line, span) in prose_code_spans(&fs::read_to_string(&path).unwrap()) {
            for name in named_items(&span) {
                checked += 1;
                if !code.contains(&name) {
                    missing.push(format!("{relative}:{line}: `{span}`: no item named {name}"));
                }
            }
        }
    }
    // The docs name well over a hundred items: far fewer means the
    // extraction broke, and the test would pass without checking anything.
    assert!(checked > 100, "only {checked} names found in the docs");
    assert!(
        missing.is_empty(),
        "names in the docs that the code does not declare (rename them in the docs, \
         or document what replaced them):\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_docs_name_checker_itself() {
    let names = |span: &str| named_items(span);
    assert_eq!(names("OUTBOX_CAPACITY"), ["OUTBOX_CAPACITY"]);
    assert_eq!(names("FrameHeader"), ["FrameHeader"]);
    assert_eq!(names("Outbox::try_push"), ["Outbox", "try_push"]);
    assert_eq!(names("encode_frame(OpCode::Text, ...)"), ["encode_frame"]);
    assert_eq!(names("queues()"), ["queues"]);
    assert_eq!(names("Event::Text { id, text }"), ["Event", "Text"]);
    assert_eq!(names("Option<Outgoing>"), Vec::<String>::new()); // Option is std's
    assert_eq!(
        names("wschat::protocol::frame::FrameHeader::parse"),
        ["protocol", "frame", "FrameHeader", "parse"]
    );
    assert_eq!(names("src/writer.rs::Pump::run"), ["Pump", "run"]);
    for not_an_item in [
        "--max-clients",
        "src/lib.rs",
        "handshake.rs",
        "Arc<[u8]>",
        "Arc::clone",
        "String::from_utf8",
        "std::io::Read",
        "crossbeam_channel::bounded(EVENT_QUEUE)",
        "GET",
        "FIN",
        "handle",
        "cargo test --doc",
        "Connection: Upgrade",
        r#"{"type":"users"}"#,
        "81 05 48 65 6c 6c 6f",
        "/nick NAME",
        "Sec-WebSocket-Accept",
        "u64",
        "onMessage($from, $msg)",
        "Origin",
        "TCP_NODELAY",
    ] {
        assert_eq!(names(not_an_item), Vec::<String>::new(), "{not_an_item}");
    }
    assert_eq!(
        prose_code_spans("a `x` b\n```rust\nlet `no` = 1;\n```\n`y\nz` and ``a`b``\n"),
        [
            (1, "x".to_string()),
            (5, "y z".to_string()),
            (6, "a`b".to_string())
        ]
    );
    assert!(is_case_name("code_{code}_is_1002"));
    assert!(is_case_name("{k}_len_{len}_whole"));
    assert!(is_case_name("opcode_{op:x}_alone_is_1002"));
    assert!(!is_case_name("{name}"));
    assert!(!is_case_name("{all_passed} passed, {all_failed} failed"));
    assert!(!is_case_name("{accept:?}"));
    let mut declared = BTreeSet::new();
    declared_names(
        "pub enum PushError {\n    Full,\n    Gone(u8),\n}\nconst fn f() {}\npub(crate) struct S;\nmacro_rules! m { () => {} }\n",
        &mut declared,
    );
    let expected: BTreeSet<String> = ["PushError", "Full", "Gone", "f", "S", "m"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(declared, expected);
}

// ---------------------------------------------------------------------------
// Facts, not only names: what the docs say about the code, checked against
// the code. Each check reads both sides; none keeps a list of phrases.
//
// - every `file.rs` the docs name (in prose, link labels and diagrams)
//   exists;
// - every `Type::item` path in a ```text diagram is declared;
// - every snake_case word in backticks (a wire token such as a close
//   reason or an error code, a metric, a flag's field) occurs in the code;
// - every close reason quoted after a close code ("1001 `ping_timeout`",
//   "Close 1002 \"client frames must be masked\"") is one the code sends;
// - chapter 08's list of CI steps is `.ci/run`'s, in order, and its table
//   of test layers names every test target and test script in tests/;
// - the map's list of protocol files without `mod tests` is exactly the
//   files in src/protocol/ without one;
// - every figure in the tables of chapter 09's and chapter 14's measured
//   runs is in tests/bench/BENCHMARKS.md, the log of the runs.
// ---------------------------------------------------------------------------

/// Every Markdown file of the docs, with the lines of its ```text blocks
/// (diagrams and outputs) and of its prose, fenced blocks blanked out.
struct Doc {
    relative: String,
    prose: String,
    /// (line, text) of every line inside a ```text block.
    diagram_lines: Vec<(usize, String)>,
    /// Every line, fenced or not.
    all: String,
}

fn docs() -> Vec<Doc> {
    prose_files()
        .into_iter()
        .map(|path| {
            let text = fs::read_to_string(&path).unwrap();
            let mut prose = String::new();
            let mut diagram_lines = Vec::new();
            let mut fence: Option<String> = None;
            for (i, line) in text.lines().enumerate() {
                let trimmed = line.trim_start();
                if trimmed.starts_with("```") {
                    fence = match fence {
                        Some(_) => None,
                        None => Some(trimmed.trim_start_matches('`').trim().to_string()),
                    };
                    prose.push('\n');
                    continue;
                }
                match fence.as_deref() {
                    None => prose.push_str(line),
                    Some("text") => diagram_lines.push((i + 1, line.to_string())),
                    Some(_) => {}
                }
                prose.push('\n');
            }
            Doc {
                relative: path.strip_prefix(root()).unwrap().display().to_string(),
                prose,
                diagram_lines,
                all: text,
            }
        })
        .collect()
}

/// Every file under `dir` (build output and node_modules left out), as
/// paths relative to the crate's root with `/` separators.
fn files_under(dir: &str, out: &mut Vec<String>) {
    let Ok(entries) = fs::read_dir(root().join(dir)) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let relative = format!("{dir}/{name}");
        if path.is_dir() {
            if name != "target" && name != "node_modules" {
                files_under(&relative, out);
            }
        } else {
            out.push(relative);
        }
    }
}

/// The `*.rs` names in a piece of text: `handshake.rs`, `src/room/mod.rs`,
/// `delivery/shard.rs` (a URL or a glob is not a name).
fn rust_file_names(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || "_/.-*:".contains(c)))
        .flat_map(|token| token.split("::"))
        .map(|token| token.trim_start_matches("../").trim_end_matches('.'))
        .filter(|token| {
            token.ends_with(".rs")
                && token.len() > 3
                && !token.contains('*')
                && !token.contains("//")
                && token
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        })
        .map(String::from)
        .collect()
}

/// Does a file named `name` (a path, or its end) exist in the crate?
fn rust_file_exists(name: &str, files: &[String]) -> bool {
    files
        .iter()
        .any(|f| f == name || f.ends_with(&format!("/{name}")))
}

fn crate_files() -> Vec<String> {
    let mut files = Vec::new();
    for dir in ["src", "tests", "docs", "www", ".ci"] {
        files_under(dir, &mut files);
    }
    files
}

#[test]
fn every_rust_file_named_in_the_docs_exists() {
    let files = crate_files();
    let mut missing = Vec::new();
    let mut checked = 0;
    for doc in docs() {
        let mut places: Vec<(usize, String)> = prose_code_spans(&doc.prose);
        places.extend(doc.diagram_lines.iter().cloned());
        for (line, text) in places {
            for name in rust_file_names(&text) {
                checked += 1;
                if !rust_file_exists(&name, &files) {
                    missing.push(format!("{}:{line}: no file {name}", doc.relative));
                }
            }
        }
    }
    assert!(checked > 50, "only {checked} file names found in the docs");
    assert!(missing.is_empty(), "\n{}", missing.join("\n"));
}

/// The `A::B` paths of a line of a diagram.
fn diagram_paths(line: &str) -> Vec<String> {
    line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .map(|token| token.trim_matches(':'))
        .filter(|token| token.contains("::") && token.split("::").all(is_ident))
        .map(String::from)
        .collect()
}

#[test]
fn every_rust_path_in_the_diagrams_exists() {
    let code = CodeNames::read();
    let mut missing = Vec::new();
    let mut checked = 0;
    for doc in docs() {
        for (line, text) in &doc.diagram_lines {
            for path in diagram_paths(text) {
                for name in named_items(&path) {
                    checked += 1;
                    if !code.contains(&name) {
                        missing.push(format!(
                            "{}:{line}: `{path}`: no item named {name}",
                            doc.relative
                        ));
                    }
                }
            }
        }
    }
    assert!(checked > 20, "only {checked} paths found in the diagrams");
    assert!(missing.is_empty(), "\n{}", missing.join("\n"));
}

/// Every word of the code and of the files the docs quote from (the
/// nginx configuration, the CI script, the examples).
fn code_words() -> BTreeSet<String> {
    let mut words = BTreeSet::new();
    for file in crate_files() {
        let is_code = file.starts_with("src/")
            || file.starts_with("tests/")
            || file.starts_with("www/")
            || file.starts_with(".ci/")
            || file.starts_with("docs/examples/")
            || file.starts_with("docs/nginx/");
        if !is_code || file.ends_with(".md") {
            continue;
        }
        let Ok(text) = fs::read_to_string(root().join(&file)) else {
            continue; // not text
        };
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if !word.is_empty() {
                words.insert(word.to_string());
            }
        }
    }
    words
}

/// `ping_timeout`, `nick_taken`: lower case words joined by underscores.
fn is_snake_token(s: &str) -> bool {
    s.contains('_')
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[test]
fn every_wire_token_named_in_the_docs_occurs_in_the_code() {
    let words = code_words();
    let mut missing = Vec::new();
    let mut checked = 0;
    for doc in docs() {
        if NOT_OURS.iter().any(|n| doc.relative.ends_with(n)) {
            continue; // it names nginx's directives, not ours
        }
        for (line, span) in prose_code_spans(&doc.prose) {
            let span = span.trim();
            if !is_snake_token(span) {
                continue;
            }
            checked += 1;
            // A metric is its family's name after the `wschat_` prefix.
            let found = words.contains(span)
                || span
                    .strip_prefix("wschat_")
                    .is_some_and(|family| words.contains(family));
            if !found {
                missing.push(format!(
                    "{}:{line}: `{span}` occurs nowhere in the code",
                    doc.relative
                ));
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} snake_case tokens found in the docs"
    );
    assert!(missing.is_empty(), "\n{}", missing.join("\n"));
}

/// The close reasons the server can send: every `CloseCode::X, "reason"`
/// in src/, and the reasons of `ProtocolError` (the string literals of
/// error.rs and close.rs, `{..}` standing for a value).
fn close_reasons() -> Vec<String> {
    let mut reasons = Vec::new();
    let mut files = Vec::new();
    files_under("src", &mut files);
    for file in files.iter().filter(|f| f.ends_with(".rs")) {
        let source = fs::read_to_string(root().join(file)).unwrap();
        let all_literals =
            file.ends_with("protocol/error.rs") || file.ends_with("protocol/close.rs");
        let mut rest = source.as_str();
        while let Some(at) = rest.find("CloseCode::") {
            rest = &rest[at + "CloseCode::".len()..];
            let variant_end = rest
                .find(|c: char| !c.is_ascii_alphanumeric())
                .unwrap_or(rest.len());
            let after = rest[variant_end..].trim_start();
            if let Some(after) = after.strip_prefix(',').map(str::trim_start)
                && let Some(literal) = after.strip_prefix('"')
                && let Some(end) = literal.find('"')
            {
                reasons.push(literal[..end].to_string());
            }
        }
        if all_literals {
            reasons.extend(string_literals(&source).into_iter().map(String::from));
        }
    }
    // A literal that is all placeholder (`"{}"`) says nothing.
    reasons.retain(|r| {
        let mut outside = String::new();
        let mut depth = 0;
        for c in r.chars() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                c if depth == 0 => outside.push(c),
                _ => {}
            }
        }
        outside.chars().filter(|c| c.is_ascii_alphabetic()).count() >= 3
    });
    reasons
}

/// Does `quoted` (as the docs quote it) match `reason` (as the code writes
/// it, `{..}` standing for any value)? A quote ending in `...` is a prefix.
fn reason_matches(quoted: &str, reason: &str) -> bool {
    if let Some(prefix) = quoted
        .strip_suffix("...")
        .or_else(|| quoted.strip_suffix('…'))
    {
        let fixed = reason.split('{').next().unwrap_or("");
        return reason.starts_with(prefix.trim_end())
            || prefix.trim_end().starts_with(fixed) && !fixed.is_empty();
    }
    fn matches(pattern: &str, text: &str) -> bool {
        match pattern.find('{') {
            None => pattern == text,
            Some(open) => {
                let Some(close) = pattern[open..].find('}') else {
                    return pattern == text;
                };
                let (prefix, rest) = (&pattern[..open], &pattern[open + close + 1..]);
                let Some(tail) = text.strip_prefix(prefix) else {
                    return false;
                };
                (1..=tail.len()).any(|n| {
                    tail.is_char_boundary(n)
                        && !tail[..n].contains(' ')
                        && matches(rest, &tail[n..])
                })
            }
        }
    }
    matches(reason, quoted)
}

/// The close reasons a line quotes right after a close code:
/// `1008 `rate_limited``, `1001 "ping timeout"`, `**1001** with the
/// reason `shutting_down``.
fn quoted_close_reasons(line: &str) -> Vec<(usize, u16, String)> {
    let mut out = Vec::new();
    let bytes = line.as_bytes();
    let mut at = 0;
    while at + 4 <= bytes.len() {
        let before = if at == 0 { None } else { Some(bytes[at - 1]) };
        let is_code = bytes[at..at + 4].iter().all(u8::is_ascii_digit)
            && before.is_none_or(|b| !b.is_ascii_alphanumeric() && b != b'_')
            && bytes
                .get(at + 4)
                .is_none_or(|b| !b.is_ascii_alphanumeric() && *b != b'_');
        if !is_code {
            at += 1;
            continue;
        }
        let code: u16 = line[at..at + 4].parse().unwrap();
        let mut rest = &line[at + 4..];
        // `1008` in a code span of its own: its closing backtick.
        if before == Some(b'`') {
            match rest.strip_prefix('`') {
                Some(after) => rest = after,
                None => {
                    at += 4;
                    continue; // inside a longer span: `code_1002_...`
                }
            }
        }
        let mut rest = rest.trim_start_matches('*').trim_start();
        for filler in ["with the reason", "with", "and the reason"] {
            rest = rest.strip_prefix(filler).unwrap_or(rest).trim_start();
        }
        let close = match rest.chars().next() {
            Some('"') => Some('"'),
            Some('`') => Some('`'),
            _ => None,
        };
        let is_close_code = (1000..=1015).contains(&code) || (3000..=4999).contains(&code);
        if is_close_code
            && let Some(close) = close
            && let Some(end) = rest[1..].find(close)
            && !rest[1..1 + end].starts_with([',', '.', ')', ' '])
        {
            out.push((at, code, rest[1..1 + end].to_string()));
        }
        at += 4;
    }
    out
}

/// In a table row that starts with a close code (`| 1008 | ...`), every
/// "quoted phrase" and every `snake_case` token is a reason for that code.
fn close_code_row_reasons(line: &str) -> Vec<(u16, String)> {
    let row = cells(line);
    let Some(code) = row.first().and_then(|c| c.parse::<u16>().ok()) else {
        return Vec::new();
    };
    if !line.starts_with('|') || !(1000..=4999).contains(&code) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for cell in &row[1..] {
        out.extend(
            code_spans(cell)
                .into_iter()
                .filter(|span| is_snake_token(span))
                .map(|span| (code, span)),
        );
        out.extend(
            cell.split('"')
                .skip(1)
                .step_by(2)
                .map(|q| (code, q.to_string())),
        );
    }
    out
}

#[test]
fn every_close_reason_the_docs_quote_is_one_the_code_sends() {
    let reasons = close_reasons();
    assert!(reasons.iter().any(|r| r == "slow_consumer"), "{reasons:?}");
    let mut wrong = Vec::new();
    let mut checked = 0;
    for doc in docs() {
        if doc.relative == TABLE {
            continue; // it quotes the RFC, not the server
        }
        let lines: Vec<&str> = doc.all.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            // A quote may run onto the next line: scan both, keep what
            // starts on this one.
            let joined = format!("{line} {}", lines.get(i + 1).unwrap_or(&""));
            let mut found: Vec<(u16, String)> = quoted_close_reasons(&joined)
                .into_iter()
                .filter(|(at, _, _)| *at < line.len())
                .map(|(_, code, reason)| (code, reason))
                .collect();
            found.extend(close_code_row_reasons(line));
            for (code, quoted) in found {
                checked += 1;
                // An empty reason is no reason (§5.5.1 allows none).
                if !quoted.is_empty() && !reasons.iter().any(|r| reason_matches(&quoted, r)) {
                    wrong.push(format!(
                        "{}:{}: {code} \"{quoted}\" is not a close reason the code sends",
                        doc.relative,
                        i + 1
                    ));
                }
            }
        }
    }
    assert!(
        checked > 20,
        "only {checked} close reasons found in the docs"
    );
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

/// The bulleted list that follows the paragraph naming `.ci/run` in
/// chapter 08: the first code span of each item.
fn ci_steps_in_chapter_08() -> Vec<String> {
    let text = read("docs/08-testing.md");
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.contains("(../.ci/run)"))
        .expect("chapter 08 links .ci/run");
    let mut steps = Vec::new();
    let mut in_list = false;
    for line in &lines[start..] {
        if let Some(item) = line.strip_prefix("- ") {
            in_list = true;
            if let Some(span) = code_spans(item).into_iter().next() {
                steps.push(span);
            }
        } else if in_list && !line.starts_with("  ") {
            break;
        }
    }
    steps
}

/// The steps `.ci/run` runs: the command after each line that announces
/// a step (`stage "name"`, or `echo "== name"`), leaving out those that
/// only print.
fn ci_steps_in_ci_run() -> Vec<String> {
    let text = read(".ci/run");
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let announces = |l: &str| {
        (l.starts_with("stage \"") && !l.starts_with("stage \"\"")) || l.starts_with("echo \"== ")
    };
    lines
        .windows(2)
        .filter(|pair| announces(pair[0]) && !announces(pair[1]))
        // A step that only prints (the summary) checks nothing.
        .filter(|pair| !pair[1].starts_with("echo ") && !pair[1].starts_with("printf "))
        .map(|pair| pair[1].to_string())
        .collect()
}

#[test]
fn chapter_08_lists_the_steps_of_ci_in_order() {
    let documented = ci_steps_in_chapter_08();
    let run = ci_steps_in_ci_run();
    assert!(run.len() >= 5, "{run:?}");
    assert_eq!(
        documented, run,
        "docs/08-testing.md's list of CI steps is not .ci/run's (left: the chapter)"
    );
}

#[test]
fn chapter_08_table_names_every_test_target_and_script() {
    let text = read("docs/08-testing.md");
    let linked: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with('|'))
        .flat_map(|l| links(l).into_iter().map(|(_, target)| target))
        .filter_map(|t| {
            t.strip_prefix("../")
                .map(|t| t.trim_end_matches('/').to_string())
        })
        .collect();
    let mut expected = Vec::new();
    for entry in fs::read_dir(root().join("tests")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        // A test target (tests/*.rs, or a directory with a main.rs named
        // in Cargo.toml), or a directory with a script to run.
        let is_target = path.extension().and_then(|e| e.to_str()) == Some("rs")
            || path.join("main.rs").is_file()
            || path.join("run.sh").is_file();
        if is_target {
            expected.push(format!("tests/{name}"));
        }
    }
    let missing: Vec<&String> = expected
        .iter()
        .filter(|t| {
            !linked
                .iter()
                .any(|l| l == *t || l.starts_with(&format!("{t}/")))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "docs/08-testing.md's table of test layers does not link {missing:?}"
    );
}

#[test]
fn the_map_names_the_protocol_files_without_unit_tests() {
    let text = read("docs/00-map.md");
    let bullet: String = text
        .split("\n- ")
        .find(|b| b.starts_with("**Tests are at the bottom.**"))
        .expect("the map's bullet about tests")
        .to_string();
    // The list is the first parenthesis of the bullet that names files.
    let named: BTreeSet<String> = bullet
        .split('(')
        .skip(1)
        .map(|group| group.split(')').next().unwrap_or(""))
        .map(rust_file_names)
        .find(|names| !names.is_empty())
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut files = Vec::new();
    files_under("src/protocol", &mut files);
    let without: BTreeSet<String> = files
        .iter()
        .filter(|f| f.ends_with(".rs"))
        .filter(|f| !read(f).contains("mod tests"))
        .map(|f| f.trim_start_matches("src/protocol/").to_string())
        .collect();
    assert_eq!(
        named, without,
        "docs/00-map.md says which protocol files have no `mod tests` (left); the files say (right)"
    );
}

/// The figures of a Markdown table row: numbers with a thousands separator
/// or a decimal point (`9,082,891`, `4.5`), which is what a measurement
/// looks like; small counts and section numbers are left alone.
fn figures(row: &str) -> Vec<String> {
    let mut out = Vec::new();
    let chars: Vec<char> = row.chars().collect();
    let mut at = 0;
    while at < chars.len() {
        let after_section_sign = at > 0 && "§.".contains(chars[at - 1]);
        if !chars[at].is_ascii_digit()
            || after_section_sign
            || (at > 0 && chars[at - 1].is_ascii_alphanumeric())
        {
            at += 1;
            continue;
        }
        let mut end = at;
        while end < chars.len()
            && (chars[end].is_ascii_digit()
                || ((chars[end] == ',' || chars[end] == '.')
                    && chars.get(end + 1).is_some_and(char::is_ascii_digit)))
        {
            end += 1;
        }
        let token: String = chars[at..end].iter().collect();
        if token.contains(',') || token.contains('.') {
            out.push(token);
        }
        at = end.max(at + 1);
    }
    out
}

/// The table rows of the section of `file` whose heading is `heading`,
/// or, with `after`, of the first table after a line containing it.
fn table_rows_after(file: &str, marker: &str) -> Vec<(usize, String)> {
    let text = read(file);
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("{file}: no line with {marker:?}"));
    lines[start..]
        .iter()
        .enumerate()
        .skip_while(|(_, l)| !l.starts_with('|'))
        .take_while(|(_, l)| l.starts_with('|'))
        .map(|(i, l)| (start + i + 1, l.to_string()))
        .collect()
}

#[test]
fn the_measured_figures_of_the_docs_are_in_the_benchmark_log() {
    let log: BTreeSet<String> = read("tests/bench/BENCHMARKS.md")
        .lines()
        .flat_map(figures)
        .collect();
    let mut missing = Vec::new();
    let mut checked = 0;
    for (file, marker) in [
        ("docs/09-performance.md", "## Figures"),
        ("docs/14-cluster.md", "tests/bench/cluster.sh"),
    ] {
        for (line, row) in table_rows_after(file, marker) {
            for figure in figures(&row) {
                checked += 1;
                if !log.contains(figure.as_str()) {
                    missing.push(format!("{file}:{line}: {figure}"));
                }
            }
        }
    }
    assert!(checked > 40, "only {checked} figures found");
    assert!(
        missing.is_empty(),
        "figures in the docs that tests/bench/BENCHMARKS.md does not record:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_fact_checkers_themselves() {
    assert_eq!(
        rust_file_names("see `room.rs` and [`src/room/mod.rs`](../src/room/mod.rs)"),
        ["room.rs", "src/room/mod.rs", "src/room/mod.rs"]
    );
    assert_eq!(
        rust_file_names("`src/connection.rs::negotiate_deflate`"),
        ["src/connection.rs"]
    );
    assert!(rust_file_names("tests/*.rs and https://x.rs").is_empty());
    let files = vec!["src/room/mod.rs".to_string()];
    assert!(rust_file_exists("room/mod.rs", &files));
    assert!(!rust_file_exists("room.rs", &files));
    assert_eq!(
        diagram_paths("│ queues Close 4000 (Outgoing::Close)"),
        ["Outgoing::Close"]
    );
    let reasons = |line: &str| -> Vec<(u16, String)> {
        quoted_close_reasons(line)
            .into_iter()
            .map(|(_, code, reason)| (code, reason))
            .collect()
    };
    assert_eq!(
        reasons(r#"closed with 1001 "ping timeout" and **1001** with the reason `shutting_down`"#),
        [
            (1001, "ping timeout".to_string()),
            (1001, "shutting_down".to_string())
        ]
    );
    assert_eq!(reasons("p50 1000 `x`... port 8080 `y`").len(), 1);
    assert_eq!(
        reasons("Close `1008` `rate_limited`; `1006`, a connection; `code_1002`<br>`x`"),
        [(1008, "rate_limited".to_string())]
    );
    assert_eq!(
        close_code_row_reasons(
            r#"| 1008 | `Policy` | too slow ("slow consumer"), or `rate_limited` |"#
        ),
        [
            (1008, "rate_limited".to_string()),
            (1008, "slow consumer".to_string())
        ]
    );
    assert!(reason_matches(
        "message over 65536 bytes",
        "message over {limit} bytes"
    ));
    assert!(reason_matches(
        "message over ...",
        "message over {limit} bytes"
    ));
    assert!(!reason_matches("ping timeout", "ping_timeout"));
    assert_eq!(
        figures("| a 100 × 10 | **9,082,891** | 4.5 / 9.2 ms | §5.2 |"),
        ["9,082,891", "4.5", "9.2"]
    );
    assert!(is_snake_token("ping_timeout"));
    assert!(!is_snake_token("handle"));
}

/// A constant's value as the code declares it, in base units (bytes or a
/// count; milliseconds for a time): integer arithmetic with `*` and `<<`,
/// `Duration::from_secs(N)` / `from_millis(N)`, and `*_MS` / `*_SECS`
/// names in milliseconds and seconds. `None` for anything else.
fn constant_values() -> Vec<(String, u64, bool)> {
    let mut out = Vec::new();
    let mut files = Vec::new();
    files_under("src", &mut files);
    files_under("www", &mut files);
    for file in files
        .iter()
        .filter(|f| f.ends_with(".rs") || f.ends_with(".js"))
    {
        let source = fs::read_to_string(root().join(file)).unwrap();
        for line in source.lines() {
            let code = line.split("//").next().unwrap_or("").trim();
            let Some(at) = code.find("const ") else {
                continue;
            };
            let rest = &code[at + "const ".len()..];
            let name_end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let name = &rest[..name_end];
            if !is_screaming_snake_case(name) {
                continue;
            }
            let Some((_, init)) = rest.split_once('=') else {
                continue;
            };
            let init = init.trim().trim_end_matches(';').trim();
            let (value, is_time) = if let Some(n) = init
                .strip_prefix("Duration::from_secs(")
                .and_then(|n| n.strip_suffix(')'))
            {
                (evaluate(n).map(|s| s * 1000), true)
            } else if let Some(n) = init
                .strip_prefix("Duration::from_millis(")
                .and_then(|n| n.strip_suffix(')'))
            {
                (evaluate(n), true)
            } else if name.ends_with("_MS") {
                (evaluate(init), true)
            } else if name.ends_with("_SECS") {
                (evaluate(init).map(|s| s * 1000), true)
            } else {
                (evaluate(init), false)
            };
            if let Some(value) = value {
                out.push((name.to_string(), value, is_time));
            }
        }
    }
    out
}

/// `16 * 1024`, `1 << 20`, `10_000`: integer products and shifts.
fn evaluate(expression: &str) -> Option<u64> {
    let mut product = 1u64;
    for factor in expression.split('*') {
        let factor = factor.trim();
        let value = match factor.split_once("<<") {
            Some((a, b)) => evaluate(a)? << evaluate(b)?,
            None => factor.replace('_', "").parse().ok()?,
        };
        product = product.checked_mul(value)?;
    }
    Some(product)
}

/// A value as the docs write it, `16 384`, `2 KiB`, `10 s`, `24
/// characters`, in base units, and whether it is a time.
fn doc_value(text: &str) -> Option<(u64, bool)> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == ' ' || c == ','))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let number: u64 = number.replace([' ', ','], "").parse().ok()?;
    match unit.split_whitespace().next().unwrap_or("") {
        "" | "characters" | "bytes" | "slots" | "frames" => Some((number, false)),
        "KiB" => Some((number * 1024, false)),
        "MiB" => Some((number * 1024 * 1024, false)),
        "GiB" => Some((number << 30, false)),
        "s" => Some((number * 1000, true)),
        "ms" => Some((number, true)),
        _ => None,
    }
}

/// `NAME` (value) in prose, and rows of a limits table with `(constant)
/// `NAME`` in one cell and the value in the cell before it.
fn documented_constants(markdown: &str) -> Vec<(usize, String, String)> {
    let mut out = Vec::new();
    for (i, line) in markdown.lines().enumerate() {
        if line.starts_with('|') {
            let row = cells(line);
            for (at, cell) in row.iter().enumerate() {
                if let Some(name) = cell
                    .strip_prefix("(constant) `")
                    .and_then(|c| c.strip_suffix('`'))
                    && at > 0
                {
                    out.push((i + 1, name.to_string(), row[at - 1].clone()));
                }
            }
        }
        let mut rest = line;
        while let Some(open) = rest.find('`') {
            let after = &rest[open + 1..];
            let Some(close) = after.find('`') else { break };
            let name = &after[..close];
            let tail = &after[close + 1..];
            if is_screaming_snake_case(name)
                && let Some(inner) = tail.strip_prefix(" (")
                && let Some(end) = inner.find(')')
            {
                out.push((i + 1, name.to_string(), inner[..end].to_string()));
            }
            rest = tail;
        }
    }
    out
}

#[test]
fn every_constant_the_docs_give_a_value_has_that_value() {
    let constants = constant_values();
    let mut wrong = Vec::new();
    let mut checked = 0;
    for doc in docs() {
        for (line, name, value) in documented_constants(&doc.all) {
            let Some((documented, doc_is_time)) = doc_value(&value) else {
                continue; // not a plain value: `(repeatable)`, `(client)`
            };
            let declared: Vec<&(String, u64, bool)> =
                constants.iter().filter(|(n, _, _)| *n == name).collect();
            if declared.is_empty() {
                continue; // the name checker reports unknown names
            }
            checked += 1;
            if !declared
                .iter()
                .any(|(_, v, is_time)| *v == documented && *is_time == doc_is_time)
            {
                wrong.push(format!(
                    "{}:{line}: `{name}` ({value}), but the code says {:?}",
                    doc.relative,
                    declared.iter().map(|(_, v, t)| (v, t)).collect::<Vec<_>>()
                ));
            }
        }
    }
    assert!(
        checked >= 15,
        "only {checked} constants with a value found in the docs"
    );
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

#[test]
fn the_constant_checker_itself() {
    assert_eq!(evaluate("16 * 1024"), Some(16384));
    assert_eq!(evaluate("1 << 20"), Some(1 << 20));
    assert_eq!(evaluate("10_000"), Some(10000));
    assert_eq!(evaluate("usize::MAX"), None);
    assert_eq!(doc_value("16 384"), Some((16384, false)));
    assert_eq!(doc_value("2 KiB"), Some((2048, false)));
    assert_eq!(doc_value("10 s"), Some((10000, true)));
    assert_eq!(doc_value("24 characters"), Some((24, false)));
    assert_eq!(doc_value("repeatable"), None);
    assert_eq!(
        documented_constants(
            "`READER_STACK` (256 KiB) and\n| x | 2 s | (constant) `CLOSE_TIMEOUT` |"
        ),
        [
            (1, "READER_STACK".to_string(), "256 KiB".to_string()),
            (2, "CLOSE_TIMEOUT".to_string(), "2 s".to_string())
        ]
    );
}

/// The map says "`protocol` imports nothing from the rest of the crate":
/// every `crate::` path in src/protocol/ stays in `crate::protocol`.
#[test]
fn the_protocol_layer_imports_nothing_from_the_server() {
    let mut files = Vec::new();
    files_under("src/protocol", &mut files);
    let mut outside = Vec::new();
    for file in files.iter().filter(|f| f.ends_with(".rs")) {
        for (i, line) in read(file).lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for (at, _) in code.match_indices("crate::") {
                let path = &code[at + "crate::".len()..];
                if !path.starts_with("protocol") {
                    outside.push(format!("{file}:{}: {}", i + 1, line.trim()));
                }
            }
        }
    }
    assert!(outside.is_empty(), "\n{}", outside.join("\n"));
}
