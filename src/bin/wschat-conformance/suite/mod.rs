//! The conformance cases that need nothing but an echo endpoint, and the
//! runner that aims them at a server: RFC 6455 (and RFC 7692 when the
//! server offers it) case by case, each with a verdict and a one-line
//! reason. Two front ends use it: the `wschat-conformance` binary (any
//! URL) and `cargo test --test conformance` (wschat itself, plus the
//! calibration servers), which mounts this module with `#[path]`.

pub mod client;
pub mod close;
pub mod deflate;
pub mod fragmentation;
pub mod framing;
pub mod handshake;
pub mod limits;
pub mod opcodes;
pub mod pingpong;
pub mod report;
pub mod reserved_bits;
pub mod rng;
pub mod steps;
pub mod transcript;
pub mod utf8;
pub mod verdict;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::{SocketAddr, ToSocketAddrs};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::{Duration, Instant};
use verdict::{Check, Finding, Verdict};

/// Connections open at once unless `--connections` says otherwise: below
/// wschat's default of 16 handshakes pending per address, and few enough
/// for a server that limits them.
pub const DEFAULT_CONNECTIONS: usize = 8;
/// The most `--connections` accepts.
pub const MAX_CONNECTIONS: usize = 256;
/// How long one wait for the server may take (a reply, a Close, TCP
/// closing) before the case concludes the server is not going to answer.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(2);
/// The hard limit for one case, whatever it waits on.
pub const DEFAULT_CASE_TIMEOUT: Duration = Duration::from_secs(30);
/// The hard limit for the whole run.
pub const DEFAULT_RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// Adds a section's cases.
type Section = fn(&mut Cases);

/// The sections, in the order the table lists them.
/// The sections, in the order the table lists them, with the RFC section
/// their cases check unless a case names another.
pub const SECTIONS: [(&str, &str, Section); 10] = [
    ("framing", "RFC 6455 §5.2", framing::cases),
    ("pingpong", "RFC 6455 §5.5.2, §5.5.3", pingpong::cases),
    ("reserved_bits", "RFC 6455 §5.2", reserved_bits::cases),
    ("opcodes", "RFC 6455 §5.2", opcodes::cases),
    ("fragmentation", "RFC 6455 §5.4", fragmentation::cases),
    ("utf8", "RFC 6455 §5.6, §8.1", utf8::cases),
    ("limits", "RFC 6455 §5.2, §10.4", limits::cases),
    ("close", "RFC 6455 §5.5.1, §7.4", close::cases),
    ("handshake", "RFC 6455 §4.2", handshake::cases),
    ("deflate", "RFC 7692", deflate::cases),
];

/// The Autobahn|Testsuite cases (sections 1 to 9) that ask the same
/// question as a case here, by case name.
pub const AUTOBAHN: &[(&str, &str)] = &[
    ("framing::text_len_0_whole", "1.1.1"),
    ("framing::text_len_125_whole", "1.1.2"),
    ("framing::text_len_126_whole", "1.1.3"),
    ("framing::text_len_127_whole", "1.1.4"),
    ("framing::text_len_128_whole", "1.1.5"),
    ("framing::text_len_65535_whole", "1.1.6"),
    ("framing::text_len_65536_whole", "1.1.7"),
    ("framing::text_len_65536_in_1000_byte_writes", "1.1.8"),
    ("framing::binary_len_0_whole", "1.2.1"),
    ("framing::binary_len_125_whole", "1.2.2"),
    ("framing::binary_len_126_whole", "1.2.3"),
    ("framing::binary_len_127_whole", "1.2.4"),
    ("framing::binary_len_128_whole", "1.2.5"),
    ("framing::binary_len_65535_whole", "1.2.6"),
    ("framing::binary_len_65536_whole", "1.2.7"),
    ("framing::binary_len_65536_in_1000_byte_writes", "1.2.8"),
    ("framing::text_1mib_whole", "9.1.3"),
    ("framing::text_4mib_whole", "9.1.4"),
    ("framing::text_8mib_whole", "9.1.5"),
    ("framing::text_16mib_whole", "9.1.6"),
    ("framing::binary_1mib_whole", "9.2.3"),
    ("framing::binary_4mib_whole", "9.2.4"),
    ("framing::binary_8mib_whole", "9.2.5"),
    ("framing::binary_16mib_whole", "9.2.6"),
    ("pingpong::ping_empty_gets_pong", "2.1"),
    ("pingpong::ping_text_hello_gets_pong", "2.2"),
    ("pingpong::ping_binary_invalid_utf8_gets_pong", "2.3"),
    ("pingpong::ping_len_125_gets_pong", "2.4"),
    ("pingpong::ping_len_126_is_1002", "2.5"),
    ("pingpong::ping_len_125_byte_by_byte_gets_pong", "2.6"),
    ("pingpong::unsolicited_pong_empty_ignored", "2.7"),
    ("pingpong::unsolicited_pong_text_ignored", "2.8"),
    (
        "pingpong::unsolicited_pong_then_ping_gets_only_the_pong",
        "2.9",
    ),
    ("pingpong::ten_pings_in_a_row_answered_in_order", "2.10"),
    (
        "pingpong::ten_pings_in_separate_writes_answered_in_order",
        "2.11",
    ),
    ("pingpong::ping_fragmented_is_1002", "5.1"),
    ("pingpong::pong_fragmented_is_1002", "5.2"),
    ("pingpong::ping_between_fragments_answered_first", "5.6"),
    ("pingpong::ping_after_close_is_not_answered", "7.1.3"),
    ("reserved_bits::rsv_1_on_text_is_1002", "3.1"),
    ("reserved_bits::rsv_2_on_text_is_1002", "3.2"),
    ("reserved_bits::rsv_3_on_text_is_1002", "3.3"),
    (
        "reserved_bits::rsv_on_text_sent_byte_by_byte_is_1002",
        "3.4",
    ),
    ("reserved_bits::rsv_5_on_binary_is_1002", "3.5"),
    ("reserved_bits::rsv_6_on_ping_is_1002", "3.6"),
    ("reserved_bits::rsv_7_on_close_is_1002", "3.7"),
    ("opcodes::opcode_3_alone_is_1002", "4.1.1"),
    ("opcodes::opcode_4_alone_is_1002", "4.1.2"),
    (
        "opcodes::opcode_5_with_payload_after_a_message_is_1002",
        "4.1.3",
    ),
    (
        "opcodes::opcode_6_with_payload_after_a_message_is_1002",
        "4.1.4",
    ),
    (
        "opcodes::opcode_7_with_payload_after_a_message_is_1002",
        "4.1.5",
    ),
    ("opcodes::opcode_b_alone_is_1002", "4.2.1"),
    ("opcodes::opcode_c_alone_is_1002", "4.2.2"),
    (
        "opcodes::opcode_d_with_payload_after_a_message_is_1002",
        "4.2.3",
    ),
    (
        "opcodes::opcode_e_with_payload_after_a_message_is_1002",
        "4.2.4",
    ),
    (
        "opcodes::opcode_f_with_payload_after_a_message_is_1002",
        "4.2.5",
    ),
    ("fragmentation::text_in_2_fragments", "5.3"),
    ("fragmentation::text_in_3_fragments_separate_writes", "5.4"),
    (
        "fragmentation::continuation_without_start_fin_is_1002",
        "5.9",
    ),
    (
        "fragmentation::continuation_then_text_sent_byte_by_byte_is_1002",
        "5.11",
    ),
    (
        "fragmentation::continuation_without_start_no_fin_is_1002",
        "5.12",
    ),
    (
        "fragmentation::continuation_after_a_complete_fragmented_message_is_1002",
        "5.15",
    ),
    ("fragmentation::text_inside_open_text_is_1002", "5.18"),
    ("fragmentation::fragments_and_pings_with_pauses", "5.19"),
    ("fragmentation::all_fragments_empty_text", "6.1.2"),
    ("utf8::valid_ascii_one_frame", "6.2.1"),
    ("utf8::valid_ascii_one_byte_per_fragment", "6.2.3"),
    (
        "utf8::invalid_kosme_then_surrogate_one_frame_is_1007",
        "6.3.1",
    ),
    (
        "utf8::invalid_kosme_then_surrogate_one_byte_per_fragment_is_1007",
        "6.3.2",
    ),
    (
        "utf8::invalid_above_max_110000_fails_before_the_final_fragment",
        "6.4.1",
    ),
    ("utf8::fail_fast_sequence_split_across_fragments", "6.4.2"),
    (
        "utf8::invalid_above_max_110000_fails_before_the_frame_ends",
        "6.4.3",
    ),
    ("utf8::valid_kosme_one_frame", "6.5.1"),
    ("utf8::valid_u0000_one_frame", "6.7.1"),
    ("utf8::valid_u0080_one_frame", "6.7.2"),
    ("utf8::valid_u0800_one_frame", "6.7.3"),
    ("utf8::valid_u10000_one_frame", "6.7.4"),
    ("utf8::invalid_five_byte_f8_one_frame_is_1007", "6.8.1"),
    ("utf8::invalid_six_byte_fc_one_frame_is_1007", "6.8.2"),
    ("utf8::valid_u007f_one_frame", "6.9.1"),
    ("utf8::valid_u07ff_one_frame", "6.9.2"),
    ("utf8::valid_uffff_one_frame", "6.9.3"),
    ("utf8::valid_u10ffff_one_frame", "6.9.4"),
    ("utf8::invalid_above_max_1fffff_one_frame_is_1007", "6.10.1"),
    ("utf8::valid_ud7ff_one_frame", "6.11.1"),
    ("utf8::valid_ue000_one_frame", "6.11.2"),
    ("utf8::valid_ufffd_one_frame", "6.11.3"),
    ("utf8::invalid_above_max_110000_one_frame_is_1007", "6.11.5"),
    (
        "utf8::invalid_lone_continuation_80_one_frame_is_1007",
        "6.12.1",
    ),
    (
        "utf8::invalid_lone_continuation_bf_one_frame_is_1007",
        "6.12.2",
    ),
    (
        "utf8::invalid_continuations_80_bf_80_bf_one_frame_is_1007",
        "6.12.5",
    ),
    ("utf8::invalid_byte_fe_one_frame_is_1007", "6.16.1"),
    ("utf8::invalid_byte_ff_one_frame_is_1007", "6.16.2"),
    (
        "utf8::invalid_bytes_fe_fe_ff_ff_one_frame_is_1007",
        "6.16.3",
    ),
    (
        "utf8::invalid_overlong_slash_c0_af_one_frame_is_1007",
        "6.17.1",
    ),
    (
        "utf8::invalid_overlong_slash_e0_80_af_one_frame_is_1007",
        "6.17.2",
    ),
    (
        "utf8::invalid_overlong_slash_f0_80_80_af_one_frame_is_1007",
        "6.17.3",
    ),
    (
        "utf8::invalid_overlong_slash_f8_80_80_80_af_one_frame_is_1007",
        "6.17.4",
    ),
    (
        "utf8::invalid_overlong_slash_fc_80_80_80_80_af_one_frame_is_1007",
        "6.17.5",
    ),
    ("utf8::invalid_overlong_c1_bf_one_frame_is_1007", "6.18.1"),
    (
        "utf8::invalid_overlong_max_e0_9f_bf_one_frame_is_1007",
        "6.18.2",
    ),
    (
        "utf8::invalid_overlong_max_f0_8f_bf_bf_one_frame_is_1007",
        "6.18.3",
    ),
    (
        "utf8::invalid_overlong_nul_c0_80_one_frame_is_1007",
        "6.19.1",
    ),
    (
        "utf8::invalid_overlong_nul_e0_80_80_one_frame_is_1007",
        "6.19.2",
    ),
    (
        "utf8::invalid_overlong_nul_f0_80_80_80_one_frame_is_1007",
        "6.19.3",
    ),
    ("utf8::invalid_surrogate_d800_one_frame_is_1007", "6.20.1"),
    ("utf8::invalid_surrogate_db7f_one_frame_is_1007", "6.20.2"),
    ("utf8::invalid_surrogate_db80_one_frame_is_1007", "6.20.3"),
    ("utf8::invalid_surrogate_dbff_one_frame_is_1007", "6.20.4"),
    ("utf8::invalid_surrogate_dc00_one_frame_is_1007", "6.20.5"),
    ("utf8::invalid_surrogate_df80_one_frame_is_1007", "6.20.6"),
    ("utf8::invalid_surrogate_dfff_one_frame_is_1007", "6.20.7"),
    (
        "utf8::invalid_surrogate_pair_d800_dc00_one_frame_is_1007",
        "6.21.1",
    ),
    (
        "utf8::invalid_surrogate_pair_dbff_dfff_one_frame_is_1007",
        "6.21.8",
    ),
    ("utf8::valid_ufffe_noncharacter_one_frame", "6.22.1"),
    ("utf8::valid_u1fffe_one_frame", "6.22.3"),
    ("close::message_then_close", "7.1.1"),
    ("close::data_after_close_is_ignored", "7.1.4"),
    ("close::close_mid_fragmented_message", "7.1.5"),
    ("close::empty_payload_is_answered_with_1000", "7.3.1"),
    ("close::one_byte_payload_03_is_1002", "7.3.2"),
    ("close::code_1000_is_echoed", "7.3.3"),
    ("close::code_1000_with_reason_is_echoed", "7.3.4"),
    ("close::reason_of_123_bytes_is_accepted", "7.3.5"),
    ("close::reason_of_124_bytes_is_1002", "7.3.6"),
    (
        "close::reason_invalid_utf8_surrogate_ed_a0_80_is_1002",
        "7.5.1",
    ),
    ("close::code_1001_is_echoed", "7.7.2"),
    ("close::code_1002_is_echoed", "7.7.3"),
    ("close::code_1003_is_echoed", "7.7.4"),
    ("close::code_1007_is_echoed", "7.7.5"),
    ("close::code_1008_is_echoed", "7.7.6"),
    ("close::code_1009_is_echoed", "7.7.7"),
    ("close::code_1010_is_echoed", "7.7.8"),
    ("close::code_1011_is_echoed", "7.7.9"),
    ("close::code_3000_is_echoed", "7.7.10"),
    ("close::code_3999_is_echoed", "7.7.11"),
    ("close::code_4000_is_echoed", "7.7.12"),
    ("close::code_4999_is_echoed", "7.7.13"),
    ("close::code_0_is_1002", "7.9.1"),
    ("close::code_999_is_1002", "7.9.2"),
    ("close::code_1004_is_1002", "7.9.3"),
    ("close::code_1005_is_1002", "7.9.4"),
    ("close::code_1006_is_1002", "7.9.5"),
    ("close::code_1016_is_1002", "7.9.6"),
    ("close::code_1100_is_1002", "7.9.7"),
    ("close::code_2000_is_1002", "7.9.8"),
    ("close::code_2999_is_1002", "7.9.9"),
    ("close::code_5000", "7.13.1"),
    ("close::code_65535", "7.13.2"),
];

/// A server to test: where to connect, and what to ask for.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// The Host header value.
    pub host: String,
    /// The request target (path and query).
    pub path: String,
    pub wait: Duration,
    limiter: Arc<Limiter>,
}

impl Target {
    /// `ws://host[:port][/path]`. (`wss://` needs TLS, which this tool
    /// does not speak: put it behind a plain port or test the backend.)
    pub fn parse(url: &str, connections: usize, wait: Duration) -> Result<Target, String> {
        let rest = url.strip_prefix("ws://").ok_or_else(|| {
            format!("{url:?}: the URL must start with ws:// (wss:// is not supported)")
        })?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(format!("{url:?}: no host"));
        }
        let with_port = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            && !authority.ends_with(']')
        {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|e| format!("{url:?}: cannot resolve {with_port}: {e}"))?
            .next()
            .ok_or_else(|| format!("{url:?}: {with_port} has no address"))?;
        Ok(Target {
            addr,
            host: authority.to_string(),
            path: path.to_string(),
            wait,
            limiter: Arc::new(Limiter::new(connections)),
        })
    }

    /// Waits for a free connection slot; the slot is given back when the
    /// permit is dropped.
    pub fn permit(&self) -> Permit {
        self.limiter.acquire();
        Permit(self.limiter.clone())
    }
}

/// Counts open connections against the limit.
struct Limiter {
    open: Mutex<usize>,
    freed: Condvar,
    max: usize,
}

impl Limiter {
    fn new(max: usize) -> Limiter {
        Limiter {
            open: Mutex::new(0),
            freed: Condvar::new(),
            max: max.max(1),
        }
    }

    fn acquire(&self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        while *open >= self.max {
            open = self.freed.wait(open).unwrap_or_else(|e| e.into_inner());
        }
        *open += 1;
    }
}

/// One open connection's slot.
pub struct Permit(Arc<Limiter>);

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self.0.open.lock().unwrap_or_else(|e| e.into_inner());
        *open -= 1;
        self.0.freed.notify_one();
    }
}

thread_local! {
    static TARGET: RefCell<Option<Target>> = const { RefCell::new(None) };
}

/// The target of the case running on this thread.
pub fn current_target() -> Target {
    TARGET.with(|t| t.borrow().clone().expect("a case runs with a target"))
}

type CaseFn = Box<dyn FnOnce() -> Check + Send + 'static>;

/// One named case.
pub struct Case {
    pub section: &'static str,
    /// `section::name`.
    pub name: String,
    /// The RFC section(s) it checks.
    pub rfc: &'static str,
    /// The Autobahn|Testsuite case it corresponds to, if any.
    pub autobahn: Option<&'static str>,
    run: CaseFn,
}

/// Collects the cases of one section.
pub struct Cases {
    section: &'static str,
    rfc: &'static str,
    list: Vec<Case>,
}

impl Cases {
    pub fn new(section: &'static str) -> Self {
        Cases {
            section,
            rfc: "RFC 6455",
            list: Vec::new(),
        }
    }

    /// The RFC section of the cases added from now on.
    pub fn rfc(&mut self, rfc: &'static str) {
        self.rfc = rfc;
    }

    pub fn add(&mut self, name: impl AsRef<str>, run: impl FnOnce() -> Check + Send + 'static) {
        self.list.push(Case {
            section: self.section,
            name: format!("{}::{}", self.section, name.as_ref()),
            rfc: self.rfc,
            autobahn: None,
            run: Box::new(run),
        });
    }

    /// The last case added corresponds to this Autobahn case.
    pub fn autobahn(&mut self, case: &'static str) {
        if let Some(last) = self.list.last_mut() {
            last.autobahn = Some(case);
        }
    }

    pub fn into_list(self) -> Vec<Case> {
        self.list
    }
}

/// Every case of the tool, in section order; names are unique.
pub fn all_cases() -> Vec<Case> {
    let mut all = Vec::new();
    for (section, rfc, build) in SECTIONS {
        let mut cases = Cases::new(section);
        cases.rfc(rfc);
        build(&mut cases);
        all.extend(cases.list);
    }
    for case in &mut all {
        if case.autobahn.is_none() {
            case.autobahn = AUTOBAHN
                .iter()
                .find(|(n, _)| *n == case.name)
                .map(|(_, a)| *a);
        }
    }
    let mut names: Vec<&str> = all.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        panic!("duplicate case name {}", w[0]);
    }
    all
}

/// Whether `name` matches `pattern`: comma-separated alternatives, each a
/// substring, or a glob when it contains `*`.
pub fn matches(pattern: &str, name: &str) -> bool {
    pattern
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .any(|p| {
            if !p.contains('*') {
                return name.contains(p);
            }
            let parts: Vec<&str> = p.split('*').collect();
            let mut rest = name;
            for (i, part) in parts.iter().enumerate() {
                if i == 0 {
                    match rest.strip_prefix(part) {
                        Some(r) => rest = r,
                        None => return false,
                    }
                } else if i + 1 == parts.len() {
                    return rest.ends_with(part);
                } else {
                    match rest.find(part) {
                        Some(at) => rest = &rest[at + part.len()..],
                        None => return false,
                    }
                }
            }
            rest.is_empty() || p.ends_with('*')
        })
}

/// What one case concluded.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub section: &'static str,
    pub name: String,
    pub rfc: &'static str,
    pub autobahn: Option<&'static str>,
    pub verdict: Verdict,
    /// Why: for a pass, what was sent and what came back; otherwise the
    /// finding (compared by the expected-verdict files for informational
    /// cases, so it never holds a timing).
    pub reason: String,
    /// What was sent and what came back.
    pub exchange: String,
    pub duration: Duration,
}

/// How a run goes.
#[derive(Clone)]
pub struct RunOptions {
    pub case_timeout: Duration,
    pub run_timeout: Duration,
    /// Cases run at once (each opens one connection at a time).
    pub parallel: usize,
}

thread_local! {
    /// Where the panic hook leaves a case thread's panic message.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Panics in case threads become failure reasons instead of noise on
/// stderr; other threads report as usual.
pub fn install_panic_hook() {
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

/// Runs one case on a thread of its own, so that a case stuck past the
/// limit can be abandoned (and reported) while the others go on.
fn run_case(case: Case, target: &Target, limit: Duration) -> Outcome {
    let started = Instant::now();
    let (tx, rx) = mpsc::channel();
    let target = target.clone();
    let run = case.run;
    let spawned = std::thread::Builder::new()
        .name(format!("case {}", case.name))
        .spawn(move || {
            TARGET.with(|t| *t.borrow_mut() = Some(target));
            transcript::reset();
            let result = catch_unwind(AssertUnwindSafe(run)).unwrap_or_else(|_| {
                Err(Finding::fail(
                    LAST_PANIC
                        .with(|p| p.borrow_mut().take())
                        .unwrap_or_else(|| "panicked".into()),
                ))
            });
            let _ = tx.send((result, transcript::summary()));
        });
    let (result, exchange) = match spawned {
        Err(e) => (
            Err(Finding::fail(format!("cannot start the case thread: {e}"))),
            String::new(),
        ),
        Ok(_) => rx.recv_timeout(limit).unwrap_or_else(|_| {
            (
                Err(Finding::fail(format!(
                    "no verdict within the case timeout ({}s)",
                    limit.as_secs()
                ))),
                String::new(),
            )
        }),
    };
    let (verdict, reason) = match result {
        Ok(()) => (Verdict::Pass, exchange.clone()),
        Err(f) => (f.verdict, f.reason.replace('\n', " | ")),
    };
    Outcome {
        section: case.section,
        name: case.name,
        rfc: case.rfc,
        autobahn: case.autobahn,
        verdict,
        reason,
        exchange,
        duration: started.elapsed(),
    }
}

/// Runs `cases` against `target`, `parallel` at a time, the slowest
/// first; returns one outcome per case, sorted by name. Cases not finished
/// when the run timeout strikes fail with that reason.
pub fn run(cases: Vec<Case>, target: &Target, options: &RunOptions) -> Vec<Outcome> {
    let started = Instant::now();
    let mut cases = cases;
    // The big ones first, so that they overlap with the many quick ones.
    cases.sort_by_key(|c| !c.name.contains("mib"));
    let pending: Vec<(String, &'static str, &'static str, Option<&'static str>)> = cases
        .iter()
        .map(|c| (c.name.clone(), c.section, c.rfc, c.autobahn))
        .collect();
    let total = cases.len();
    let queue = Arc::new(Mutex::new(VecDeque::from(cases)));
    let (tx, rx) = mpsc::channel::<Outcome>();
    for _ in 0..options.parallel.clamp(1, MAX_CONNECTIONS).min(total.max(1)) {
        let (queue, tx, target, limit) = (
            queue.clone(),
            tx.clone(),
            target.clone(),
            options.case_timeout,
        );
        std::thread::spawn(move || {
            loop {
                let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                let Some(case) = next else { break };
                if tx.send(run_case(case, &target, limit)).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let deadline = started + options.run_timeout;
    let mut outcomes = Vec::with_capacity(total);
    while outcomes.len() < total {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(o) => outcomes.push(o),
            Err(_) => break,
        }
    }
    if outcomes.len() < total {
        queue.lock().unwrap_or_else(|e| e.into_inner()).clear();
        for (name, section, rfc, autobahn) in pending {
            if !outcomes.iter().any(|o| o.name == name) {
                outcomes.push(Outcome {
                    section,
                    name,
                    rfc,
                    autobahn,
                    verdict: Verdict::Fail,
                    reason: format!(
                        "not finished within the run timeout ({}s)",
                        options.run_timeout.as_secs()
                    ),
                    exchange: String::new(),
                    duration: started.elapsed(),
                });
            }
        }
    }
    outcomes.sort_by(|a, b| a.name.cmp(&b.name));
    outcomes
}
