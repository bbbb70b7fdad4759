//! `wschat-conformance URL`: RFC 6455 conformance cases against any
//! WebSocket server's echo endpoint (one that sends every text and binary
//! message back), with a verdict per case.
//!
//! ```text
//! cargo run --release --bin wschat-conformance -- ws://127.0.0.1:9001/echo
//! wschat-conformance ws://127.0.0.1:9001/echo --cases utf8 --json report.json
//! ```
//!
//! The cases live in `suite/`; `cargo test --test conformance` runs the
//! same cases against wschat and against the calibration servers. Verdicts
//! and how they relate to Autobahn's: docs/08-testing.md.

// The test front end (tests/conformance) uses parts this binary does not.
#[allow(dead_code)]
mod suite;

use std::time::{Duration, Instant};
use suite::{RunOptions, Target};

const USAGE: &str = "\
usage: wschat-conformance URL [options]

Runs RFC 6455 conformance cases against the echo endpoint at URL
(ws://host:port/path: a server that sends every text and binary message
back). Each case gets a verdict: pass, non-strict (a SHOULD not followed,
or an open choice made the other way), informational (the RFC leaves it
open; the reason says what happened) or fail (a MUST broken).

options:
  --cases PATTERN        only the cases whose name matches: substrings or
                         globs (*), comma-separated (e.g. utf8,close::code_*)
  --list                 print the case names (with --cases: the selected)
  --json PATH            write a JSON report (per case: section, name, rfc,
                         autobahn, verdict, reason, exchange, duration_ms)
  --connections N        connections open at once, 1..=256 [default: 8]
  --wait SECS            how long to wait for each answer, 0.1..=60 [default: 2]
  --case-timeout SECS    hard limit per case, 1..=600 [default: 30]
  --timeout SECS         hard limit for the whole run, 1..=3600 [default: 300]
  --expect PATH          compare the verdicts with an expected-verdict file;
                         the exit status then says whether they agree
  --write-expected PATH  write the verdicts as an expected-verdict file
  --verbose              list every case, passes included
  -h, --help             this text

exit status: 0 when no case failed (with --expect: when the verdicts agree
with the file), 1 otherwise, 2 for a usage error.";

struct Args {
    url: String,
    cases: Option<String>,
    list: bool,
    json: Option<String>,
    connections: usize,
    wait: Duration,
    case_timeout: Duration,
    run_timeout: Duration,
    expect: Option<String>,
    write_expected: Option<String>,
    verbose: bool,
}

fn usage_error(message: &str) -> ! {
    eprintln!("wschat-conformance: {message}\n\n{USAGE}");
    std::process::exit(2);
}

fn seconds(flag: &str, value: Option<String>, min: f64, max: f64) -> Duration {
    let value = value.unwrap_or_else(|| usage_error(&format!("{flag} needs a value")));
    match value.parse::<f64>() {
        Ok(s) if (min..=max).contains(&s) => Duration::from_secs_f64(s),
        _ => usage_error(&format!("{flag} {value:?}: seconds from {min} to {max}")),
    }
}

fn parse_args() -> Args {
    let mut args = Args {
        url: String::new(),
        cases: None,
        list: false,
        json: None,
        connections: suite::DEFAULT_CONNECTIONS,
        wait: suite::DEFAULT_WAIT,
        case_timeout: suite::DEFAULT_CASE_TIMEOUT,
        run_timeout: suite::DEFAULT_RUN_TIMEOUT,
        expect: None,
        write_expected: None,
        verbose: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || inline.clone().or_else(|| it.next());
        match flag.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "--cases" => args.cases = value(),
            "--list" => args.list = true,
            "--json" => args.json = value(),
            "--connections" => {
                let v = value().unwrap_or_default();
                args.connections = match v.parse::<usize>() {
                    Ok(n) if (1..=suite::MAX_CONNECTIONS).contains(&n) => n,
                    _ => usage_error(&format!(
                        "--connections {v:?}: a number from 1 to {}",
                        suite::MAX_CONNECTIONS
                    )),
                };
            }
            "--wait" => args.wait = seconds("--wait", value(), 0.1, 60.0),
            "--case-timeout" => args.case_timeout = seconds("--case-timeout", value(), 1.0, 600.0),
            "--timeout" => args.run_timeout = seconds("--timeout", value(), 1.0, 3600.0),
            "--expect" => args.expect = value(),
            "--write-expected" => args.write_expected = value(),
            "--verbose" => args.verbose = true,
            f if f.starts_with('-') => usage_error(&format!("unknown option {f}")),
            _ if args.url.is_empty() => args.url = arg,
            _ => usage_error(&format!("unexpected argument {arg:?}")),
        }
    }
    if args.url.is_empty() && !args.list {
        usage_error("no URL");
    }
    args
}

fn main() {
    let args = parse_args();
    let mut cases = suite::all_cases();
    if let Some(pattern) = &args.cases {
        cases.retain(|c| suite::matches(pattern, &c.name));
    }
    if args.list {
        for c in &cases {
            let autobahn = c
                .autobahn
                .map(|a| format!("  autobahn {a}"))
                .unwrap_or_default();
            println!("{}  ({}){autobahn}", c.name, c.rfc);
        }
        return;
    }
    if cases.is_empty() {
        usage_error("no case matches --cases");
    }
    let target =
        Target::parse(&args.url, args.connections, args.wait).unwrap_or_else(|e| usage_error(&e));
    // The expected file is read first: a typo fails before a long run.
    let expected = args.expect.as_ref().map(|path| {
        std::fs::read_to_string(path)
            .unwrap_or_else(|e| usage_error(&format!("cannot read {path}: {e}")))
    });
    suite::install_panic_hook();
    let started = Instant::now();
    let options = RunOptions {
        case_timeout: args.case_timeout,
        run_timeout: args.run_timeout,
        parallel: args.connections,
    };
    let outcomes = suite::run(cases, &target, &options);
    print!(
        "{}",
        suite::report::text(&outcomes, args.verbose, started.elapsed())
    );
    if let Some(path) = &args.json
        && let Err(e) = std::fs::write(path, suite::report::json(&args.url, &outcomes))
    {
        eprintln!("wschat-conformance: cannot write {path}: {e}");
        std::process::exit(1);
    }
    if let Some(path) = &args.write_expected
        && let Err(e) = std::fs::write(path, suite::report::expected_file(&outcomes))
    {
        eprintln!("wschat-conformance: cannot write {path}: {e}");
        std::process::exit(1);
    }
    let failed = outcomes
        .iter()
        .any(|o| o.verdict == suite::verdict::Verdict::Fail);
    let code = match &expected {
        Some(text) => {
            let problems = suite::report::compare(text, &outcomes, args.cases.is_some());
            for p in &problems {
                println!("DIFFERS {p}");
            }
            println!(
                "{}",
                if problems.is_empty() {
                    "verdicts agree with the expected file".to_string()
                } else {
                    format!("{} verdicts differ from the expected file", problems.len())
                }
            );
            i32::from(!problems.is_empty())
        }
        None => i32::from(failed),
    };
    // Exit at once: a case abandoned past its limit may still hold a thread.
    std::process::exit(code);
}
