//! The conformance suite: RFC 6455 case by case, over real sockets, against
//! the real server, in the spirit of the Autobahn testsuite.
//!
//! A custom harness (`harness = false` in Cargo.toml) so that it can print a
//! results table: every case is a named function returning
//! `Result<(), String>`; they run in parallel on a few worker threads
//! against one shared server (cases that need special settings start their
//! own), each under a hard time limit.
//!
//! ```text
//! cargo test --test conformance                 # everything
//! cargo test --test conformance -- utf8         # cases whose name contains "utf8"
//! cargo test --test conformance -- --list       # the case names
//! cargo test --test conformance -- --exact close::code_1000_echoed
//! ```
//!
//! Output: one `FAIL name: reason` line per failing case, a table of
//! `section | cases | passed | failed`, and last a line `N passed, N failed`
//! (which CI reads). The exit status is 1 if any case failed.

#[path = "../common/mod.rs"]
mod common;

mod close;
mod fragmentation;
mod framing;
mod handshake;
mod limits;
mod opcodes;
mod pingpong;
mod reserved_bits;
mod support;
mod utf8;

use std::collections::VecDeque;
use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use common::Outcome;

/// Cases mostly wait on sockets, so more workers than cores pays.
const WORKERS: usize = 8;
/// The hard limit for one case, whatever it waits on (each single wait is
/// bounded by the client's read timeout, 10 s, well below this).
const CASE_LIMIT: Duration = Duration::from_secs(25);

/// Adds a section's cases.
type Section = fn(&mut Cases);

/// The sections, in the order the table lists them.
const SECTIONS: [(&str, Section); 9] = [
    ("framing", framing::cases),
    ("pingpong", pingpong::cases),
    ("reserved_bits", reserved_bits::cases),
    ("opcodes", opcodes::cases),
    ("fragmentation", fragmentation::cases),
    ("utf8", utf8::cases),
    ("limits", limits::cases),
    ("close", close::cases),
    ("handshake", handshake::cases),
];

type CaseFn = Box<dyn FnOnce() -> Outcome + Send + 'static>;

/// One named case.
pub struct Case {
    pub name: String,
    pub section: &'static str,
    run: CaseFn,
}

/// Collects the cases of one section, naming them `section::name`.
pub struct Cases {
    section: &'static str,
    list: Vec<Case>,
}

impl Cases {
    fn new(section: &'static str) -> Self {
        Cases {
            section,
            list: Vec::new(),
        }
    }

    pub fn add(&mut self, name: impl AsRef<str>, run: impl FnOnce() -> Outcome + Send + 'static) {
        self.list.push(Case {
            name: format!("{}::{}", self.section, name.as_ref()),
            section: self.section,
            run: Box::new(run),
        });
    }
}

fn all_cases() -> Vec<Case> {
    let mut all = Vec::new();
    for (section, build) in SECTIONS {
        let mut cases = Cases::new(section);
        build(&mut cases);
        all.extend(cases.list);
    }
    let mut names: Vec<&str> = all.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        panic!("duplicate case name {}", w[0]);
    }
    all
}

/// What the command line asks for. Flags that cargo or libtest users pass
/// (`--nocapture`, `--test-threads N`, `-q`, ...) are accepted and ignored.
#[derive(Default)]
struct Args {
    filters: Vec<String>,
    skips: Vec<String>,
    exact: bool,
    list: bool,
    ignored_only: bool,
}

fn parse_args() -> Args {
    let mut args = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--list" => args.list = true,
            "--exact" => args.exact = true,
            // No case is #[ignore]d: asking for ignored ones selects none.
            "--ignored" => args.ignored_only = true,
            "--skip" => args.skips.extend(it.next()),
            // libtest flags that take a value as the next argument.
            "--test-threads" | "--color" | "--format" | "--logfile" | "-Z" | "--report-time"
            | "--shuffle-seed" => {
                it.next();
            }
            flag if flag.starts_with('-') => {} // --nocapture, -q, --quiet, --test-threads=2, ...
            filter => args.filters.push(filter.to_string()),
        }
    }
    args
}

impl Args {
    fn selects(&self, name: &str) -> bool {
        let hit = |f: &String| {
            if self.exact {
                name == f
            } else {
                name.contains(f.as_str())
            }
        };
        !self.ignored_only
            && (self.filters.is_empty() || self.filters.iter().any(hit))
            && !self.skips.iter().any(hit)
    }
}

thread_local! {
    /// Where the panic hook leaves a case thread's panic message.
    static LAST_PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Panics in case threads (the panicking helpers of tests/common) become
/// failure reasons instead of noise on stderr; other threads (the
/// server's) report as usual.
fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let in_case = std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with("case "));
        if !in_case {
            return default(info);
        }
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("panicked: {message}{at}")));
    }));
}

/// Runs one case on its own thread, so that a case stuck past the limit
/// can be abandoned (and reported) while the others go on.
fn run_case(name: &str, run: CaseFn) -> Outcome {
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name(format!("case {name}"))
        .spawn(move || {
            let result = catch_unwind(AssertUnwindSafe(run)).unwrap_or_else(|_| {
                Err(LAST_PANIC
                    .with(|p| p.borrow_mut().take())
                    .unwrap_or_else(|| "panicked".into()))
            });
            let _ = tx.send(result);
        });
    if let Err(e) = spawned {
        return Err(format!("cannot start the case thread: {e}"));
    }
    match rx.recv_timeout(CASE_LIMIT) {
        Ok(result) => result,
        Err(_) => Err(format!("no result within {CASE_LIMIT:?}")),
    }
}

struct Report {
    name: String,
    section: &'static str,
    result: Outcome,
}

fn main() {
    let args = parse_args();
    let cases = all_cases();
    if args.list {
        for case in cases.iter().filter(|c| args.selects(&c.name)) {
            println!("{}", case.name);
        }
        return;
    }
    install_panic_hook();
    let started = Instant::now();
    let mut selected: Vec<Case> = cases
        .into_iter()
        .filter(|c| args.selects(&c.name))
        .collect();
    // The slowest cases first, so that they overlap with the many quick ones.
    selected.sort_by_key(|c| !c.name.contains("mib"));
    let total = selected.len();
    let queue = Arc::new(Mutex::new(VecDeque::from(selected)));
    let (tx, rx) = mpsc::channel::<Report>();
    let mut workers = Vec::new();
    for _ in 0..WORKERS.min(total.max(1)) {
        let queue = queue.clone();
        let tx = tx.clone();
        workers.push(std::thread::spawn(move || {
            loop {
                let next = queue.lock().expect("queue").pop_front();
                let Some(case) = next else { break };
                let result = run_case(&case.name, case.run);
                let _ = tx.send(Report {
                    name: case.name,
                    section: case.section,
                    result,
                });
            }
        }));
    }
    drop(tx);
    let mut outcomes: Vec<Report> = rx.iter().collect();
    for worker in workers {
        let _ = worker.join();
    }
    assert_eq!(outcomes.len(), total, "every case reports");
    outcomes.sort_by(|a, b| a.name.cmp(&b.name));

    let mut out = String::new();
    for o in &outcomes {
        if let Err(reason) = &o.result {
            let reason = reason.replace('\n', " | ");
            out.push_str(&format!("FAIL {}: {reason}\n", o.name));
        }
    }
    if outcomes.iter().any(|o| o.result.is_err()) {
        out.push('\n');
    }
    out.push_str(&format!(
        "{:<14} | {:>5} | {:>6} | {:>6}\n",
        "section", "cases", "passed", "failed"
    ));
    out.push_str(&format!(
        "{:-<14}-+-{:->5}-+-{:->6}-+-{:->6}\n",
        "", "", "", ""
    ));
    let (mut all_passed, mut all_failed) = (0, 0);
    for (section, _) in SECTIONS {
        let of_section: Vec<&Report> = outcomes.iter().filter(|o| o.section == section).collect();
        if of_section.is_empty() {
            continue;
        }
        let passed = of_section.iter().filter(|o| o.result.is_ok()).count();
        let failed = of_section.len() - passed;
        all_passed += passed;
        all_failed += failed;
        out.push_str(&format!(
            "{section:<14} | {:>5} | {passed:>6} | {failed:>6}\n",
            of_section.len()
        ));
    }
    out.push_str(&format!(
        "{:-<14}-+-{:->5}-+-{:->6}-+-{:->6}\n",
        "", "", "", ""
    ));
    out.push_str(&format!(
        "{:<14} | {:>5} | {all_passed:>6} | {all_failed:>6}\n",
        "total", total
    ));
    out.push_str(&format!(
        "\nconformance: {total} cases in {:.1}s\n",
        started.elapsed().as_secs_f64()
    ));
    out.push_str(&format!("{all_passed} passed, {all_failed} failed\n"));
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
    // Exit at once: a case abandoned past its limit may still hold a thread.
    std::process::exit(if all_failed > 0 { 1 } else { 0 });
}
