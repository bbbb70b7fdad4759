//! The bodies of the fuzz targets: one function per target, taking the
//! fuzzer's bytes. The fuzz crate (`tests/fuzz/Cargo.toml`, nightly,
//! `cargo fuzz`) calls them from `tests/fuzz/fuzz_targets/*.rs`;
//! `tests/fuzz_corpus.rs` (stable, `cargo test`) includes this same file
//! and replays every corpus file through them. A panic is a finding: no
//! body catches one.
//!
//! Each body checks properties, not just "no panic": a decoder fed in
//! pieces decodes what it decodes at once, an encoder's output parses back,
//! the inflater gives zlib's verdict.

use wschat::cluster::resp::{self, Parse, RespError};
use wschat::json;
use wschat::protocol::deflate::{self, Inflater, extension};
use wschat::protocol::frame::{FrameHeader, MAX_HEADER_LEN, RSV1};
use wschat::protocol::handshake::{self, Request};
use wschat::protocol::{Message, MessageDecoder, MessageReader, ProtocolError, ReadError, Role};
use wschat::room::{self, Action, Chat, Epoch, Input, Limits, Mode, Output, Payload};

#[path = "zlib_oracle.rs"]
pub mod zlib_oracle;

/// A target's body: the fuzzer's bytes in; a panic is a finding.
pub type Target = fn(&[u8]);

/// The targets by name, as `cargo fuzz run NAME` and the corpus folders
/// `tests/fuzz/corpus/NAME` know them.
pub const TARGETS: [(&str, Target); 7] = [
    ("frames", frames),
    ("handshake", handshake),
    ("extension_offer", extension_offer),
    ("inflate", inflate),
    ("resp", resp),
    ("json", json),
    ("room_input", room_input),
];

/// Sizes of the pieces a stream is cut into, from a 16-bit seed: mostly
/// small (1–16 bytes, so every boundary gets crossed), sometimes large.
struct Pieces(u32);

impl Pieces {
    fn new(seed: u16) -> Self {
        Pieces(seed as u32 | 1 << 16)
    }
    fn next_len(&mut self) -> usize {
        // xorshift32
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        match self.0 % 8 {
            0 => 1 + (self.0 >> 8) as usize % 1024,
            _ => 1 + (self.0 >> 8) as usize % 16,
        }
    }
    /// `data` cut into pieces.
    fn cut<'a>(&mut self, mut data: &'a [u8]) -> Vec<&'a [u8]> {
        let mut pieces = Vec::new();
        while !data.is_empty() {
            let (piece, rest) = data.split_at(self.next_len().min(data.len()));
            pieces.push(piece);
            data = rest;
        }
        pieces
    }
}

/// The first bytes of an input as settings, and the rest.
fn settings<const N: usize>(data: &[u8]) -> Option<([u8; N], &[u8])> {
    let (head, rest) = data.split_first_chunk::<N>()?;
    Some((*head, rest))
}

// ---------------------------------------------------------------- frames

/// What a message decoder made of a stream: its messages, then the error
/// that stopped it, if one did.
type Decoded = (Vec<Message>, Option<ProtocolError>);

fn decode_messages(pieces: &[&[u8]], role: Role, max_message: usize, deflate: bool) -> Decoded {
    let mut decoder = MessageDecoder::new(role, max_message);
    if deflate {
        decoder.enable_deflate();
    }
    let mut buffer = Vec::new();
    let mut messages = Vec::new();
    for piece in pieces {
        buffer.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buffer) {
                Ok((used, message)) => {
                    buffer.drain(..used);
                    match message {
                        Some(message) => messages.push(message),
                        None => {
                            // Only a partial header is left unconsumed.
                            assert!(buffer.len() < MAX_HEADER_LEN, "{} left", buffer.len());
                            break;
                        }
                    }
                }
                Err(error) => return (messages, Some(error)),
            }
        }
    }
    (messages, None)
}

/// What a [`MessageReader`] made of `pieces`, each handed out by one read
/// call (a read may take less than a piece holds): a payload large enough
/// is read straight into its message, past the decoder's input, so this
/// checks that path against the decoder's.
fn read_messages(pieces: &[&[u8]], role: Role, max_message: usize, deflate: bool) -> Decoded {
    struct Pieces<'a> {
        pieces: std::slice::Iter<'a, &'a [u8]>,
        current: &'a [u8],
    }
    impl std::io::Read for Pieces<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            while self.current.is_empty() {
                match self.pieces.next() {
                    Some(piece) => self.current = piece,
                    None => return Ok(0),
                }
            }
            let n = out.len().min(self.current.len());
            out[..n].copy_from_slice(&self.current[..n]);
            self.current = &self.current[n..];
            Ok(n)
        }
    }
    let source = Pieces {
        pieces: pieces.iter(),
        current: &[],
    };
    let mut reader = MessageReader::new(source, role, max_message);
    if deflate {
        reader.enable_deflate();
    }
    let mut messages = Vec::new();
    loop {
        match reader.read_message() {
            Ok(message) => messages.push(message),
            Err(ReadError::Protocol(error)) => return (messages, Some(error)),
            Err(ReadError::Eof) => return (messages, None),
            Err(ReadError::Io(error)) => panic!("a slice does not fail: {error}"),
        }
    }
}

/// The frame header parser, and the message decoder fed in random pieces.
///
/// Input: a settings byte (bit 0: RSV1 allowed / deflate negotiated, bit
/// 1: decode as a client, bits 2–4: the message limit), two bytes of seed
/// for the pieces, then the stream.
pub fn frames(data: &[u8]) {
    let Some(([flags, seed_low, seed_high], stream)) = settings::<3>(data) else {
        return;
    };
    let deflate = flags & 1 != 0;
    let role = if flags & 2 != 0 {
        Role::Client
    } else {
        Role::Server
    };
    let max_message = [0, 1, 125, 126, 1000, 4096, 65_536, 1 << 20][(flags >> 2 & 7) as usize];

    // The header alone: every strict prefix of a header asks for more,
    // and what `format` writes parses back to the same header.
    let allowed_rsv = if deflate { RSV1 } else { 0 };
    match FrameHeader::parse_allowing(stream, allowed_rsv) {
        Ok(Some((header, used))) => {
            assert!((2..=MAX_HEADER_LEN).contains(&used));
            for n in 0..used {
                assert_eq!(
                    FrameHeader::parse_allowing(&stream[..n], allowed_rsv),
                    Ok(None)
                );
            }
            // (The parser takes a length in more bytes than needed; `format`
            // writes the shortest form, RFC 6455 §5.2.)
            let mut written = [0u8; MAX_HEADER_LEN];
            let n = header.format(&mut written);
            assert!(n <= used);
            assert_eq!(
                FrameHeader::parse_allowing(&written[..n], allowed_rsv),
                Ok(Some((header, n)))
            );
        }
        Ok(None) => assert!(stream.len() < MAX_HEADER_LEN),
        Err(_) => {}
    }

    // The decoder: the same messages and the same verdict, at once and in
    // pieces.
    let at_once = decode_messages(&[stream], role, max_message, deflate);
    let pieces = Pieces::new(u16::from_le_bytes([seed_low, seed_high])).cut(stream);
    let in_pieces = decode_messages(&pieces, role, max_message, deflate);
    assert_eq!(at_once, in_pieces);
    // The reader on top of it, large payloads read around its buffer.
    assert_eq!(at_once, read_messages(&pieces, role, max_message, deflate));
    assert_eq!(
        at_once,
        read_messages(&[stream], role, max_message, deflate)
    );
    for message in &at_once.0 {
        match message {
            Message::Text(text) => assert!(text.len() <= max_message),
            Message::Binary(bytes) => assert!(bytes.len() <= max_message),
            Message::Ping(payload) | Message::Pong(payload) => assert!(payload.len() <= 125),
            Message::Close(_) => {}
        }
    }
}

// ------------------------------------------------------------- handshake

/// The request head finder (fed in pieces) and parser, the upgrade checks
/// and the 101 response.
///
/// Input: two bytes of seed for the pieces, then the request.
pub fn handshake(data: &[u8]) {
    let Some(([seed_low, seed_high], request)) = settings::<2>(data) else {
        return;
    };
    let at_once = handshake::find_head_end(request, 0);
    if let Some(end) = at_once {
        assert!(end <= request.len());
    }
    // Read in pieces, scanning each byte about once, the end is the same.
    let mut pieces = Pieces::new(u16::from_le_bytes([seed_low, seed_high]));
    let (mut received, mut scanned, mut found) = (0, 0, None);
    while received < request.len() && found.is_none() {
        received = (received + pieces.next_len()).min(request.len());
        found = handshake::find_head_end(&request[..received], scanned);
        scanned = received;
    }
    assert_eq!(found, at_once);

    // The server parses a head once its end has arrived.
    let Some(end) = at_once else {
        return;
    };
    let Ok(parsed) = Request::parse(&request[..end]) else {
        return;
    };
    assert!(parsed.headers().len() <= handshake::MAX_HEADERS);
    for header in parsed.headers() {
        assert!(parsed.header_values(header.name).next().is_some());
        assert!(
            !header
                .value
                .contains(|c: char| c.is_ascii_control() && c != '\t')
        );
    }
    let _ = (parsed.path(), parsed.is_websocket_attempt());
    let _ = parsed.offers_protocol(room::SUBPROTOCOL);
    let _ = parsed.header_tokens("Connection").count();
    let Ok(upgrade) = parsed.validate_upgrade() else {
        return;
    };
    let agreement = deflate::negotiate(parsed.header_values("Sec-WebSocket-Extensions"));
    let extensions = agreement.map(|a| a.response_header());
    let response = handshake::response_101_with_extensions(
        upgrade.key,
        parsed
            .offers_protocol(room::SUBPROTOCOL)
            .then_some(room::SUBPROTOCOL),
        extensions.as_deref(),
    );
    // The response is one head: nothing the client sent can end it early
    // or add a line to it.
    let text = String::from_utf8(response).expect("the response is text");
    assert!(text.ends_with("\r\n\r\n"));
    assert_eq!(text.find("\r\n\r\n"), Some(text.len() - 4));
    assert!(!text.replace("\r\n", "").contains(['\r', '\n']));
}

// ------------------------------------------------------- extension offer

/// The `Sec-WebSocket-Extensions` parser and negotiation. Input: header
/// values separated by newlines.
pub fn extension_offer(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let values: Vec<&str> = text.split('\n').collect();
    for value in &values {
        for extension in extension::parse_extensions(value).into_iter().flatten() {
            assert!(!extension.name.is_empty());
        }
    }
    let agreement = deflate::negotiate(values.iter().copied());
    let full_window = |a: &deflate::Agreement| a.compress_window_bits() == 15;
    let full = deflate::negotiate_where(values.iter().copied(), full_window);
    if let Some(agreement) = agreement {
        let bits = agreement.compress_window_bits();
        assert!((deflate::MIN_WINDOW_BITS..=deflate::MAX_WINDOW_BITS).contains(&bits));
        // The answer is itself a valid element, naming the extension, and
        // offering it back is agreed to the same terms.
        let response = agreement.response_header();
        let parsed = extension::parse_extensions(&response);
        assert_eq!(parsed.len(), 1);
        let element = parsed[0].as_ref().expect("the answer parses");
        assert_eq!(element.name, extension::EXTENSION_NAME);
        assert_eq!(deflate::negotiate([&*response]), Some(agreement));
        if full_window(&agreement) {
            assert_eq!(full, Some(agreement));
        }
    } else {
        assert_eq!(full, None);
    }
}

// --------------------------------------------------------------- inflate

/// What the inflate target holds the output to.
pub const INFLATE_LIMIT: usize = 1 << 18;

/// The permessage-deflate inflater against zlib: both refuse, or both
/// accept with the same message. Input: a compressed payload.
pub fn inflate(data: &[u8]) {
    let ours = Inflater::new().inflate_message(data, INFLATE_LIMIT);
    match &ours {
        Ok(message) => assert!(message.len() <= INFLATE_LIMIT),
        Err(deflate::InflateError::TooBig { limit }) => assert_eq!(*limit, INFLATE_LIMIT),
        Err(deflate::InflateError::Corrupt(_)) => {}
    }
    let zlib = zlib_oracle::inflate(data, INFLATE_LIMIT);
    let describe = |verdict: Option<&Vec<u8>>| {
        verdict.map_or("refuses".into(), |m| format!("{} bytes", m.len()))
    };
    assert!(
        ours.as_ref().ok() == zlib.as_ref(),
        "ours: {} ({:?}), zlib: {}",
        describe(ours.as_ref().ok()),
        ours.as_ref().err(),
        describe(zlib.as_ref()),
    );
}

// ------------------------------------------------------------------ resp

/// What a RESP decoder made of a stream: its replies, then the error that
/// stopped it, if one did.
type Replies = (Vec<resp::Value>, Option<RespError>);

fn decode_replies(pieces: &[&[u8]], max_reply_bytes: usize) -> Replies {
    let mut decoder = resp::Decoder::new().with_max_reply_bytes(max_reply_bytes);
    let mut values = Vec::new();
    for piece in pieces {
        let fed = decoder.feed(piece);
        // Replies completed before an error are still handed out.
        while let Some(value) = decoder.next_value() {
            values.push(value);
        }
        if let Err(error) = fed {
            // A failed decoder stays failed.
            assert_eq!(decoder.feed(b"+OK\r\n"), Err(error));
            assert_eq!(decoder.next_value(), None);
            return (values, Some(error));
        }
    }
    (values, None)
}

/// The incremental RESP2 decoder (`resp::Decoder`), fed at once and in
/// random pieces: the same replies and the same verdict; `parse_reply`
/// agrees on the first reply; each reply encodes back to bytes that decode
/// to it.
///
/// Input: a byte choosing the decoder's reply size limit, two bytes of
/// seed for the pieces, then the stream.
pub fn resp(data: &[u8]) {
    let Some(([limit, seed_low, seed_high], stream)) = settings::<3>(data) else {
        return;
    };
    let max_reply_bytes = [resp::MAX_REPLY_BYTES, 16, 100, 1000][limit as usize % 4];
    let at_once = decode_replies(&[stream], max_reply_bytes);
    let pieces = Pieces::new(u16::from_le_bytes([seed_low, seed_high])).cut(stream);
    assert_eq!(at_once, decode_replies(&pieces, max_reply_bytes));
    if max_reply_bytes == resp::MAX_REPLY_BYTES {
        let first = match (at_once.0.first(), at_once.1) {
            (Some(value), _) => Ok(Some(value.clone())),
            (None, Some(error)) => Err(error),
            (None, None) => Ok(None),
        };
        let parsed = resp::parse_reply(stream).map(|parse| match parse {
            Parse::Complete { value, .. } => Some(value),
            Parse::Partial => None,
        });
        assert_eq!(parsed, first);
    }
    for value in &at_once.0 {
        let mut encoded = Vec::new();
        resp::encode_value(value, &mut encoded);
        assert_eq!(
            resp::parse_reply(&encoded),
            Ok(Parse::Complete {
                value: value.clone(),
                used: encoded.len()
            })
        );
    }
}

// ------------------------------------------------------------------ json

/// Writes `value` as JSON, with the crate's own string escaping.
fn write_json(value: &json::Value, out: &mut String) {
    match value {
        json::Value::Null => out.push_str("null"),
        json::Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        json::Value::Number(text) => out.push_str(text),
        json::Value::String(s) => json::push_string(out, s),
        json::Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(item, out);
            }
            out.push(']');
        }
        json::Value::Object(members) => {
            out.push('{');
            for (i, (key, item)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json::push_string(out, key);
                out.push(':');
                write_json(item, out);
            }
            out.push('}');
        }
    }
}

/// The JSON parser: what it accepts, written back out, parses to the same
/// value; any text, escaped as a string, parses back to that text.
/// Input: text (invalid UTF-8 replaced).
pub fn json(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Some(value) = json::parse(&text) {
        let mut written = String::new();
        write_json(&value, &mut written);
        assert_eq!(json::parse(&written), Some(value));
    }
    let mut quoted = String::new();
    json::push_string(&mut quoted, &text);
    assert_eq!(
        json::parse(&quoted),
        Some(json::Value::String(text.into_owned()))
    );
}

// ------------------------------------------------------------ room input

/// What a `wschat.v1` client types, through `parse_input` and the chat:
/// two v1 clients and a raw one take turns sending the input's lines
/// (room commands included, under small room limits). Every event the
/// chat sends a v1 client is one valid JSON value; no two clients hold
/// nicknames with the same key.
/// Input: lines of text (invalid UTF-8 replaced).
pub fn room_input(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let limits = Limits {
        history: 4,
        max_rooms_per_client: 3,
        max_rooms: 4,
        max_room_members: 3,
        room_history_bytes: 4096,
    };
    let mut room = Chat::new(limits, 1, Epoch::from_bits(1), Vec::new());
    let mut out = Vec::new();
    for (id, mode) in [(1, Mode::V1), (2, Mode::V1), (3, Mode::Raw)] {
        room.handle(
            0,
            Action::Join {
                id,
                mode,
                resume: None,
            },
            &mut out,
        );
    }
    for (n, line) in text.split('\n').enumerate() {
        match room::parse_input(line) {
            Input::Nick(nick) if room::validate_nick(nick).is_ok() => {
                assert!(nick.chars().all(|c| !room::is_invisible(c)));
                assert!(!room::nick_key(nick).is_empty());
            }
            Input::Say(said) | Input::Action(said) => assert!(!said.trim().is_empty()),
            _ => {}
        }
        let id = 1 + n as u64 % 3;
        room.handle(
            n as u64,
            Action::Text {
                id,
                text: line.to_owned(),
            },
            &mut out,
        );
    }
    room.handle(1000, Action::Leave { id: 1 }, &mut out);
    for output in &out {
        let event = match output {
            Output::Broadcast {
                mode: Mode::V1,
                payload: Payload::Text(text),
                ..
            }
            | Output::ToRoom {
                mode: Mode::V1,
                payload: Payload::Text(text),
                ..
            } => text.to_string(),
            Output::Reply { event, .. } => event.clone(),
            Output::Welcome { head, tail, .. } => format!("{head}{tail}"),
            Output::Said(event) => event.to_string(),
            _ => continue,
        };
        assert!(json::parse(&event).is_some(), "not JSON: {event}");
    }
    let keys: Vec<String> = room
        .kept_clients()
        .iter()
        .map(|client| room::nick_key(&client.nick))
        .collect();
    let mut unique = keys.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(keys.len(), unique.len(), "{keys:?}");
}
