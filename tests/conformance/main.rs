//! The conformance suite, two front ends over one set of cases:
//!
//! - the cases any server must pass live with the conformance tool
//!   (`src/bin/wschat-conformance/suite/`, mounted here with `#[path]`),
//!   and run here against wschat's `/echo` and against a deliberately
//!   broken echo server (`broken_echo.rs`); the verdicts of each must match
//!   the committed files in `expected/` (regenerate them with
//!   `WSCHAT_CONFORMANCE_BLESS=1`, then read the diff);
//! - the cases that need wschat's own settings (origins, paths, the chat,
//!   its limits and timeouts) live here (`handshake.rs`, `limits.rs`) and
//!   must pass.
//!
//! Last, the tool binary itself runs once against each server (exit
//! status, `--json`, `--cases`). tungstenite's calibration needs its own
//! Cargo project built: `tests/conformance/tungstenite.sh`, run by CI.
//!
//! ```text
//! cargo test --test conformance                 # everything
//! cargo test --test conformance -- utf8         # cases whose name contains "utf8"
//! cargo test --test conformance -- --list       # the case names
//! ```
//!
//! A custom harness (`harness = false`): the output is the tool's table
//! for each server, then a line `N passed, N failed`; exit status 1 if any
//! verdict differs from the expected one or a wschat-only case fails.

#[path = "../common/mod.rs"]
mod common;
// The tool uses parts of the suite that this front end does not.
#[allow(dead_code)]
#[path = "../../src/bin/wschat-conformance/suite/mod.rs"]
mod suite;

mod broken_echo;
mod handshake;
mod limits;
mod support;

use std::time::{Duration, Instant};
use suite::verdict::{Finding, Verdict};
use suite::{Outcome as CaseOutcome, RunOptions, Target};

pub use common::Outcome;

/// The sections that need wschat itself.
type OwnSection = fn(&mut Cases);
const WSCHAT_SECTIONS: [(&str, OwnSection); 2] = [
    ("wschat_handshake", handshake::cases),
    ("wschat_limits", limits::cases),
];

/// The sections the broken echo breaks: each must show failures.
const BROKEN_SECTIONS: [&str; 7] = [
    "pingpong",
    "reserved_bits",
    "opcodes",
    "fragmentation",
    "utf8",
    "close",
    "handshake",
];

/// Cases run at once against wschat (its default allows 16 pending
/// handshakes per address) and against the broken echo (no limit; most
/// of its cases wait out the tool's wait, so more at once is faster).
const WSCHAT_PARALLEL: usize = 8;
const BROKEN_PARALLEL: usize = 96;
/// Longer waits than the tool's default: `cargo test` builds without
/// optimisation and shares the machine with other test binaries, so a
/// 16 MiB echo may pause longer than a release build ever does.
const WSCHAT_WAIT: Duration = Duration::from_secs(10);
const BROKEN_WAIT: Duration = Duration::from_secs(5);

/// Collects the wschat-only cases of one section.
pub struct Cases(suite::Cases);

impl Cases {
    pub fn add(&mut self, name: impl AsRef<str>, run: impl FnOnce() -> Outcome + Send + 'static) {
        self.0.add(name, move || run().map_err(Finding::fail));
    }
}

fn wschat_only_cases() -> Vec<suite::Case> {
    let mut all = Vec::new();
    for (section, build) in WSCHAT_SECTIONS {
        let mut cases = Cases(suite::Cases::new(section));
        cases.0.rfc("wschat's own settings");
        build(&mut cases);
        all.extend(cases.0.into_list());
    }
    all
}

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
            "--ignored" => args.ignored_only = true,
            "--skip" => args.skips.extend(it.next()),
            "--test-threads" | "--color" | "--format" | "--logfile" | "-Z" | "--report-time"
            | "--shuffle-seed" => {
                it.next();
            }
            flag if flag.starts_with('-') => {}
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

    fn partial(&self) -> bool {
        !self.filters.is_empty() || !self.skips.is_empty() || self.exact
    }
}

fn expected_path(server: &str) -> String {
    format!(
        "{}/tests/conformance/expected/{server}.txt",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Compares the tool's verdicts on `server` with its committed file (or
/// writes the file when blessing); returns the differences.
fn check_expected(server: &str, outcomes: &[CaseOutcome], partial: bool) -> Vec<String> {
    let path = expected_path(server);
    if std::env::var_os("WSCHAT_CONFORMANCE_BLESS").is_some() && !partial {
        let header = format!(
            "# Expected verdicts of wschat-conformance against {server}.\n\
             # Written by WSCHAT_CONFORMANCE_BLESS=1 cargo test --test conformance;\n\
             # informational cases carry their reason, which is their result.\n"
        );
        std::fs::write(&path, header + &suite::report::expected_file(outcomes))
            .expect("write expected");
        return Vec::new();
    }
    let expected =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    suite::report::compare(&expected, outcomes, partial)
        .into_iter()
        .map(|p| format!("{server}: {p}"))
        .collect()
}

fn options(parallel: usize) -> RunOptions {
    RunOptions {
        case_timeout: suite::DEFAULT_CASE_TIMEOUT,
        run_timeout: suite::DEFAULT_RUN_TIMEOUT,
        parallel,
    }
}

/// The binary, run as a user would: exit status, table, JSON.
fn cli_checks(wschat: &Target, broken: &Target) -> Vec<String> {
    let bin = env!("CARGO_BIN_EXE_wschat-conformance");
    let json = std::env::temp_dir().join(format!("wschat-conformance-{}.json", std::process::id()));
    let mut problems = Vec::new();
    let run = |url: String, cases: &str, extra: &[&str]| {
        std::process::Command::new(bin)
            .arg(url)
            .args(["--cases", cases])
            .args(extra)
            .output()
            .expect("run wschat-conformance")
    };
    let broken_url = format!("ws://{}/echo", broken.addr);
    let out = run(
        broken_url,
        "reserved_bits::rsv_1_on_text,close::code_1000_is_echoed",
        &["--json", json.to_str().unwrap(), "--connections", "2"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = std::fs::read_to_string(&json).unwrap_or_default();
    let _ = std::fs::remove_file(&json);
    if out.status.code() != Some(1) {
        problems.push(format!(
            "cli: a failing case must exit 1, got {:?}",
            out.status.code()
        ));
    }
    if !stdout.contains("1 passed, 1 failed") {
        problems.push(format!("cli: no \"1 passed, 1 failed\" line in {stdout:?}"));
    }
    for needle in [
        "\"name\": \"reserved_bits::rsv_1_on_text_is_1002\"",
        "\"autobahn\": \"3.1\"",
        "\"verdict\": \"fail\"",
        "\"rfc\": \"RFC 6455 §5.2\"",
        "\"duration_ms\": ",
    ] {
        if !report.contains(needle) {
            problems.push(format!("cli: --json report without {needle}"));
        }
    }
    // Every flag's range at its bounds: inside, `--list` runs (exit 0);
    // outside, a usage error (exit 2).
    for (args, code) in [
        (&["--connections", "1"][..], 0),
        (&["--connections", "256"], 0),
        (&["--connections", "0"], 2),
        (&["--connections", "257"], 2),
        (&["--wait", "0.1"], 0),
        (&["--wait", "60"], 0),
        (&["--wait", "0.09"], 2),
        (&["--wait", "61"], 2),
        (&["--case-timeout", "1"], 0),
        (&["--case-timeout", "600"], 0),
        (&["--case-timeout", "0.5"], 2),
        (&["--case-timeout", "601"], 2),
        (&["--timeout", "1"], 0),
        (&["--timeout", "3600"], 0),
        (&["--timeout", "0"], 2),
        (&["--timeout", "3601"], 2),
        (&["--no-such-flag"], 2),
    ] {
        let got = std::process::Command::new(bin)
            .args(["ws://127.0.0.1:1/echo", "--list"])
            .args(args)
            .output()
            .expect("run wschat-conformance")
            .status
            .code();
        if got != Some(code) {
            problems.push(format!("cli: {args:?} must exit {code}, got {got:?}"));
        }
    }
    let unmatched = run(format!("ws://{}/echo", wschat.addr), "no_such_case", &[]);
    if unmatched.status.code() != Some(2) {
        problems.push(format!(
            "cli: --cases matching nothing must exit 2, got {:?}",
            unmatched.status.code()
        ));
    }
    let out = run(
        format!("ws://{}/echo", wschat.addr),
        "close::code_1000_is_echoed",
        &[],
    );
    if out.status.code() != Some(0) {
        problems.push(format!(
            "cli: a passing run must exit 0, got {:?}",
            out.status.code()
        ));
    }
    problems
}

fn main() {
    let args = parse_args();
    let select = |cases: Vec<suite::Case>| -> Vec<suite::Case> {
        cases
            .into_iter()
            .filter(|c| args.selects(&c.name))
            .collect()
    };
    if args.list {
        for case in select(suite::all_cases())
            .iter()
            .chain(select(wschat_only_cases()).iter())
        {
            println!("{}", case.name);
        }
        return;
    }
    suite::install_panic_hook();
    let started = Instant::now();
    let mut problems = Vec::new();
    let (mut passed, mut failed) = (0, 0);

    // wschat: the tool's cases on /echo, and wschat's own.
    let wschat = Target::parse(
        &format!("ws://{}/echo", support::shared_addr()),
        WSCHAT_PARALLEL,
        WSCHAT_WAIT,
    )
    .expect("wschat's URL");
    let mut cases = select(suite::all_cases());
    let tool_count = cases.len();
    cases.extend(select(wschat_only_cases()));
    let outcomes = suite::run(cases, &wschat, &options(WSCHAT_PARALLEL));
    println!("== wschat ({})", wschat.addr);
    print!(
        "{}",
        table_only(&suite::report::text(&outcomes, false, started.elapsed()))
    );
    let (own, tool): (Vec<CaseOutcome>, Vec<CaseOutcome>) = outcomes
        .into_iter()
        .partition(|o| o.section.starts_with("wschat_"));
    problems.extend(check_expected("wschat", &tool, args.partial()));
    for o in &own {
        if o.verdict != Verdict::Pass {
            problems.push(format!("wschat-only case {} failed: {}", o.name, o.reason));
        }
    }

    // The broken echo: the same tool cases, its own expected verdicts.
    let broken_started = Instant::now();
    let broken = Target::parse(
        &format!("ws://{}/echo", broken_echo::start()),
        BROKEN_PARALLEL,
        BROKEN_WAIT,
    )
    .expect("the broken echo's URL");
    let outcomes = suite::run(
        select(suite::all_cases()),
        &broken,
        &options(BROKEN_PARALLEL),
    );
    println!("\n== broken echo ({})", broken.addr);
    print!(
        "{}",
        table_only(&suite::report::text(
            &outcomes,
            false,
            broken_started.elapsed()
        ))
    );
    problems.extend(check_expected("broken-echo", &outcomes, args.partial()));
    if !args.partial() {
        for section in BROKEN_SECTIONS {
            if !outcomes
                .iter()
                .any(|o| o.section == section && o.verdict == Verdict::Fail)
            {
                problems.push(format!(
                    "broken echo: no failure in section {section}, which it breaks"
                ));
            }
        }
    }

    if args.filters.is_empty() || args.selects("cli") {
        problems.extend(cli_checks(&wschat, &broken));
    }

    let total = tool_count + own.len();
    for p in &problems {
        println!("DIFFERS {p}");
    }
    if problems.is_empty() {
        passed += total;
    } else {
        failed += problems.len();
    }
    println!(
        "\nconformance: {tool_count} tool cases (against wschat and the broken echo) and {} wschat-only cases in {:.1}s",
        own.len(),
        started.elapsed().as_secs_f64()
    );
    println!("{passed} passed, {failed} failed");
    std::process::exit(i32::from(failed > 0));
}

/// A report without its closing `N passed, N failed` line: CI reads such
/// lines as this run's verdict, and the broken echo's failures are
/// expected. The run's own summary line comes last.
fn table_only(report: &str) -> String {
    report
        .lines()
        .filter(|line| !(line.ends_with(" failed") && line.contains(" passed, ")))
        .map(|line| format!("{line}\n"))
        .collect()
}
