//! Runs the walkthrough's "Try it" steps and compares what they print with
//! what the chapters say they print.
//!
//! In a chapter, a runnable step is a fenced block whose info string is
//! `sh try-it`, followed (after any prose) by a block whose info string is
//! `text output`: what the step prints on its standard output. In that
//! block, `[..]` stands for any text within a line and a line `...` for any
//! number of lines (ports, keys, ids, times). An HTML comment
//! `<!-- try-it server: FLAGS -->` before a step gives the flags the
//! chapter's prose asks the server to be started with.
//!
//! Each step gets a fresh server: the real `wschat` binary on an ephemeral
//! loopback port, substituted for every `127.0.0.1:8080` of the step; the
//! echo server of chapter 00 (docs/examples/echo.rs, compiled in here)
//! stands for `127.0.0.1:9001`. Steps run with `bash` from the crate's
//! root; python3 and curl must be installed (a missing one fails the step:
//! the chapters tell the reader to use them).
//!
//! Every `sh` block of a "Try it" section is either runnable or says why
//! not, in a comment `<!-- not run: REASON -->` before it.

#[allow(dead_code)] // its `main` is for `cargo run --example echo`
#[path = "../docs/examples/echo.rs"]
mod echo;

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The longest a step may run (the slowest ones wait out a 10 s timeout).
const STEP_TIMEOUT: Duration = Duration::from_secs(40);
/// The port the chapters use for wschat, and for chapter 00's echo server.
const WSCHAT_PORT: u16 = 8080;
const ECHO_PORT: u16 = 9001;

/// The ways a step may write the address `127.0.0.1:{port}`: in a URL or
/// a `Host` header, and as Python's `('127.0.0.1',port)`.
fn address_forms(port: u16) -> [String; 2] {
    [format!("127.0.0.1:{port}"), format!("'127.0.0.1',{port}")]
}

/// Does `text` name `port` on 127.0.0.1?
fn names_port(text: &str, port: u16) -> bool {
    address_forms(port)
        .iter()
        .any(|form| text.contains(form.as_str()))
}

/// `text` with `from` replaced by `to` in every address form.
fn move_port(text: &str, from: u16, to: u16) -> String {
    let mut out = text.to_string();
    for (a, b) in address_forms(from).iter().zip(address_forms(to)) {
        out = out.replace(a.as_str(), &b);
    }
    out
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One fenced block of a chapter.
#[derive(Debug)]
struct Block {
    /// 1-based line of the opening fence.
    line: usize,
    info: Vec<String>,
    body: String,
    /// The `<!-- ... -->` comment on the last non-blank line before it.
    comment: Option<String>,
    /// Inside a "Try it" section (a heading that starts with "Try it").
    in_try_it: bool,
}

/// The fenced blocks of a Markdown text, indented ones (in list items)
/// included; the fence's indentation is removed from the body.
fn blocks(markdown: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<(usize, usize, Vec<String>, Option<String>)> = None;
    let mut body = String::new();
    let mut last_text: Option<String> = None;
    let mut in_try_it = false;
    for (i, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if let Some((start, fence_indent, info, comment)) = &open {
            if trimmed.starts_with("```") {
                out.push(Block {
                    line: *start,
                    info: info.clone(),
                    body: std::mem::take(&mut body),
                    comment: comment.clone(),
                    in_try_it,
                });
                open = None;
                last_text = None;
            } else {
                body.push_str(line.get(*fence_indent..).unwrap_or(trimmed));
                body.push('\n');
            }
            continue;
        }
        if let Some(info) = trimmed.strip_prefix("```") {
            let comment = last_text
                .take()
                .filter(|t| t.starts_with("<!--") && t.ends_with("-->"))
                .map(|t| t["<!--".len()..t.len() - "-->".len()].trim().to_string());
            let info = info.split_whitespace().map(String::from).collect();
            open = Some((i + 1, indent, info, comment));
        } else if line.starts_with('#') {
            in_try_it = line.trim_start_matches('#').trim().starts_with("Try it");
            last_text = None;
        } else if !trimmed.is_empty() {
            last_text = Some(trimmed.to_string());
        }
    }
    out
}

/// One runnable step and what it prints.
#[derive(Debug)]
struct Step {
    line: usize,
    command: String,
    expected: String,
    server_flags: Vec<String>,
}

/// The steps of a chapter; every `sh` block of its "Try it" section must
/// be a step or say why it is not.
fn steps(chapter: &str, markdown: &str) -> Vec<Step> {
    let blocks = blocks(markdown);
    let mut steps = Vec::new();
    for (at, block) in blocks.iter().enumerate() {
        let is_step = block.info.iter().any(|w| w == "try-it");
        if !is_step {
            let says_why = block
                .comment
                .as_deref()
                .is_some_and(|c| c.starts_with("not run:") && c.len() > "not run:".len() + 5);
            assert!(
                !block.in_try_it
                    || block.info.first().map(String::as_str) != Some("sh")
                    || says_why,
                "{chapter}:{}: a Try-it `sh` block is neither `sh try-it` nor preceded by \
                 <!-- not run: REASON -->",
                block.line
            );
            continue;
        }
        let output = blocks[at + 1..]
            .iter()
            .find(|b| b.info.iter().any(|w| w == "output" || w == "try-it"))
            .filter(|b| b.info.iter().any(|w| w == "output"))
            .unwrap_or_else(|| {
                panic!(
                    "{chapter}:{}: a try-it step without a `text output` block after it",
                    block.line
                )
            });
        let server_flags = block
            .comment
            .as_deref()
            .and_then(|c| c.strip_prefix("try-it server:"))
            .map(|flags| flags.split_whitespace().map(String::from).collect())
            .unwrap_or_default();
        steps.push(Step {
            line: block.line,
            command: block.body.clone(),
            expected: output.body.clone(),
            server_flags,
        });
    }
    steps
}

/// Does `line` match `pattern`, where `[..]` is any text?
fn line_matches(pattern: &str, line: &str) -> bool {
    let mut parts = pattern.split("[..]");
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = line.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

/// Do the lines of `actual` match those of `expected`, where a line `...`
/// stands for any number of lines?
fn output_matches(expected: &[&str], actual: &[&str]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((&"...", rest)) => (0..=actual.len()).any(|n| output_matches(rest, &actual[n..])),
        Some((first, rest)) => actual
            .split_first()
            .is_some_and(|(line, more)| line_matches(first, line) && output_matches(rest, more)),
    }
}

/// A wschat process on an ephemeral port, killed when dropped.
struct Wschat {
    child: Child,
    port: u16,
    log: mpsc::Receiver<String>,
}

impl Wschat {
    fn start(flags: &[String]) -> Wschat {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wschat"))
            .args(["--addr", "127.0.0.1:0"])
            .args(flags)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wschat");
        let (tx, log) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let port = loop {
            let line = log
                .recv_timeout(Duration::from_secs(20))
                .expect("wschat did not say where it listens");
            if let Some((_, rest)) = line.split_once("Listening on http://127.0.0.1:") {
                break rest.trim_end_matches('/').parse().unwrap();
            }
        };
        Wschat { child, port, log }
    }
}

impl Drop for Wschat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a command with bash, at the crate's root; returns its stdout and
/// exit status, or fails after [`STEP_TIMEOUT`].
fn run(command: &str) -> (String, String, Option<i32>) {
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(command)
        .current_dir(root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > STEP_TIMEOUT {
            let _ = child.kill();
            panic!("step still running after {STEP_TIMEOUT:?}:\n{command}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
    assert_ne!(
        status.code(),
        Some(127),
        "a command the step needs is not installed:\n{command}\n{stderr}"
    );
    (reader.join().unwrap(), stderr, status.code())
}

/// The lines of an output, without trailing spaces (or the `\r` of an
/// HTTP head) and without the blank lines at its end, which no reader sees.
fn lines(output: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = output.lines().map(str::trim_end).collect();
    while lines.last() == Some(&"") {
        lines.pop();
    }
    lines
}

/// Runs every step of a chapter; returns how many there were.
fn check_chapter(chapter: &str) -> usize {
    let markdown = fs::read_to_string(root().join("docs").join(chapter)).unwrap();
    let steps = steps(chapter, &markdown);
    let mut failures = Vec::new();
    for step in &steps {
        let wschat =
            names_port(&step.command, WSCHAT_PORT).then(|| Wschat::start(&step.server_flags));
        let mut command = step.command.clone();
        let mut expected = step.expected.clone();
        if let Some(wschat) = &wschat {
            command = move_port(&command, WSCHAT_PORT, wschat.port);
            expected = move_port(&expected, WSCHAT_PORT, wschat.port);
        }
        if names_port(&command, ECHO_PORT) {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            std::thread::spawn(move || echo::serve(listener));
            command = move_port(&command, ECHO_PORT, port);
            expected = move_port(&expected, ECHO_PORT, port);
        }
        let (actual, stderr, status) = run(&command);
        let (expected_lines, actual_lines) = (lines(&expected), lines(&actual));
        if !output_matches(&expected_lines, &actual_lines) {
            let log: Vec<String> = wschat.iter().flat_map(|w| w.log.try_iter()).collect();
            failures.push(format!(
                "docs/{chapter}:{}: the step prints something else than the chapter says\n\
                 --- step\n{}--- the chapter says\n{}--- it printed (exit status {status:?})\n{}\
                 --- on stderr\n{}--- the server's log\n{}\n",
                step.line,
                step.command,
                step.expected,
                actual,
                stderr,
                log.join("\n")
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    steps.len()
}

/// Each chapter's test also checks that its steps are still found: a
/// chapter that loses its markers would otherwise pass without running
/// anything.
macro_rules! chapter {
    ($test:ident, $file:literal, $at_least:literal) => {
        #[test]
        fn $test() {
            let checked = check_chapter($file);
            assert!(
                checked >= $at_least,
                "docs/{}: {checked} runnable steps, expected at least {}",
                $file,
                $at_least
            );
        }
    };
}

chapter!(ch00_intro, "00-intro.md", 3);
chapter!(ch00_map, "00-map.md", 2);
chapter!(ch01_handshake, "01-handshake.md", 7);
chapter!(ch02_frames, "02-frames.md", 3);
chapter!(ch03_messages, "03-messages.md", 5);
chapter!(ch04_closing, "04-closing.md", 4);
chapter!(ch05_threads, "05-threads.md", 2);
chapter!(ch06_chat_protocols, "06-chat-protocols.md", 2);
chapter!(ch07_browser_client, "07-browser-client.md", 1);
chapter!(ch10_security, "10-security.md", 6);
chapter!(ch13_compression, "13-compression.md", 2);
chapter!(ch15_rooms, "15-rooms.md", 2);

/// The chapters whose steps the tests above run.
const RUN: &[&str] = &[
    "00-intro.md",
    "00-map.md",
    "01-handshake.md",
    "02-frames.md",
    "03-messages.md",
    "04-closing.md",
    "05-threads.md",
    "06-chat-protocols.md",
    "07-browser-client.md",
    "10-security.md",
    "13-compression.md",
    "15-rooms.md",
];

/// Every chapter's Try-it blocks run or say why not, and a chapter with
/// runnable steps is one of those run.
#[test]
fn every_try_it_block_runs_or_says_why_not() {
    for entry in fs::read_dir(root().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if path.extension().and_then(|e| e.to_str()) != Some("md") {
            continue;
        }
        let found = steps(&name, &fs::read_to_string(&path).unwrap());
        assert!(
            found.is_empty() || RUN.contains(&name.as_str()),
            "docs/{name} has runnable steps: add a chapter! line for it"
        );
    }
}

#[test]
fn the_step_runner_itself() {
    assert!(line_matches(
        "HTTP/1.1 101 Switching Protocols",
        "HTTP/1.1 101 Switching Protocols"
    ));
    assert!(!line_matches(
        "HTTP/1.1 101",
        "HTTP/1.1 101 Switching Protocols"
    ));
    assert!(line_matches(
        "Listening on [..]/",
        "Listening on http://127.0.0.1:1/"
    ));
    assert!(line_matches("[..]", ""));
    assert!(line_matches("a [..] b [..] c", "a x b y c"));
    assert!(!line_matches("a [..] b [..] c", "a x c"));
    assert!(output_matches(&["a", "...", "d"], &["a", "b", "c", "d"]));
    assert!(output_matches(&["a", "...", "d"], &["a", "d"]));
    assert!(!output_matches(&["a", "d"], &["a", "b", "d"]));
    assert!(!output_matches(&["a"], &["a", "b"]));
    let markdown = "## Try it\n\n1. One:\n\n   <!-- try-it server: --rate-limit 5 -->\n   ```sh try-it\n   echo hi\n   ```\n\n   prints\n\n   ```text output\n   hi\n   ```\n\n<!-- not run: needs a browser -->\n```sh\nopen x\n```\n";
    let found = steps("x.md", markdown);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].command, "echo hi\n");
    assert_eq!(found[0].expected, "hi\n");
    assert_eq!(found[0].server_flags, ["--rate-limit", "5"]);
    let unexplained = std::panic::catch_unwind(|| steps("x.md", "## Try it\n```sh\nls\n```\n"));
    assert!(
        unexplained.is_err(),
        "a Try-it block that neither runs nor says why"
    );
}
