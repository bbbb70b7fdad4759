//! Keeps docs/12-traceability.md honest. The chapter is a table from each
//! server-side requirement of RFC 6455 to the function that enforces it,
//! the tests that prove it, and the paragraph that explains it; these tests
//! parse the table and check that every function and test it names still
//! exists in the file it names, that every linked chapter and anchor exists,
//! and that every section of §4.2, §5 and §7 is accounted for. They also
//! check the links of the whole walkthrough, and that every chapter is
//! compiled as a doctest.

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
    if file.starts_with("tests/conformance/") {
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
