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
  --verbose              list every case, passes included, and what was sent
                         and received in the cases that did not pass
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

#[cfg(test)]
mod tests {
    use super::suite::verdict::Verdict;
    use super::suite::*;
    use std::time::Duration;

    #[test]
    fn patterns_are_substrings_or_globs_separated_by_commas() {
        assert!(matches("utf8", "utf8::valid_ascii_one_frame"));
        assert!(matches("close::code_*_is_1002", "close::code_1005_is_1002"));
        assert!(!matches(
            "close::code_*_is_1002",
            "close::code_1000_is_echoed"
        ));
        assert!(matches(
            "nothing,close::code_1000*",
            "close::code_1000_is_echoed"
        ));
        assert!(matches("*echoed", "close::code_1000_is_echoed"));
        assert!(!matches("", "anything"));
    }

    #[test]
    fn urls_give_address_host_and_path() {
        let t = Target::parse("ws://127.0.0.1:9001/echo?x=1", 4, DEFAULT_WAIT).unwrap();
        assert_eq!(t.addr, "127.0.0.1:9001".parse().unwrap());
        assert_eq!(
            (t.host.as_str(), t.path.as_str()),
            ("127.0.0.1:9001", "/echo?x=1")
        );
        let t = Target::parse("ws://127.0.0.1", 4, DEFAULT_WAIT).unwrap();
        assert_eq!((t.addr.port(), t.path.as_str()), (80, "/"));
        assert!(Target::parse("wss://127.0.0.1/", 4, DEFAULT_WAIT).is_err());
        assert!(Target::parse("http://127.0.0.1/", 4, DEFAULT_WAIT).is_err());
        assert!(Target::parse("ws:///echo", 4, DEFAULT_WAIT).is_err());
    }

    #[test]
    fn the_connection_limit_holds() {
        let t = Target::parse("ws://127.0.0.1:1/", 2, DEFAULT_WAIT).unwrap();
        let (a, b) = (t.permit(), t.permit());
        let t2 = t.clone();
        let third = std::thread::spawn(move || {
            let _p = t2.permit();
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !third.is_finished(),
            "a third connection opened over a limit of 2"
        );
        drop(a);
        third.join().unwrap();
        drop(b);
    }

    #[test]
    fn every_autobahn_mapping_names_a_case_and_case_names_are_unique() {
        let names: Vec<String> = all_cases().into_iter().map(|c| c.name).collect();
        for (name, autobahn) in AUTOBAHN {
            assert!(
                names.iter().any(|n| n == name),
                "autobahn {autobahn}: no case {name}"
            );
        }
    }

    #[test]
    fn forbidden_close_codes_are_those_of_7_4() {
        for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999] {
            assert!(steps::forbidden_code(code), "{code}");
        }
        for code in [1000, 1003, 1007, 1014, 3000, 4999, 5000] {
            assert!(!steps::forbidden_code(code), "{code}");
        }
    }

    #[test]
    fn stored_blocks_inflate_to_the_payload() {
        for len in [0, 1, 5, 65535, 65536, 200_000] {
            let payload = steps::pattern_bytes(len);
            assert_eq!(
                deflate::inflate(&deflate::stored_blocks(&payload)).unwrap(),
                payload,
                "{len}"
            );
        }
    }

    #[test]
    fn expected_files_compare_verdicts_and_informational_reasons() {
        let outcome = |name: &str, verdict, reason: &str| Outcome {
            section: "s",
            name: name.into(),
            rfc: "",
            autobahn: None,
            verdict,
            reason: reason.into(),
            exchange: String::new(),
            duration: Duration::ZERO,
        };
        let run = [
            outcome("s::a", Verdict::Pass, "sent x; got x"),
            outcome("s::b", Verdict::Informational, "Close 1009"),
        ];
        let file = report::expected_file(&run);
        assert_eq!(file, "pass s::a\ninformational s::b | Close 1009\n");
        assert!(report::compare(&file, &run, false).is_empty());
        let changed = [
            outcome("s::a", Verdict::Fail, "no"),
            outcome("s::b", Verdict::Informational, "echoed"),
        ];
        assert_eq!(report::compare(&file, &changed, false).len(), 2);
        assert_eq!(
            report::compare(&file, &run[..1], false).len(),
            1,
            "a case not run"
        );
        assert!(report::compare(&file, &run[..1], true).is_empty());
    }
}
