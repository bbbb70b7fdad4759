//! No function in `src/` is longer than [`MAX_LINES`] lines, so that a
//! reader meets steps, not walls (the binaries in `src/bin/`, unit-test
//! files and `#[cfg(test)]` modules aside). The scan is deliberately
//! simple: it finds each `fn` item and counts the lines to its closing
//! brace, skipping comments, strings and character literals so that a
//! brace inside them does not count.

use std::fs;
use std::path::{Path, PathBuf};

/// The longest a function in `src/` may be, its signature and closing
/// brace included.
const MAX_LINES: usize = 100;

/// Functions allowed over the limit, as `file:function`, each with the
/// reason. None today; the test fails on an entry that is no longer
/// needed, so the list can only shrink.
const ALLOWED: &[&str] = &[];

/// One function found in a source file.
#[derive(Debug, PartialEq)]
struct Function {
    name: String,
    /// 1-based line of its `fn`.
    line: usize,
    lines: usize,
}

/// The source with comments, string and character literals blanked out
/// (newlines kept, so that line numbers stay right).
fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if (c == 'r' || (c == 'b' && next == Some('r')))
            && !chars[..i]
                .last()
                .is_some_and(|p| p.is_alphanumeric() || *p == '_')
            && raw_string_start(&chars, i).is_some()
        {
            let (hashes, body) = raw_string_start(&chars, i).unwrap();
            for _ in i..body {
                out.push(' ');
            }
            i = body;
            let closing: Vec<char> = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            while i < chars.len() && !chars[i..].starts_with(&closing) {
                out.push(blank(chars[i]));
                i += 1;
            }
            for _ in 0..closing.len().min(chars.len() - i) {
                out.push(' ');
            }
            i += closing.len();
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && is_char_literal(&chars, i) {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                out.push(' ');
                i += 1;
            }
            out.push(' ');
            i += 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// If a raw string (`r"`, `r#"`, `br"`...) starts at `i`: its number of
/// `#` and where its body starts.
fn raw_string_start(chars: &[char], i: usize) -> Option<(usize, usize)> {
    let mut j = i + if chars[i] == 'b' { 2 } else { 1 };
    let mut hashes = 0;
    while chars.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    (chars.get(j) == Some(&'"')).then_some((hashes, j + 1))
}

/// A `'` that opens a character literal, not a lifetime or label.
fn is_char_literal(chars: &[char], i: usize) -> bool {
    matches!(
        (chars.get(i + 1), chars.get(i + 2)),
        (Some('\\'), _) | (Some(_), Some('\''))
    )
}

/// The name of the function a line declares, if it starts one.
fn declared_fn(line: &str) -> Option<String> {
    let mut words = line.split_whitespace().peekable();
    while let Some(word) = words.next() {
        match word {
            "pub" | "const" | "unsafe" | "async" | "extern" | "default" => {}
            w if w.starts_with("pub(") => {}
            w if w.starts_with('"') => {} // extern "C"
            "fn" => {
                let name = words.next()?;
                let end = name
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .unwrap_or(name.len());
                return Some(name[..end].to_string());
            }
            _ => return None,
        }
    }
    None
}

/// The functions of one file, outside `#[cfg(test)]` items.
fn functions(source: &str) -> Vec<Function> {
    let code = code_only(source);
    let lines: Vec<&str> = code.lines().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let trimmed = lines[i].trim();
        if trimmed == "#[cfg(test)]" {
            // Skip the item it marks (a test module or helper).
            i = item_end(&lines, i + 1).map_or(lines.len(), |end| end + 1);
            continue;
        }
        if let Some(name) = declared_fn(trimmed)
            && let Some(end) = item_end(&lines, i)
        {
            found.push(Function {
                name,
                line: i + 1,
                lines: end - i + 1,
            });
        }
        i += 1;
    }
    found
}

/// The line of the brace that closes the item starting at line `start`,
/// or `None` for an item without a body (it ends in `;` first).
fn item_end(lines: &[&str], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut opened = false;
    for (n, line) in lines.iter().enumerate().skip(start) {
        for c in line.chars() {
            match c {
                '{' => {
                    depth += 1;
                    opened = true;
                }
                '}' => {
                    depth = depth.saturating_sub(1);
                    if opened && depth == 0 {
                        return Some(n);
                    }
                }
                ';' if !opened && depth == 0 => return None,
                _ => {}
            }
        }
    }
    None
}

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "bin" && name != "tests" {
                source_files(&path, out);
            }
        } else if name.ends_with(".rs") && name != "tests.rs" {
            out.push(path);
        }
    }
}

/// Every function over the limit, as `file:function (N lines, line L)`.
fn long_functions() -> Vec<(String, String)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    source_files(&root.join("src"), &mut files);
    assert!(files.len() > 20, "the scan found too few files in src/");
    let mut long = Vec::new();
    for path in files {
        let source = fs::read_to_string(&path).unwrap();
        let file = path.strip_prefix(&root).unwrap().display().to_string();
        for f in functions(&source) {
            if f.lines > MAX_LINES {
                long.push((
                    format!("{file}:{}", f.name),
                    format!("{file}:{} is {} lines (line {})", f.name, f.lines, f.line),
                ));
            }
        }
    }
    long
}

#[test]
fn no_function_in_src_is_over_the_limit() {
    let long = long_functions();
    let over: Vec<&String> = long
        .iter()
        .filter(|(key, _)| !ALLOWED.contains(&key.as_str()))
        .map(|(_, text)| text)
        .collect();
    assert!(
        over.is_empty(),
        "functions over {MAX_LINES} lines (split them into named steps):\n{}",
        over.iter()
            .map(|s| format!("  {s}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let stale: Vec<&&str> = ALLOWED
        .iter()
        .filter(|allowed| !long.iter().any(|(key, _)| key == *allowed))
        .collect();
    assert!(
        stale.is_empty(),
        "allowed but no longer over {MAX_LINES} lines, remove from ALLOWED: {stale:?}"
    );
}

#[test]
fn the_scan_itself() {
    let source = r#"
pub fn short() {
    let s = "}}}";
    let c = '}';
    // }
    /* { */
}

pub(crate) fn signature_on_two(
    x: u8,
) -> u8 {
    if x > 0 { x } else { 1 }
}

trait T {
    fn declared(&self);
    fn provided(&self) -> &'static str { r"}" }
}

#[cfg(test)]
mod tests {
    fn hidden() {}
}

const fn after() {}
"#;
    let found: Vec<(String, usize, usize)> = functions(source)
        .into_iter()
        .map(|f| (f.name, f.line, f.lines))
        .collect();
    assert_eq!(
        found,
        vec![
            ("short".to_string(), 2, 6),
            ("signature_on_two".to_string(), 9, 5),
            ("provided".to_string(), 17, 1),
            ("after".to_string(), 25, 1),
        ]
    );
    let mut long = String::from("fn long() {\n");
    long.push_str(&"    step();\n".repeat(MAX_LINES - 2));
    long.push_str("}\n");
    assert_eq!(functions(&long)[0].lines, MAX_LINES);
}
