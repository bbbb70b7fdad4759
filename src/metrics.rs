//! Counters for `GET /metrics`, in the Prometheus text exposition format.
//! Plain atomics: every thread bumps them without locks, and the scrape
//! reads them without stopping anyone.

use crate::room::Mode;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// Why the server closed a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    SlowConsumer,
    RateLimit,
    PingTimeout,
    /// A signed-in connection whose token ran out (`token_expired`).
    SignInExpired,
}

/// Which limit turned a connection away (before or during its handshake).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `--max-pending-per-ip`: 429 from the accept loop.
    PendingPerAddress = 0,
    /// `--max-clients-per-ip`: 429.
    ClientsPerAddress,
    /// `MAX_PENDING_HANDSHAKES`: 503 from the accept loop.
    PendingHandshakes,
    /// `--max-clients`: 503.
    MaxClients,
    /// The thread budget (`threads.rs`), or a thread that could not start: 503.
    ThreadLimit,
}

/// The `limit` label of each [`Refusal`], in its order.
pub const REFUSAL_LIMITS: [&str; 5] = [
    "pending_per_address",
    "clients_per_address",
    "pending_handshakes",
    "max_clients",
    "thread_limit",
];

/// The HTTP statuses a handshake can be refused with.
pub const REJECTION_STATUSES: [u16; 12] =
    [400, 401, 403, 404, 405, 408, 426, 429, 431, 500, 503, 505];
/// The moderation actions, each counted in `wschat_moderation_total`.
pub const MODERATION_ACTIONS: [&str; 5] = ["kick", "ban", "unban", "mute", "oplock"];

/// The reasons a sign-in is refused with 401, each counted in
/// `wschat_auth_refusals_total` (the reasons of `auth::TokenError`, and
/// `auth_required`).
pub const AUTH_REFUSAL_REASONS: [&str; 9] = [
    "auth_required",
    "token_too_long",
    "token_malformed",
    "token_alg_not_allowed",
    "token_crit_unsupported",
    "token_bad_signature",
    "token_expired",
    "token_not_yet_valid",
    "token_wrong_audience",
];

/// The close codes the server sends for protocol errors.
pub const PROTOCOL_ERROR_CODES: [u16; 3] = [1002, 1007, 1009];

#[derive(Debug, Default)]
pub struct Metrics {
    pub connections_current: AtomicU64,
    pub connections_total: AtomicU64,
    pub http_requests_total: AtomicU64,
    pub messages_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub bytes_out: AtomicU64,
    pub drops_slow_consumer: AtomicU64,
    pub drops_rate_limit: AtomicU64,
    pub drops_ping_timeout: AtomicU64,
    pub drops_sign_in_expired: AtomicU64,
    /// Sign-ins refused at the handshake, by [`AUTH_REFUSAL_REASONS`].
    pub auth_refusals: [AtomicU64; AUTH_REFUSAL_REASONS.len()],
    pub protocol_errors: [AtomicU64; PROTOCOL_ERROR_CODES.len()],
    pub rejections: [AtomicU64; REJECTION_STATUSES.len()],
    pub refusals: [AtomicU64; REFUSAL_LIMITS.len()],
    /// Moderation actions taken, by [`MODERATION_ACTIONS`].
    pub moderation: [AtomicU64; MODERATION_ACTIONS.len()],
    pub max_queue_depth: AtomicU64,
    pub panics: AtomicU64,
    /// The broadcaster thread ended other than by a shutdown: the chat has
    /// stopped. `/healthz` answers 503 and the binary exits non-zero.
    pub broadcaster_down: AtomicBool,
    /// Cluster mode: stream entries read from Redis and applied.
    pub cluster_entries_in: AtomicU64,
    /// Cluster mode: this node's entries appended to the stream.
    pub cluster_entries_out: AtomicU64,
    /// Cluster mode: pipelined appends, and their total time, so that
    /// total / count is the mean Redis round trip.
    pub redis_round_trips: AtomicU64,
    pub redis_round_trip_micros: AtomicU64,
    /// Cluster mode: connections to Redis made again after losing one.
    pub redis_reconnects: AtomicU64,
    /// Welcomes sent with `"gap":true`: a client resumed from a message
    /// older than the history, or from another epoch (or none).
    pub resume_gaps: AtomicU64,
    /// Cluster mode: stream entries missed (trimmed before this node read
    /// them), told by a jump in the sequence numbers.
    pub cluster_gaps: AtomicU64,
    /// Cluster mode: connected clients closed with 1012 `rejoin` because
    /// the order said they had left (this node was cut off meanwhile).
    pub cluster_rejoins: AtomicU64,
    /// Chat clients connected now that negotiated permessage-deflate, by
    /// protocol (0 raw, 1 wschat.v1: see [`Metrics::deflate_clients_of`]):
    /// while a protocol has none, its broadcasts are not compressed.
    pub deflate_clients: [AtomicU64; 2],
    /// Messages compressed (permessage-deflate): one per broadcast, however
    /// many clients receive it, plus one per compressed private frame.
    pub deflate_messages: AtomicU64,
    /// Their bytes before compression...
    pub deflate_bytes_in: AtomicU64,
    /// ... and the compressed payload bytes produced.
    pub deflate_bytes_out: AtomicU64,
    /// The frame inspector's own counters (`inspect/`): its connections
    /// count nowhere else.
    pub inspect_sessions_total: AtomicU64,
    pub inspect_refused: AtomicU64,
    pub inspect_frames_reported: AtomicU64,
    pub inspect_frames_skipped: AtomicU64,
}

impl Metrics {
    pub fn client_dropped(&self, reason: DropReason) {
        match reason {
            DropReason::SlowConsumer => &self.drops_slow_consumer,
            DropReason::RateLimit => &self.drops_rate_limit,
            DropReason::PingTimeout => &self.drops_ping_timeout,
            DropReason::SignInExpired => &self.drops_sign_in_expired,
        }
        .fetch_add(1, Relaxed);
    }

    pub fn protocol_error(&self, code: u16) {
        if let Some(i) = PROTOCOL_ERROR_CODES.iter().position(|&c| c == code) {
            self.protocol_errors[i].fetch_add(1, Relaxed);
        }
    }

    pub fn rejection(&self, status: u16) {
        if let Some(i) = REJECTION_STATUSES.iter().position(|&s| s == status) {
            self.rejections[i].fetch_add(1, Relaxed);
        }
    }

    /// Counts a connection turned away by `limit` (its status is counted
    /// by [`Metrics::rejection`]).
    pub fn refused(&self, limit: Refusal) {
        self.refusals[limit as usize].fetch_add(1, Relaxed);
    }

    /// Counts one compression of `plain` bytes into `compressed` bytes.
    pub fn compressed(&self, plain: usize, compressed: usize) {
        self.deflate_messages.fetch_add(1, Relaxed);
        self.deflate_bytes_in.fetch_add(plain as u64, Relaxed);
        self.deflate_bytes_out.fetch_add(compressed as u64, Relaxed);
    }

    /// The count of chat clients of `mode` that negotiated
    /// permessage-deflate.
    pub fn deflate_clients_of(&self, mode: Mode) -> &AtomicU64 {
        &self.deflate_clients[match mode {
            Mode::Raw => 0,
            Mode::V1 => 1,
        }]
    }

    pub fn queue_depth(&self, depth: usize) {
        self.max_queue_depth.fetch_max(depth as u64, Relaxed);
    }

    /// The exposition text: `# HELP` and `# TYPE` for every family.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.render_traffic(&mut out);
        self.render_refusals(&mut out);
        self.render_health(&mut out);
        self.render_cluster(&mut out);
        self.render_deflate(&mut out);
        self.render_inspect(&mut out);
        out
    }

    /// Connections, messages and bytes, and the clients the server dropped.
    fn render_traffic(&self, out: &mut String) {
        family(
            out,
            "connections",
            "gauge",
            "WebSocket connections open now.",
            &one(&self.connections_current),
        );
        family(
            out,
            "connections_total",
            "counter",
            "WebSocket connections accepted.",
            &one(&self.connections_total),
        );
        family(
            out,
            "http_requests_total",
            "counter",
            "HTTP requests answered without an upgrade.",
            &one(&self.http_requests_total),
        );
        family(
            out,
            "messages_in_total",
            "counter",
            "Data messages received from clients.",
            &one(&self.messages_in),
        );
        family(
            out,
            "bytes_in_total",
            "counter",
            "Payload bytes of data messages received.",
            &one(&self.bytes_in),
        );
        family(
            out,
            "messages_out_total",
            "counter",
            "Frames written to clients.",
            &one(&self.messages_out),
        );
        family(
            out,
            "bytes_out_total",
            "counter",
            "Bytes written to WebSocket clients.",
            &one(&self.bytes_out),
        );
        family(
            out,
            "drops_total",
            "counter",
            "Clients closed by the server, by reason.",
            &[
                (
                    "{reason=\"slow_consumer\"}".into(),
                    self.drops_slow_consumer.load(Relaxed),
                ),
                (
                    "{reason=\"rate_limit\"}".into(),
                    self.drops_rate_limit.load(Relaxed),
                ),
                (
                    "{reason=\"ping_timeout\"}".into(),
                    self.drops_ping_timeout.load(Relaxed),
                ),
                (
                    "{reason=\"token_expired\"}".into(),
                    self.drops_sign_in_expired.load(Relaxed),
                ),
            ],
        );
    }

    /// Counts a sign-in refused at the handshake with `reason` (a 401;
    /// its status is counted by [`Metrics::rejection`]).
    pub fn auth_refused(&self, reason: &str) {
        if let Some(i) = AUTH_REFUSAL_REASONS.iter().position(|r| *r == reason) {
            self.auth_refusals[i].fetch_add(1, Relaxed);
        }
    }

    /// Counts one moderation action (`kick`, `ban`, ...).
    pub fn moderated(&self, action: &str) {
        if let Some(i) = MODERATION_ACTIONS.iter().position(|a| *a == action) {
            self.moderation[i].fetch_add(1, Relaxed);
        }
    }

    /// What was refused: protocol errors, handshakes, limits.
    fn render_refusals(&self, out: &mut String) {
        let by_action: Vec<_> = MODERATION_ACTIONS
            .iter()
            .zip(&self.moderation)
            .map(|(action, v)| (format!("{{action=\"{action}\"}}"), v.load(Relaxed)))
            .collect();
        family(
            out,
            "moderation_total",
            "counter",
            "Moderation actions taken by operators, by action.",
            &by_action,
        );
        let by_reason: Vec<_> = AUTH_REFUSAL_REASONS
            .iter()
            .zip(&self.auth_refusals)
            .map(|(reason, v)| (format!("{{reason=\"{reason}\"}}"), v.load(Relaxed)))
            .collect();
        family(
            out,
            "auth_refusals_total",
            "counter",
            "Sign-ins refused at the handshake (401), by reason.",
            &by_reason,
        );
        let by_code: Vec<_> = PROTOCOL_ERROR_CODES
            .iter()
            .zip(&self.protocol_errors)
            .map(|(code, v)| (format!("{{code=\"{code}\"}}"), v.load(Relaxed)))
            .collect();
        family(
            out,
            "protocol_errors_total",
            "counter",
            "Connections failed for a protocol error, by close code.",
            &by_code,
        );
        let by_status: Vec<_> = REJECTION_STATUSES
            .iter()
            .zip(&self.rejections)
            .map(|(status, v)| (format!("{{status=\"{status}\"}}"), v.load(Relaxed)))
            .collect();
        family(
            out,
            "handshake_rejections_total",
            "counter",
            "Requests refused, by HTTP status.",
            &by_status,
        );
        let by_limit: Vec<_> = REFUSAL_LIMITS
            .iter()
            .zip(&self.refusals)
            .map(|(limit, v)| (format!("{{limit=\"{limit}\"}}"), v.load(Relaxed)))
            .collect();
        family(
            out,
            "limit_refusals_total",
            "counter",
            "Connections turned away by a limit (429 per address, 503 server-wide), by limit.",
            &by_limit,
        );
    }

    /// How the server itself is doing.
    fn render_health(&self, out: &mut String) {
        family(
            out,
            "max_queue_depth",
            "gauge",
            "Largest backlog of broadcast bytes a delivery thread has held for its clients.",
            &one(&self.max_queue_depth),
        );
        family(
            out,
            "panics_total",
            "counter",
            "Connection threads that panicked (and were contained).",
            &one(&self.panics),
        );
        family(
            out,
            "resume_gaps_total",
            "counter",
            "Clients whose resume got a gap: messages no longer kept, or another epoch.",
            &one(&self.resume_gaps),
        );
    }

    /// Cluster mode: the stream and the link to Redis.
    fn render_cluster(&self, out: &mut String) {
        family(
            out,
            "cluster_entries_in_total",
            "counter",
            "Cluster mode: stream entries read from Redis and applied.",
            &one(&self.cluster_entries_in),
        );
        family(
            out,
            "cluster_entries_out_total",
            "counter",
            "Cluster mode: this node's entries appended to the stream.",
            &one(&self.cluster_entries_out),
        );
        family(
            out,
            "cluster_gaps_total",
            "counter",
            "Cluster mode: stream entries this node never saw (trimmed first).",
            &one(&self.cluster_gaps),
        );
        family(
            out,
            "cluster_rejoins_total",
            "counter",
            "Cluster mode: clients told to reconnect (1012 rejoin) after being announced gone.",
            &one(&self.cluster_rejoins),
        );
        family(
            out,
            "redis_round_trips_total",
            "counter",
            "Cluster mode: pipelined appends sent to Redis.",
            &one(&self.redis_round_trips),
        );
        family(
            out,
            "redis_round_trip_microseconds_total",
            "counter",
            "Cluster mode: time spent in those round trips (divide by the count for the mean).",
            &one(&self.redis_round_trip_micros),
        );
        family(
            out,
            "redis_reconnects_total",
            "counter",
            "Cluster mode: connections to Redis made again after one was lost.",
            &one(&self.redis_reconnects),
        );
    }

    /// permessage-deflate.
    fn render_deflate(&self, out: &mut String) {
        family(
            out,
            "deflate_clients",
            "gauge",
            "Chat clients connected now that negotiated permessage-deflate, by protocol.",
            &[
                (
                    "{protocol=\"raw\"}".into(),
                    self.deflate_clients_of(Mode::Raw).load(Relaxed),
                ),
                (
                    "{protocol=\"wschat.v1\"}".into(),
                    self.deflate_clients_of(Mode::V1).load(Relaxed),
                ),
            ],
        );
        family(
            out,
            "deflate_messages_total",
            "counter",
            "Messages compressed with permessage-deflate (once per broadcast, whatever the recipients).",
            &one(&self.deflate_messages),
        );
        family(
            out,
            "deflate_bytes_in_total",
            "counter",
            "Bytes of the messages compressed, before compression.",
            &one(&self.deflate_bytes_in),
        );
        family(
            out,
            "deflate_bytes_out_total",
            "counter",
            "Compressed payload bytes produced.",
            &one(&self.deflate_bytes_out),
        );
    }

    /// The frame inspector's own counters.
    fn render_inspect(&self, out: &mut String) {
        let counters = [
            (
                "inspect_sessions_total",
                "Inspected connections opened.",
                &self.inspect_sessions_total,
            ),
            (
                "inspect_refused_total",
                "Inspected connections refused (inspector busy).",
                &self.inspect_refused,
            ),
            (
                "inspect_frames_reported_total",
                "Frames reported to inspector pages.",
                &self.inspect_frames_reported,
            ),
            (
                "inspect_frames_skipped_total",
                "Frames over the inspector's rate, counted and not shown.",
                &self.inspect_frames_skipped,
            ),
        ];
        for (name, help, counter) in counters {
            family(out, name, "counter", help, &one(counter));
        }
    }
}

/// Writes one family: its `# HELP`, `# TYPE` and samples.
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, u64)]) {
    let _ = writeln!(
        out,
        "# HELP wschat_{name} {help}\n# TYPE wschat_{name} {kind}"
    );
    for (labels, value) in samples {
        let _ = writeln!(out, "wschat_{name}{labels} {value}");
    }
}

/// The one unlabelled sample of a family.
fn one(v: &AtomicU64) -> Vec<(String, u64)> {
    vec![(String::new(), v.load(Relaxed))]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Malformed, TokenError};

    /// Every reason a sign-in can be refused with has its counter: a
    /// reason missing here would be refused uncounted.
    #[test]
    fn every_sign_in_refusal_reason_is_counted() {
        let errors = [
            TokenError::TooLong,
            TokenError::Malformed(Malformed::NotThreeParts),
            TokenError::AlgorithmNotAllowed,
            TokenError::CriticalExtension,
            TokenError::BadSignature,
            TokenError::Expired,
            TokenError::NotYetValid,
            TokenError::WrongAudience,
        ];
        let reasons = errors
            .iter()
            .map(|e| e.reason())
            .chain([crate::auth::transport::AUTH_REQUIRED]);
        let metrics = Metrics::default();
        for reason in reasons {
            metrics.auth_refused(reason);
            let line = format!("wschat_auth_refusals_total{{reason=\"{reason}\"}} 1");
            assert!(metrics.render().contains(&line), "{reason} is not counted");
        }
    }
}
