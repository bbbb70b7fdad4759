//! RESP2, the Redis serialization protocol: encoding commands and parsing
//! replies, with no I/O (like `protocol::frame`, the caller owns the
//! socket and the buffer).
//!
//! Every RESP2 value starts with one type byte and ends its first line with
//! CRLF:
//!
//! ```text
//!   +OK\r\n                      simple string  "OK"
//!   -ERR unknown command\r\n     error          "ERR unknown command"
//!   :1000\r\n                    integer        1000
//!   $5\r\nhello\r\n              bulk string    b"hello" (length, then the bytes)
//!   $-1\r\n                      null bulk string
//!   *2\r\n$3\r\nGET\r\n$1\r\nk\r\n array of 2 bulk strings: GET k
//!   *-1\r\n                      null array
//! ```
//!
//! A client sends every command as an array of bulk strings ([`encode_command`])
//! and the server answers with any value ([`parse_reply`]). A reply may
//! arrive in pieces: the parser answers [`Parse::Partial`] until all of it
//! is in the buffer, and never allocates more than what has arrived (every
//! length is checked against a named limit first).

use std::fmt;

/// The longest bulk string accepted in a reply. Chat events are a few KiB;
/// Redis's own default limit on requests (`proto-max-bulk-len`) is 512 MiB,
/// far more than a chat needs to trust a peer with.
pub const MAX_BULK_LEN: usize = 16 * 1024 * 1024;
/// The most elements accepted in one array of a reply. An `XREAD` of 1000
/// entries is 1000 elements at its widest level.
pub const MAX_ARRAY_LEN: usize = 1024 * 1024;
/// The deepest nesting of arrays accepted. An `XREAD` reply is 5 levels
/// deep (streams, [key, entries], entries, [id, fields], fields).
pub const MAX_DEPTH: usize = 8;
/// The longest first line (type byte, text or digits) accepted, CRLF
/// excluded. Simple strings and errors are short messages.
pub const MAX_LINE_LEN: usize = 64 * 1024;

/// One RESP2 value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `+text`: a short status such as `OK` or `PONG`.
    Simple(String),
    /// `-text`: the server refused the command; the text starts with an
    /// error kind such as `ERR`, `WRONGTYPE` or `NOAUTH`.
    Error(String),
    /// `:n`: a signed 64-bit integer.
    Integer(i64),
    /// `$len` then `len` bytes: binary-safe data.
    Bulk(Vec<u8>),
    /// `$-1`: "no value", e.g. `GET` of a missing key.
    NullBulk,
    /// `*n` then `n` values, each of any type.
    Array(Vec<Value>),
    /// `*-1`: "no array", e.g. `XREAD BLOCK` that timed out.
    NullArray,
}

impl Value {
    /// The bytes of a bulk or simple string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bulk(bytes) => Some(bytes),
            Value::Simple(text) => Some(text.as_bytes()),
            _ => None,
        }
    }

    /// True for both null forms.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::NullBulk | Value::NullArray)
    }
}

/// The result of parsing the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    /// The buffer holds only the beginning of a value: read more, then
    /// parse again from the same start.
    Partial,
    /// A whole value, and how many bytes of the buffer it took.
    Complete { value: Value, used: usize },
}

/// Everything a peer can get wrong in a reply. Each is fatal for the
/// connection: after a malformed reply there is no way to find where the
/// next one starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RespError {
    /// The first byte is not one of `+ - : $ *` (RESP3 types included:
    /// this client never asks for RESP3).
    UnknownType(u8),
    /// A line ends in a bare LF, or holds a CR that is not before its LF.
    BadLineEnd,
    /// A first line longer than [`MAX_LINE_LEN`].
    LineTooLong,
    /// A simple string or error that is not UTF-8.
    NotUtf8,
    /// An integer or length that is not an optional `-` then digits, or
    /// does not fit in 64 bits.
    BadInteger,
    /// A negative length other than `-1`.
    BadLength(i64),
    /// A bulk string longer than [`MAX_BULK_LEN`].
    BulkTooLong(i64),
    /// An array longer than [`MAX_ARRAY_LEN`].
    ArrayTooLong(i64),
    /// Arrays nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// A bulk string's bytes not followed by CRLF.
    MissingCrlf,
}

impl fmt::Display for RespError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RespError::UnknownType(byte) => write!(f, "unknown RESP type byte {byte:#04x}"),
            RespError::BadLineEnd => f.write_str("RESP line not ended by CRLF"),
            RespError::LineTooLong => write!(f, "RESP line over {MAX_LINE_LEN} bytes"),
            RespError::NotUtf8 => f.write_str("RESP simple string is not UTF-8"),
            RespError::BadInteger => f.write_str("malformed RESP integer"),
            RespError::BadLength(len) => write!(f, "invalid RESP length {len}"),
            RespError::BulkTooLong(len) => {
                write!(f, "RESP bulk string of {len} bytes (limit {MAX_BULK_LEN})")
            }
            RespError::ArrayTooLong(len) => {
                write!(f, "RESP array of {len} elements (limit {MAX_ARRAY_LEN})")
            }
            RespError::TooDeep => write!(f, "RESP arrays nested over {MAX_DEPTH} deep"),
            RespError::MissingCrlf => f.write_str("RESP bulk string not followed by CRLF"),
        }
    }
}

impl std::error::Error for RespError {}

/// Appends a command to `out` as RESP: an array of bulk strings, the form
/// Redis requires of clients. Binary-safe: an argument may hold any bytes,
/// CRLF included, since its length is sent before it.
///
/// ```
/// use wschat::cluster::resp::encode_command;
///
/// let mut out = Vec::new();
/// encode_command(&["SET", "greeting", "hi"], &mut out);
/// assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$8\r\ngreeting\r\n$2\r\nhi\r\n");
/// ```
pub fn encode_command<A: AsRef<[u8]>>(args: &[A], out: &mut Vec<u8>) {
    out.push(b'*');
    out.extend_from_slice(args.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for arg in args {
        encode_bulk(arg.as_ref(), out);
    }
}

fn encode_bulk(bytes: &[u8], out: &mut Vec<u8>) {
    out.push(b'$');
    out.extend_from_slice(bytes.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

/// Appends any value to `out`: what a server sends. The client itself only
/// sends commands; this is here so that tests (and test servers) can write
/// replies. A simple string or error holding CR or LF cannot be written in
/// RESP and is a caller's bug: it panics.
pub fn encode_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Simple(text) | Value::Error(text) => {
            assert!(
                !text.contains(['\r', '\n']),
                "RESP simple strings cannot hold CR or LF"
            );
            out.push(if matches!(value, Value::Simple(_)) {
                b'+'
            } else {
                b'-'
            });
            out.extend_from_slice(text.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Value::Integer(n) => {
            out.push(b':');
            out.extend_from_slice(n.to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Value::Bulk(bytes) => encode_bulk(bytes, out),
        Value::NullBulk => out.extend_from_slice(b"$-1\r\n"),
        Value::Array(items) => {
            out.push(b'*');
            out.extend_from_slice(items.len().to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
            for item in items {
                encode_value(item, out);
            }
        }
        Value::NullArray => out.extend_from_slice(b"*-1\r\n"),
    }
}

/// Parses one reply from the start of `buf`.
///
/// ```
/// use wschat::cluster::resp::{parse_reply, Parse, Value};
///
/// let reply = b"*2\r\n$5\r\nhello\r\n:42\r\n";
/// assert_eq!(
///     parse_reply(reply).unwrap(),
///     Parse::Complete {
///         value: Value::Array(vec![Value::Bulk(b"hello".to_vec()), Value::Integer(42)]),
///         used: reply.len(),
///     }
/// );
/// // Any strict prefix is only the beginning of that reply.
/// assert_eq!(parse_reply(&reply[..9]).unwrap(), Parse::Partial);
/// ```
pub fn parse_reply(buf: &[u8]) -> Result<Parse, RespError> {
    Ok(match parse_at(buf, 0, 0)? {
        Some((value, used)) => Parse::Complete { value, used },
        None => Parse::Partial,
    })
}

/// Parses the value that starts at `buf[at]`, at nesting `depth`; returns
/// it and the index just past it, or `None` if it has not all arrived.
fn parse_at(buf: &[u8], at: usize, depth: usize) -> Result<Option<(Value, usize)>, RespError> {
    let Some((line, next)) = read_line(buf, at)? else {
        return Ok(None);
    };
    let (kind, rest) = (line[0], &line[1..]);
    match kind {
        b'+' | b'-' => {
            let text = std::str::from_utf8(rest).map_err(|_| RespError::NotUtf8)?;
            let value = if kind == b'+' {
                Value::Simple(text.to_string())
            } else {
                Value::Error(text.to_string())
            };
            Ok(Some((value, next)))
        }
        b':' => Ok(Some((Value::Integer(parse_integer(rest)?), next))),
        b'$' => {
            let len = parse_integer(rest)?;
            if len == -1 {
                return Ok(Some((Value::NullBulk, next)));
            }
            let len = checked_len(len, MAX_BULK_LEN, RespError::BulkTooLong)?;
            // Wait for all the bytes and the CRLF before copying anything:
            // the allocation is then bounded by what really arrived.
            let end = next + len;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(RespError::MissingCrlf);
            }
            Ok(Some((Value::Bulk(buf[next..end].to_vec()), end + 2)))
        }
        b'*' => {
            let len = parse_integer(rest)?;
            if len == -1 {
                return Ok(Some((Value::NullArray, next)));
            }
            let len = checked_len(len, MAX_ARRAY_LEN, RespError::ArrayTooLong)?;
            if len > 0 && depth + 1 > MAX_DEPTH {
                return Err(RespError::TooDeep);
            }
            // Each element takes at least 3 bytes (`+\r\n`), so a claimed
            // length is only believed as far as the bytes already here.
            let mut items = Vec::with_capacity(len.min((buf.len() - next) / 3));
            let mut pos = next;
            for _ in 0..len {
                match parse_at(buf, pos, depth + 1)? {
                    Some((item, after)) => {
                        items.push(item);
                        pos = after;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Value::Array(items), pos)))
        }
        other => Err(RespError::UnknownType(other)),
    }
}

/// Finds the line that starts at `buf[at]`: returns it without its CRLF,
/// and the index just past the CRLF. A line always has its type byte.
///
/// The checks come in the same order whether or not the line's end has
/// arrived (the type byte, then a CR not followed by LF, then the length),
/// so a malformed reply is refused for the same reason however the reads
/// cut it.
fn read_line(buf: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, RespError> {
    let window = &buf[at..buf.len().min(at + MAX_LINE_LEN + 2)];
    let Some(&first) = window.first() else {
        return Ok(None);
    };
    if !b"+-:$*".contains(&first) {
        return Err(RespError::UnknownType(first));
    }
    match window.iter().position(|&b| b == b'\n') {
        Some(lf) => {
            // `lf` ≥ 1: the first byte is a type byte.
            let line = &window[..lf - 1];
            if window[lf - 1] != b'\r' || line.contains(&b'\r') {
                return Err(RespError::BadLineEnd);
            }
            Ok(Some((line, at + lf + 1)))
        }
        None => {
            // A CR must be the line's last byte but one.
            if window[..window.len() - 1].contains(&b'\r') {
                return Err(RespError::BadLineEnd);
            }
            if window.len() >= MAX_LINE_LEN + 2 {
                return Err(RespError::LineTooLong);
            }
            Ok(None)
        }
    }
}

/// `-?[0-9]+` as an i64, strictly: no `+`, no spaces, no empty string.
fn parse_integer(digits: &[u8]) -> Result<i64, RespError> {
    let (negative, body) = match digits.split_first() {
        Some((b'-', body)) => (true, body),
        _ => (false, digits),
    };
    if body.is_empty() || !body.iter().all(u8::is_ascii_digit) {
        return Err(RespError::BadInteger);
    }
    let mut n: i64 = 0;
    for &d in body {
        let digit = i64::from(d - b'0');
        n = n
            .checked_mul(10)
            .and_then(|n| {
                if negative {
                    n.checked_sub(digit)
                } else {
                    n.checked_add(digit)
                }
            })
            .ok_or(RespError::BadInteger)?;
    }
    Ok(n)
}

/// A length from the wire, checked: `0..=limit`.
fn checked_len(len: i64, limit: usize, too_long: fn(i64) -> RespError) -> Result<usize, RespError> {
    if len < 0 {
        return Err(RespError::BadLength(len));
    }
    if len as u64 > limit as u64 {
        return Err(too_long(len));
    }
    Ok(len as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(bytes: &[u8]) -> Value {
        match parse_reply(bytes).unwrap() {
            Parse::Complete { value, used } => {
                assert_eq!(used, bytes.len(), "whole input used");
                value
            }
            Parse::Partial => panic!("partial: {bytes:?}"),
        }
    }

    /// Every strict prefix of a valid reply is `Partial`, never an error.
    fn assert_every_prefix_is_partial(bytes: &[u8]) {
        for cut in 0..bytes.len() {
            assert_eq!(
                parse_reply(&bytes[..cut]),
                Ok(Parse::Partial),
                "prefix {:?}",
                String::from_utf8_lossy(&bytes[..cut])
            );
        }
    }

    #[test]
    fn each_type_byte_by_byte() {
        let cases: Vec<(&[u8], Value)> = vec![
            (b"+OK\r\n", Value::Simple("OK".into())),
            (b"+\r\n", Value::Simple(String::new())),
            (b"-ERR wrong\r\n", Value::Error("ERR wrong".into())),
            (b":0\r\n", Value::Integer(0)),
            (b":-42\r\n", Value::Integer(-42)),
            (b":9223372036854775807\r\n", Value::Integer(i64::MAX)),
            (b":-9223372036854775808\r\n", Value::Integer(i64::MIN)),
            (b"$5\r\nhello\r\n", Value::Bulk(b"hello".to_vec())),
            (b"$0\r\n\r\n", Value::Bulk(Vec::new())),
            (b"$4\r\na\r\nb\r\n", Value::Bulk(b"a\r\nb".to_vec())),
            (b"$-1\r\n", Value::NullBulk),
            (b"*0\r\n", Value::Array(Vec::new())),
            (b"*-1\r\n", Value::NullArray),
            (
                b"*3\r\n:1\r\n$-1\r\n*1\r\n+x\r\n",
                Value::Array(vec![
                    Value::Integer(1),
                    Value::NullBulk,
                    Value::Array(vec![Value::Simple("x".into())]),
                ]),
            ),
        ];
        for (bytes, expected) in cases {
            assert_eq!(
                complete(bytes),
                expected,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
            assert_every_prefix_is_partial(bytes);
            let mut encoded = Vec::new();
            encode_value(&expected, &mut encoded);
            assert_eq!(encoded, bytes);
        }
    }

    #[test]
    fn a_command_is_an_array_of_bulk_strings() {
        let mut out = Vec::new();
        encode_command(&[&b"XADD"[..], b"k", b"*", b"f", b"\r\n"], &mut out);
        assert_eq!(
            out,
            b"*5\r\n$4\r\nXADD\r\n$1\r\nk\r\n$1\r\n*\r\n$1\r\nf\r\n$2\r\n\r\n\r\n"
        );
        // And it parses back to the same arguments.
        let args: Vec<Value> = ["XADD", "k", "*", "f", "\r\n"]
            .iter()
            .map(|a| Value::Bulk(a.as_bytes().to_vec()))
            .collect();
        assert_eq!(complete(&out), Value::Array(args));
        // No arguments is an empty array.
        out.clear();
        encode_command::<&[u8]>(&[], &mut out);
        assert_eq!(out, b"*0\r\n");
    }

    #[test]
    fn used_stops_at_the_end_of_the_first_reply() {
        let two = b":1\r\n+OK\r\n";
        assert_eq!(
            parse_reply(two).unwrap(),
            Parse::Complete {
                value: Value::Integer(1),
                used: 4
            }
        );
        assert_eq!(
            parse_reply(&two[4..]).unwrap(),
            Parse::Complete {
                value: Value::Simple("OK".into()),
                used: 5
            }
        );
    }

    #[test]
    fn malformed_replies_are_errors() {
        let cases: Vec<(&[u8], RespError)> = vec![
            (b"?\r\n", RespError::UnknownType(b'?')),
            (b"%1\r\n", RespError::UnknownType(b'%')), // a RESP3 map
            (b"x", RespError::UnknownType(b'x')),
            (b"\r\n", RespError::UnknownType(b'\r')),
            (b"+OK\n", RespError::BadLineEnd),
            (b"+O\rK\r\n", RespError::BadLineEnd),
            (b"+O\rK", RespError::BadLineEnd),
            (b":\r\n", RespError::BadInteger),
            (b":+1\r\n", RespError::BadInteger),
            (b": 1\r\n", RespError::BadInteger),
            (b":1.5\r\n", RespError::BadInteger),
            (b":-\r\n", RespError::BadInteger),
            (b":9223372036854775808\r\n", RespError::BadInteger),
            (b"$-2\r\n", RespError::BadLength(-2)),
            (b"*-5\r\n", RespError::BadLength(-5)),
            (b"$x\r\n", RespError::BadInteger),
            (b"$3\r\nabcd\r\n", RespError::MissingCrlf),
            (b"$3\r\nabc\n\n", RespError::MissingCrlf),
            (b"+\xff\r\n", RespError::NotUtf8),
            (b"*2\r\n:1\r\n!\r\n", RespError::UnknownType(b'!')),
        ];
        for (bytes, expected) in cases {
            assert_eq!(
                parse_reply(bytes),
                Err(expected),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn an_error_does_not_depend_on_how_the_reply_is_cut() {
        // Found by the resp fuzz target: a bad type byte was reported as
        // such when the line's end had not arrived, and as a bad line end
        // when it had; a stray CR in a line too long, likewise.
        let mut long_with_cr = b"+a\rb".to_vec();
        long_with_cr.resize(MAX_LINE_LEN + 10, b'c');
        let cases: Vec<(&[u8], RespError)> = vec![
            (b"1\x03*1\r\x02\n", RespError::UnknownType(b'1')),
            (b"\n", RespError::UnknownType(b'\n')),
            (b"+\n", RespError::BadLineEnd),
            (b"+a\rb\n", RespError::BadLineEnd),
            (&long_with_cr, RespError::BadLineEnd),
        ];
        for (bytes, expected) in cases {
            for cut in 1..=bytes.len().min(8) {
                let verdict = match parse_reply(&bytes[..cut]) {
                    Ok(Parse::Partial) => parse_reply(bytes),
                    verdict => verdict,
                };
                assert_eq!(
                    verdict,
                    Err(expected),
                    "{:?} cut at {cut}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(12)])
                );
            }
        }
    }

    #[test]
    fn lengths_over_the_limits_are_refused_from_the_header_alone() {
        let bulk = format!("${}\r\n", MAX_BULK_LEN + 1);
        assert_eq!(
            parse_reply(bulk.as_bytes()),
            Err(RespError::BulkTooLong(MAX_BULK_LEN as i64 + 1))
        );
        let array = format!("*{}\r\n", MAX_ARRAY_LEN + 1);
        assert_eq!(
            parse_reply(array.as_bytes()),
            Err(RespError::ArrayTooLong(MAX_ARRAY_LEN as i64 + 1))
        );
        assert_eq!(
            parse_reply(b"$9223372036854775807\r\n"),
            Err(RespError::BulkTooLong(i64::MAX))
        );
        // Exactly at the limit is only waiting for its bytes.
        let at_limit = format!("${MAX_BULK_LEN}\r\n");
        assert_eq!(parse_reply(at_limit.as_bytes()), Ok(Parse::Partial));
    }

    #[test]
    fn a_long_line_without_crlf_is_refused() {
        let mut line = b"+".to_vec();
        line.resize(MAX_LINE_LEN + 1, b'a');
        // MAX_LINE_LEN + 1 bytes could still be a line of MAX_LINE_LEN and its CRLF.
        assert_eq!(parse_reply(&line), Ok(Parse::Partial));
        line.push(b'a');
        assert_eq!(parse_reply(&line), Err(RespError::LineTooLong));
        // A line of exactly MAX_LINE_LEN is accepted.
        line.truncate(MAX_LINE_LEN);
        line.extend_from_slice(b"\r\n");
        assert!(matches!(parse_reply(&line), Ok(Parse::Complete { .. })));
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_refused() {
        let nested = |depth: usize| {
            let mut bytes = b"*1\r\n".repeat(depth);
            bytes.extend_from_slice(b":1\r\n");
            bytes
        };
        assert!(matches!(
            parse_reply(&nested(MAX_DEPTH)),
            Ok(Parse::Complete { .. })
        ));
        assert_eq!(parse_reply(&nested(MAX_DEPTH + 1)), Err(RespError::TooDeep));
        // An empty array at any depth holds nothing deeper.
        let mut empty = b"*1\r\n".repeat(MAX_DEPTH);
        empty.extend_from_slice(b"*0\r\n");
        assert!(matches!(parse_reply(&empty), Ok(Parse::Complete { .. })));
    }

    /// splitmix64: a seeded generator, so every run tests the same cases.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn random_text(rng: &mut Rng) -> String {
        const CHARS: &[char] = &['a', 'Z', '0', ' ', '-', ':', 'é', '💬', '*', '$'];
        (0..rng.below(12))
            .map(|_| CHARS[rng.below(CHARS.len())])
            .collect()
    }

    fn random_value(rng: &mut Rng, depth: usize) -> Value {
        let kinds = if depth < MAX_DEPTH { 7 } else { 6 };
        match rng.below(kinds) {
            0 => Value::Simple(random_text(rng)),
            1 => Value::Error(random_text(rng)),
            2 => Value::Integer(match rng.below(3) {
                0 => rng.next() as i64,
                1 => rng.below(1000) as i64 - 500,
                _ => [i64::MIN, i64::MAX, 0, -1][rng.below(4)],
            }),
            3 => {
                let len = rng.below(40);
                Value::Bulk((0..len).map(|_| rng.next() as u8).collect())
            }
            4 => Value::NullBulk,
            5 => Value::NullArray,
            _ => {
                let len = rng.below(5);
                Value::Array((0..len).map(|_| random_value(rng, depth + 1)).collect())
            }
        }
    }

    #[test]
    fn random_values_round_trip_however_they_are_cut() {
        let mut rng = Rng(0x5eed_0001);
        for _ in 0..3000 {
            let value = random_value(&mut rng, 0);
            let mut bytes = Vec::new();
            encode_value(&value, &mut bytes);
            // A second reply behind it must not be touched.
            let first_len = bytes.len();
            bytes.extend_from_slice(b"+next\r\n");
            assert_eq!(
                parse_reply(&bytes),
                Ok(Parse::Complete {
                    value: value.clone(),
                    used: first_len
                })
            );
            let cut = rng.below(first_len);
            assert_eq!(parse_reply(&bytes[..cut]), Ok(Parse::Partial));
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = Rng(0x5eed_0002);
        // Mostly RESP-like bytes, so the parser gets past the first line.
        const ALPHABET: &[u8] = b"+-:$*\r\n0123456789-x\xff";
        for _ in 0..20_000 {
            let len = rng.below(48);
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    if rng.below(4) == 0 {
                        rng.next() as u8
                    } else {
                        ALPHABET[rng.below(ALPHABET.len())]
                    }
                })
                .collect();
            if let Ok(Parse::Complete { used, .. }) = parse_reply(&bytes) {
                assert!(used <= bytes.len());
            }
        }
    }
}
