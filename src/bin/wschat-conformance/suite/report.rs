//! What a run prints and writes: the cases that did not pass, a table by
//! section, the `N passed, N failed` line; a JSON report; and the
//! expected-verdict files that calibration runs are compared with.

use super::verdict::Verdict;
use super::{Outcome, SECTIONS};
use std::fmt::Write;

const VERDICTS: [Verdict; 4] = [
    Verdict::Pass,
    Verdict::NonStrict,
    Verdict::Informational,
    Verdict::Fail,
];

fn count(outcomes: &[&Outcome], v: Verdict) -> usize {
    outcomes.iter().filter(|o| o.verdict == v).count()
}

/// The line for one case: verdict, name, RFC section, Autobahn case,
/// reason.
pub fn case_line(o: &Outcome) -> String {
    let autobahn = o
        .autobahn
        .map(|a| format!(", autobahn {a}"))
        .unwrap_or_default();
    format!(
        "{:<13} {} ({}{autobahn}): {}",
        o.verdict.as_str().to_uppercase(),
        o.name,
        o.rfc,
        o.reason
    )
}

/// The text report: every case that did not pass (all of them when
/// `verbose`), the table by section, and the totals.
pub fn text(outcomes: &[Outcome], verbose: bool, elapsed: std::time::Duration) -> String {
    let mut out = String::new();
    for v in [
        Verdict::Fail,
        Verdict::NonStrict,
        Verdict::Informational,
        Verdict::Pass,
    ] {
        if v == Verdict::Pass && !verbose {
            continue;
        }
        for o in outcomes.iter().filter(|o| o.verdict == v) {
            let _ = writeln!(out, "{}", case_line(o));
            // The exchange is the reason of a pass; for the others, on ask.
            if verbose && v != Verdict::Pass && !o.exchange.is_empty() {
                let _ = writeln!(out, "{:<13}   {}", "", o.exchange);
            }
        }
    }
    if !out.is_empty() {
        out.push('\n');
    }
    let rule = format!(
        "{:-<14}-+-{:->5}-+-{:->6}-+-{:->10}-+-{:->13}-+-{:->6}\n",
        "", "", "", "", "", ""
    );
    let _ = writeln!(
        out,
        "{:<14} | {:>5} | {:>6} | {:>10} | {:>13} | {:>6}",
        "section", "cases", "passed", "non-strict", "informational", "failed"
    );
    out.push_str(&rule);
    let mut sections: Vec<&str> = SECTIONS.iter().map(|(s, _, _)| *s).collect();
    for o in outcomes {
        if !sections.contains(&o.section) {
            sections.push(o.section);
        }
    }
    for section in sections {
        let of: Vec<&Outcome> = outcomes.iter().filter(|o| o.section == section).collect();
        if of.is_empty() {
            continue;
        }
        let [p, n, i, f] = VERDICTS.map(|v| count(&of, v));
        let _ = writeln!(
            out,
            "{section:<14} | {:>5} | {p:>6} | {n:>10} | {i:>13} | {f:>6}",
            of.len()
        );
    }
    out.push_str(&rule);
    let all: Vec<&Outcome> = outcomes.iter().collect();
    let [p, n, i, f] = VERDICTS.map(|v| count(&all, v));
    let _ = writeln!(
        out,
        "{:<14} | {:>5} | {p:>6} | {n:>10} | {i:>13} | {f:>6}",
        "total",
        all.len()
    );
    let _ = writeln!(
        out,
        "\n{} cases in {:.1}s ({n} non-strict, {i} informational)",
        all.len(),
        elapsed.as_secs_f64()
    );
    let _ = writeln!(out, "{p} passed, {f} failed");
    out
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The machine-readable report: the target, totals, and one object per
/// case (section, name, rfc, autobahn, verdict, reason, exchange,
/// duration in milliseconds).
pub fn json(url: &str, outcomes: &[Outcome]) -> String {
    let all: Vec<&Outcome> = outcomes.iter().collect();
    let [p, n, i, f] = VERDICTS.map(|v| count(&all, v));
    let mut out = String::new();
    let _ = write!(
        out,
        "{{\n  \"target\": {},\n  \"totals\": {{\"cases\": {}, \"pass\": {p}, \"non-strict\": {n}, \"informational\": {i}, \"fail\": {f}}},\n  \"cases\": [",
        json_string(url),
        outcomes.len()
    );
    for (k, o) in outcomes.iter().enumerate() {
        let autobahn = o.autobahn.map(json_string).unwrap_or_else(|| "null".into());
        let _ = write!(
            out,
            "{}\n    {{\"section\": {}, \"name\": {}, \"rfc\": {}, \"autobahn\": {autobahn}, \"verdict\": {}, \"reason\": {}, \"exchange\": {}, \"duration_ms\": {}}}",
            if k == 0 { "" } else { "," },
            json_string(o.section),
            json_string(&o.name),
            json_string(o.rfc),
            json_string(o.verdict.as_str()),
            json_string(&o.reason),
            json_string(&o.exchange),
            o.duration.as_millis()
        );
    }
    out.push_str("\n  ]\n}\n");
    out
}

/// An expected-verdict file: one line per case, `verdict name`, and for
/// informational cases `informational name | reason` (their reason is the
/// result). `#` starts a comment.
pub fn expected_file(outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    for o in outcomes {
        if o.verdict == Verdict::Informational {
            let _ = writeln!(out, "{} {} | {}", o.verdict, o.name, o.reason);
        } else {
            let _ = writeln!(out, "{} {}", o.verdict, o.name);
        }
    }
    out
}

/// The differences between `outcomes` and an expected-verdict file, one
/// line each; empty when they agree.
/// With `partial` (a run of selected cases), cases of the file that did
/// not run are not reported.
pub fn compare(expected: &str, outcomes: &[Outcome], partial: bool) -> Vec<String> {
    let mut want = std::collections::BTreeMap::new();
    let mut problems = Vec::new();
    for (n, line) in expected.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (head, reason) = match line.split_once(" | ") {
            Some((h, r)) => (h, Some(r.to_string())),
            None => (line, None),
        };
        let mut words = head.split_whitespace();
        match (words.next().and_then(Verdict::parse), words.next()) {
            (Some(v), Some(name)) => {
                want.insert(name.to_string(), (v, reason));
            }
            _ => problems.push(format!(
                "expected file line {}: cannot read {line:?}",
                n + 1
            )),
        }
    }
    for o in outcomes {
        match want.remove(&o.name) {
            None => problems.push(format!(
                "{}: {} but not in the expected file",
                o.name, o.verdict
            )),
            Some((v, _)) if v != o.verdict => problems.push(format!(
                "{}: expected {v}, got {} ({})",
                o.name, o.verdict, o.reason
            )),
            Some((_, Some(reason))) if reason != o.reason => problems.push(format!(
                "{}: expected reason {reason:?}, got {:?}",
                o.name, o.reason
            )),
            Some(_) => {}
        }
    }
    for name in want.keys().filter(|_| !partial) {
        problems.push(format!("{name}: in the expected file but not run"));
    }
    problems
}
