//! From frames to messages (RFC 6455 §5.4–§5.6): fragmentation, control
//! frames between fragments, size limits and incremental UTF-8 checks.
//!
//! [`MessageDecoder`] is sans-I/O: it is handed whatever bytes have arrived,
//! unmasks them in place, and says how many it consumed and whether a
//! message is complete. [`MessageReader`] puts it on top of any `Read`.

use super::close::{CloseFrame, parse_close_payload};
use super::deflate::{InflateError, Inflater, max_compressed_len};
use super::error::ProtocolError;
use super::frame::{FrameHeader, OpCode};
use super::mask::apply_mask;
use super::utf8::Utf8Validator;
use std::fmt;
use std::io::{self, Read};

/// A complete message, or a control frame (which is a message of its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// `None` for a Close frame with no payload (reported as 1005).
    Close(Option<CloseFrame>),
}

/// Whose frames are being decoded: a server requires the client's frames to
/// be masked (§5.1); a client requires the server's not to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Decoding what a client sent (every frame must be masked).
    Server,
    /// Decoding what a server sent (no frame may be masked).
    Client,
}

#[derive(Debug)]
struct FrameInProgress {
    header: FrameHeader,
    /// Payload bytes still to come.
    remaining: u64,
    /// Payload bytes already seen: the masking key's phase.
    done: usize,
}

/// Turns a byte stream into messages, enforcing every frame-level rule.
///
/// ```
/// use wschat::protocol::message::{Message, MessageDecoder, Role};
///
/// // RFC 6455 §5.7: "Hel" then "lo", unmasked (so decoded in the client role).
/// let mut bytes = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
/// let mut decoder = MessageDecoder::new(Role::Client, 1024);
/// let (used, message) = decoder.decode(&mut bytes).unwrap();
/// assert_eq!(used, 9);
/// assert_eq!(message, Some(Message::Text("Hello".into())));
/// ```
#[derive(Debug)]
pub struct MessageDecoder {
    role: Role,
    max_message: usize,
    frame: Option<FrameInProgress>,
    /// Text or Binary while a data message is open (between its first
    /// frame and the frame with FIN).
    open: Option<OpCode>,
    data: Vec<u8>,
    utf8: Utf8Validator,
    control: Vec<u8>,
    /// Set once permessage-deflate is negotiated (RFC 7692): RSV1 on a
    /// message's first frame then means its payload is compressed.
    inflater: Option<Inflater>,
    /// The open message had RSV1 set: `data` holds compressed bytes.
    compressed: bool,
}

impl MessageDecoder {
    /// `max_message` bounds a data message's total payload; a frame that
    /// would take it over is refused with 1009 as soon as its header is read,
    /// before any of its payload is buffered.
    pub fn new(role: Role, max_message: usize) -> Self {
        MessageDecoder {
            role,
            max_message,
            frame: None,
            open: None,
            data: Vec::new(),
            utf8: Utf8Validator::new(),
            control: Vec::new(),
            inflater: None,
            compressed: false,
        }
    }

    /// Accepts compressed messages from here on: call it when the
    /// handshake negotiated permessage-deflate. Without it, RSV1 stays a
    /// protocol error (1002), as RFC 6455 §5.2 requires.
    pub fn enable_deflate(&mut self) {
        self.inflater = Some(Inflater::new());
    }

    pub fn deflate_enabled(&self) -> bool {
        self.inflater.is_some()
    }

    pub fn max_message(&self) -> usize {
        self.max_message
    }

    /// Consumes bytes from the front of `input` (unmasking them in place)
    /// until a message is complete or the input runs out. Returns how many
    /// bytes were consumed and the message, if one completed. Bytes not
    /// consumed (at most a partial frame header) must be passed again, with
    /// more after them.
    pub fn decode(&mut self, input: &mut [u8]) -> Result<(usize, Option<Message>), ProtocolError> {
        let mut pos = 0;
        loop {
            if self.frame.is_none() {
                // RFC 7692 §6: with the extension, RSV1 is its bit.
                let allowed_rsv = if self.inflater.is_some() { 0b100 } else { 0 };
                let Some((header, used)) = FrameHeader::parse_allowing(&input[pos..], allowed_rsv)?
                else {
                    return Ok((pos, None));
                };
                self.start_frame(header)?;
                pos += used;
                self.frame = Some(FrameInProgress {
                    header,
                    remaining: header.payload_len,
                    done: 0,
                });
            }
            let frame = self.frame.as_mut().expect("a frame is open");
            let available = (input.len() - pos) as u64;
            let take = frame.remaining.min(available) as usize;
            let chunk = &mut input[pos..pos + take];
            if let Some(key) = frame.header.mask {
                apply_mask(chunk, key, frame.done);
            }
            frame.remaining -= take as u64;
            frame.done += take;
            pos += take;
            let header = frame.header;
            let finished = frame.remaining == 0;

            if header.opcode.is_control() {
                self.control.extend_from_slice(chunk);
            } else {
                if self.open == Some(OpCode::Text) && !self.compressed {
                    // Fail fast (§8.1): check each piece as it arrives.
                    self.utf8
                        .feed(chunk)
                        .map_err(|_| ProtocolError::InvalidUtf8)?;
                }
                self.grow_data(chunk.len());
                self.data.extend_from_slice(chunk);
            }
            if !finished {
                return Ok((pos, None));
            }
            self.frame = None;
            if header.opcode.is_control() {
                return Ok((pos, Some(self.finish_control(header.opcode)?)));
            }
            if header.fin {
                return Ok((pos, Some(self.finish_data()?)));
            }
        }
    }

    /// Checks the rules that depend on what came before (§5.1, §5.4) and
    /// the size limit, before any payload is read.
    fn start_frame(&mut self, header: FrameHeader) -> Result<(), ProtocolError> {
        match (self.role, header.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedFrame),
            // A client must fail on a masked server frame (§5.1).
            (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
            _ => {}
        }
        // RFC 7692 §6: RSV1 only on the first frame of a data message.
        let rsv1 = header.rsv & 0b100 != 0;
        if rsv1 && (header.opcode.is_control() || header.opcode == OpCode::Continuation) {
            return Err(ProtocolError::MisplacedCompressedBit);
        }
        match header.opcode {
            OpCode::Continuation if self.open.is_none() => {
                return Err(ProtocolError::UnexpectedContinuation);
            }
            OpCode::Text | OpCode::Binary if self.open.is_some() => {
                return Err(ProtocolError::ExpectedContinuation);
            }
            OpCode::Text | OpCode::Binary => {
                self.open = Some(header.opcode);
                self.utf8 = Utf8Validator::new();
                self.compressed = rsv1;
            }
            _ => {}
        }
        if !header.opcode.is_control() {
            // A compressed message is checked again, inflated; its
            // compressed form may be larger than the message.
            let limit = if self.compressed {
                max_compressed_len(self.max_message)
            } else {
                self.max_message
            };
            let total = self.data.len() as u64 + header.payload_len;
            if total > limit as u64 {
                return Err(ProtocolError::MessageTooBig {
                    limit: self.max_message,
                });
            }
            if header.fin && self.data.is_empty() {
                // A whole message in one frame, of a length now known to
                // be within the limit: one allocation, where growing as
                // the bytes come would copy them about once more.
                self.data.reserve_exact(header.payload_len as usize);
            }
        }
        Ok(())
    }

    /// Makes room for `more` payload bytes the way `Vec` would (doubling,
    /// so appends stay amortised O(1)), but never past `max_message`:
    /// left to itself, `Vec` may double a buffer to almost twice the
    /// limit, and a message of `max_message` bytes would then hold up to
    /// twice that in memory.
    fn grow_data(&mut self, more: usize) {
        let needed = self.data.len() + more;
        if needed > self.data.capacity() {
            let target = (self.data.capacity() * 2).min(self.max_message).max(needed);
            self.data.reserve_exact(target - self.data.len());
        }
    }

    /// How many payload bytes are still due in the frame being read, if
    /// it is a data frame and at least [`MIN_DIRECT_READ`] of them are: a
    /// reader may then put them straight into the message with
    /// [`MessageDecoder::read_payload`].
    fn direct_payload_due(&self) -> Option<usize> {
        let frame = self.frame.as_ref()?;
        let due = frame.remaining as usize;
        (!frame.header.opcode.is_control() && due >= MIN_DIRECT_READ).then_some(due)
    }

    /// Reads the rest of the frame being read, as reported by
    /// [`MessageDecoder::direct_payload_due`], from `source` straight into
    /// the message: the kernel copies the bytes to where the message keeps
    /// them, and they are unmasked and checked there, with no read buffer
    /// in between. Returns the message if this frame ended it.
    ///
    /// What arrived before an error (a read timeout, the stream's end) is
    /// kept, unmasked and checked as if it came through
    /// [`MessageDecoder::decode`]; a later call, or `decode`, continues
    /// after it.
    fn read_payload<R: Read>(&mut self, source: R) -> Result<Option<Message>, ReadError> {
        let due = self.direct_payload_due().unwrap_or(0);
        self.grow_data(due);
        let from = self.data.len();
        // `read_to_end` hands the socket the vector's spare capacity, so
        // no byte is zeroed or copied first; `take` stops it at the frame's
        // end. Capacity for all of `due` is reserved, so it never grows.
        let read = source.take(due as u64).read_to_end(&mut self.data);
        let got = self.data.len() - from;
        let message = self.payload_arrived(from)?;
        match read {
            Err(e) => Err(ReadError::Io(e)),
            Ok(_) if got < due => Err(ReadError::Eof),
            Ok(_) => Ok(message),
        }
    }

    /// Unmasks and checks the payload bytes of the frame being read that
    /// were put at `data[from..]`, and finishes the frame (and the message,
    /// if the frame has FIN) when they were the last.
    fn payload_arrived(&mut self, from: usize) -> Result<Option<Message>, ProtocolError> {
        let Some(frame) = self.frame.as_mut() else {
            return Ok(None);
        };
        let chunk = &mut self.data[from..];
        if let Some(key) = frame.header.mask {
            apply_mask(chunk, key, frame.done);
        }
        frame.remaining -= chunk.len() as u64;
        frame.done += chunk.len();
        if self.open == Some(OpCode::Text) && !self.compressed {
            self.utf8
                .feed(chunk)
                .map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        if frame.remaining > 0 {
            return Ok(None);
        }
        let fin = frame.header.fin;
        self.frame = None;
        if fin {
            return self.finish_data().map(Some);
        }
        Ok(None)
    }

    fn finish_control(&mut self, opcode: OpCode) -> Result<Message, ProtocolError> {
        let payload = std::mem::take(&mut self.control);
        Ok(match opcode {
            OpCode::Ping => Message::Ping(payload),
            OpCode::Pong => Message::Pong(payload),
            _ => Message::Close(parse_close_payload(&payload)?),
        })
    }

    fn finish_data(&mut self) -> Result<Message, ProtocolError> {
        let mut data = std::mem::take(&mut self.data);
        if std::mem::take(&mut self.compressed) {
            // RFC 7692 §6.2: the fragments' payloads joined are one
            // compressed stream; `max_message` bounds the inflated size
            // too, and is checked while inflating.
            let inflater = self
                .inflater
                .as_mut()
                .expect("RSV1 is only allowed with deflate");
            data = inflater
                .inflate_message(&data, self.max_message)
                .map_err(|e| match e {
                    InflateError::TooBig { limit } => ProtocolError::MessageTooBig { limit },
                    InflateError::Corrupt(why) => ProtocolError::InvalidCompressedData(why),
                })?;
            if self.open == Some(OpCode::Text) {
                // Checked whole: the pieces that arrived were compressed.
                self.utf8
                    .feed(&data)
                    .map_err(|_| ProtocolError::InvalidUtf8)?;
            }
        }
        match self.open.take() {
            Some(OpCode::Text) => {
                self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
                // Already validated piece by piece; this second check is a
                // cheap vectorised pass that keeps this module free of `unsafe`.
                String::from_utf8(data)
                    .map(Message::Text)
                    .map_err(|_| ProtocolError::InvalidUtf8)
            }
            _ => Ok(Message::Binary(data)),
        }
    }
}

/// Why [`MessageReader::read_message`] returned no message.
#[derive(Debug)]
pub enum ReadError {
    /// The peer broke a rule; answer with a Close carrying its code.
    Protocol(ProtocolError),
    /// The stream ended (TCP closed without a Close frame: 1006).
    Eof,
    /// The underlying `Read` failed, or timed out (`WouldBlock`/`TimedOut`;
    /// the reader may be called again and continues where it stopped).
    Io(io::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Protocol(e) => write!(f, "protocol error: {e}"),
            ReadError::Eof => f.write_str("connection closed by peer"),
            ReadError::Io(e) => write!(f, "i/o error: {e}"),
        }
    }
}

impl std::error::Error for ReadError {}

impl From<ProtocolError> for ReadError {
    fn from(e: ProtocolError) -> Self {
        ReadError::Protocol(e)
    }
}

/// The read buffer, taken when there is input to read, starts small and
/// doubles up to [`MAX_READ_BUFFER`] while reads keep filling it.
pub const INITIAL_READ_BUFFER: usize = 2 * 1024;
/// Large enough that a burst of frames is parsed many per `read` call.
pub const MAX_READ_BUFFER: usize = 64 * 1024;

/// The smallest rest of a data frame that [`MessageReader`] reads straight
/// into the message rather than through its read buffer. Below it, the
/// read buffer wins: one read call may bring several frames, where a read
/// that stops at a frame's end needs another call for the next header.
/// Above it, the copy out of the read buffer costs more than that call.
pub const MIN_DIRECT_READ: usize = 16 * 1024;

/// Reads messages from any `Read`: pulls large chunks, decodes as many
/// frames from each as it holds, and keeps partial frames between calls.
/// The payload of a large frame (at least [`MIN_DIRECT_READ`] still to
/// come once its header is read) goes straight into the message instead.
///
/// ```
/// use wschat::protocol::message::{Message, MessageReader, Role};
///
/// // A masked "Hello" (RFC 6455 §5.7) from a slice standing in for a socket.
/// let bytes: &[u8] = &[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
/// let mut reader = MessageReader::new(bytes, Role::Server, 1 << 20);
/// assert_eq!(reader.read_message().unwrap(), Message::Text("Hello".into()));
/// ```
pub struct MessageReader<R> {
    inner: R,
    decoder: MessageDecoder,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// The last read filled the buffer: more is waiting, so the next read
    /// gets a bigger one, unless that "more" was a large frame's payload,
    /// which goes straight into the message instead.
    read_was_full: bool,
}

impl<R: Read> MessageReader<R> {
    pub fn new(inner: R, role: Role, max_message: usize) -> Self {
        Self::with_buffered(inner, role, max_message, &[])
    }

    /// Like `new`, with bytes that were already read from `inner` (for
    /// instance a first frame that arrived in the same packet as the
    /// handshake, §4.1: the client may send as soon as it has the 101).
    pub fn with_buffered(inner: R, role: Role, max_message: usize, buffered: &[u8]) -> Self {
        MessageReader {
            inner,
            decoder: MessageDecoder::new(role, max_message),
            buf: buffered.to_vec(),
            start: 0,
            end: buffered.len(),
            read_was_full: false,
        }
    }

    /// See [`MessageDecoder::enable_deflate`].
    pub fn enable_deflate(&mut self) {
        self.decoder.enable_deflate();
    }

    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Blocks until a message (or control frame) is complete.
    pub fn read_message(&mut self) -> Result<Message, ReadError> {
        loop {
            if self.start < self.end {
                let (used, message) = self.decoder.decode(&mut self.buf[self.start..self.end])?;
                self.start += used;
                if let Some(message) = message {
                    return Ok(message);
                }
            }
            // Everything buffered is decoded (what is left is at most part
            // of a header), so a frame's payload comes next if any does.
            if self.start == self.end && self.decoder.direct_payload_due().is_some() {
                self.read_was_full = false;
                if let Some(message) = self.decoder.read_payload(&mut self.inner)? {
                    return Ok(message);
                }
                continue;
            }
            self.fill()?;
        }
    }

    /// Reads more bytes. Everything before `start` has been consumed, and
    /// what is left after it is at most a partial header (`decode` takes
    /// all payload bytes it is given), so compaction moves under 14 bytes.
    fn fill(&mut self) -> Result<(), ReadError> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() < INITIAL_READ_BUFFER {
            self.buf.resize(INITIAL_READ_BUFFER, 0);
        } else if (self.read_was_full || self.end == self.buf.len())
            && self.buf.len() < MAX_READ_BUFFER
        {
            // A full read means more is waiting: read bigger this time.
            self.buf.resize(self.buf.len() * 2, 0);
        }
        loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => return Err(ReadError::Eof),
                Ok(n) => {
                    self.read_was_full = self.end + n == self.buf.len();
                    self.end += n;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if self.start == self.end {
                        self.shrink();
                    }
                    return Err(ReadError::Io(e));
                }
            }
        }
    }

    /// Gives the buffer back: called when a read timed out with nothing
    /// buffered, i.e. when the connection is idle. Thousands of idle
    /// connections then hold no read buffer at all (see
    /// [`MessageReader::holds_buffer`]).
    fn shrink(&mut self) {
        self.buf = Vec::new();
        self.start = 0;
        self.end = 0;
    }

    /// Whether it holds a read buffer. It holds none before its first
    /// read (unless bytes came with it) and after an idle timeout; a
    /// caller that wants an idle connection to cost no buffer waits for
    /// input (e.g. `TcpStream::peek`) before [`MessageReader::read_message`],
    /// which then takes one.
    pub fn holds_buffer(&self) -> bool {
        self.buf.capacity() > 0
    }

    /// Gives the buffer back now if everything in it has been decoded:
    /// for a caller that knows the connection has gone quiet (a Pong, the
    /// one message an idle client sends, answers a ping sent after a
    /// silent interval) and would otherwise hold the buffer until the next
    /// read times out.
    pub fn release_if_drained(&mut self) {
        if self.start == self.end {
            self.shrink();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::close::CloseCode;
    use crate::protocol::frame::encode_frame_into;

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// `len` bytes with nothing to match (xorshift64): compressed, they
    /// are larger than they were.
    fn noise(len: usize) -> Vec<u8> {
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect()
    }

    fn masked(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame_into(&mut out, fin, opcode, payload, Some(KEY));
        out
    }

    /// Feeds `bytes` in pieces of `piece` bytes, collecting every message.
    fn decode_in_pieces(bytes: &[u8], piece: usize) -> Result<Vec<Message>, ProtocolError> {
        let mut decoder = MessageDecoder::new(Role::Server, 1 << 20);
        let mut pending: Vec<u8> = Vec::new();
        let mut messages = Vec::new();
        for chunk in bytes.chunks(piece) {
            pending.extend_from_slice(chunk);
            loop {
                let (used, message) = decoder.decode(&mut pending)?;
                pending.drain(..used);
                match message {
                    Some(m) => messages.push(m),
                    None => break,
                }
            }
        }
        Ok(messages)
    }

    #[test]
    fn rfc_5_7_examples_decode_whole_and_byte_by_byte() {
        let hello_masked = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let ping_masked = {
            let mut v = vec![0x89, 0x85, 0x37, 0xfa, 0x21, 0x3d];
            let mut p = *b"Hello";
            apply_mask(&mut p, KEY, 0);
            v.extend_from_slice(&p);
            v
        };
        let fragments = [
            masked(false, OpCode::Text, b"Hel"),
            masked(true, OpCode::Continuation, b"lo"),
        ]
        .concat();
        let big256 = masked(true, OpCode::Binary, &[7; 256]);
        let big64k = masked(true, OpCode::Binary, &[9; 65536]);
        let cases: Vec<(Vec<u8>, Message)> = vec![
            (hello_masked.to_vec(), Message::Text("Hello".into())),
            (ping_masked, Message::Ping(b"Hello".to_vec())),
            (fragments, Message::Text("Hello".into())),
            (big256, Message::Binary(vec![7; 256])),
            (big64k, Message::Binary(vec![9; 65536])),
        ];
        for (bytes, expected) in cases {
            for piece in [bytes.len(), 1, 2, 3, 7] {
                assert_eq!(
                    decode_in_pieces(&bytes, piece).unwrap(),
                    vec![expected.clone()],
                    "piece {piece}"
                );
            }
        }
    }

    #[test]
    fn control_frames_between_fragments() {
        let bytes = [
            masked(false, OpCode::Text, b"frag"),
            masked(true, OpCode::Ping, b"p"),
            masked(false, OpCode::Continuation, b"men"),
            masked(true, OpCode::Pong, b""),
            masked(true, OpCode::Continuation, b"ted"),
        ]
        .concat();
        for piece in [bytes.len(), 1, 5] {
            assert_eq!(
                decode_in_pieces(&bytes, piece).unwrap(),
                vec![
                    Message::Ping(b"p".to_vec()),
                    Message::Pong(vec![]),
                    Message::Text("fragmented".into())
                ]
            );
        }
    }

    #[test]
    fn sequencing_rules() {
        let unmasked = encode_frame_into_vec(true, OpCode::Text, b"x", None);
        assert_eq!(
            decode_in_pieces(&unmasked, 64),
            Err(ProtocolError::UnmaskedFrame)
        );
        // The other side of §5.1: a client refuses a masked server frame.
        let mut client = MessageDecoder::new(Role::Client, 64);
        let mut masked_by_server = masked(true, OpCode::Text, b"x");
        assert_eq!(
            client.decode(&mut masked_by_server).map(|_| ()),
            Err(ProtocolError::MaskedFrame)
        );
        let orphan = masked(true, OpCode::Continuation, b"x");
        assert_eq!(
            decode_in_pieces(&orphan, 64),
            Err(ProtocolError::UnexpectedContinuation)
        );
        let nested = [
            masked(false, OpCode::Text, b"a"),
            masked(true, OpCode::Binary, b"b"),
        ]
        .concat();
        assert_eq!(
            decode_in_pieces(&nested, 64),
            Err(ProtocolError::ExpectedContinuation)
        );
    }

    fn encode_frame_into_vec(
        fin: bool,
        opcode: OpCode,
        payload: &[u8],
        mask: Option<[u8; 4]>,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame_into(&mut out, fin, opcode, payload, mask);
        out
    }

    #[test]
    fn too_big_is_refused_from_the_header_alone() {
        let mut decoder = MessageDecoder::new(Role::Server, 100);
        // Only the header of a 101-byte frame: refused before any payload.
        let mut header = masked(true, OpCode::Binary, &[0; 101]);
        header.truncate(6);
        assert_eq!(
            decoder.decode(&mut header),
            Err(ProtocolError::MessageTooBig { limit: 100 })
        );
        // A 2^63-1 byte claim is refused the same way, nothing allocated.
        let mut decoder = MessageDecoder::new(Role::Server, 100);
        let mut huge = vec![
            0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4,
        ];
        assert_eq!(
            decoder.decode(&mut huge),
            Err(ProtocolError::MessageTooBig { limit: 100 })
        );
        // Fragments count together.
        let parts = [
            masked(false, OpCode::Binary, &[0; 60]),
            masked(true, OpCode::Continuation, &[0; 41]),
        ]
        .concat();
        let mut decoder = MessageDecoder::new(Role::Server, 100);
        let mut parts = parts;
        assert_eq!(
            decoder.decode(&mut parts),
            Err(ProtocolError::MessageTooBig { limit: 100 })
        );
    }

    #[test]
    fn a_message_never_holds_more_memory_than_the_limit() {
        // 100 000 bytes arriving in 2034-byte reads: plain `Vec` growth
        // would end at a capacity far above the limit (up to twice it).
        let limit = 100_000;
        let bytes = [
            masked(false, OpCode::Binary, &[1; 60_000]),
            masked(true, OpCode::Continuation, &[2; 40_000]),
        ]
        .concat();
        let mut decoder = MessageDecoder::new(Role::Server, limit);
        let mut message = None;
        for chunk in bytes.chunks(2034) {
            let mut piece = chunk.to_vec();
            let mut at = 0;
            while at < piece.len() {
                let (used, m) = decoder.decode(&mut piece[at..]).unwrap();
                at += used;
                assert!(
                    decoder.data.capacity() <= limit,
                    "{}",
                    decoder.data.capacity()
                );
                if m.is_some() {
                    message = m;
                }
                if used == 0 {
                    break;
                }
            }
        }
        let Some(Message::Binary(data)) = message else {
            panic!("no message")
        };
        assert_eq!(data.len(), limit);
        assert!(data.capacity() <= limit, "{}", data.capacity());
    }

    #[test]
    fn invalid_utf8_fails_before_the_final_fragment() {
        let mut decoder = MessageDecoder::new(Role::Server, 1 << 20);
        let mut first = masked(false, OpCode::Text, "κόσμε".as_bytes());
        assert_eq!(decoder.decode(&mut first).unwrap(), (first.len(), None));
        let mut second = masked(false, OpCode::Continuation, &[0xf4, 0x90, 0x80, 0x80]);
        assert_eq!(decoder.decode(&mut second), Err(ProtocolError::InvalidUtf8));
    }

    #[test]
    fn close_payloads() {
        let close = masked(true, OpCode::Close, &[0x03, 0xe8, b'o', b'k']);
        assert_eq!(
            decode_in_pieces(&close, 1).unwrap(),
            vec![Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "ok".into()
            }))]
        );
        assert_eq!(
            decode_in_pieces(&masked(true, OpCode::Close, &[]), 1).unwrap(),
            vec![Message::Close(None)]
        );
        assert_eq!(
            decode_in_pieces(&masked(true, OpCode::Close, &[0x03]), 1),
            Err(ProtocolError::InvalidClosePayload)
        );
    }

    /// A masked frame with RSV1 set, as a client sends a compressed one.
    fn masked_rsv1(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut out = masked(fin, opcode, payload);
        out[0] |= 0x40;
        out
    }

    fn deflate_decoder() -> MessageDecoder {
        let mut decoder = MessageDecoder::new(Role::Server, 1 << 20);
        decoder.enable_deflate();
        decoder
    }

    #[test]
    fn rsv1_marks_a_compressed_message_only_with_deflate() {
        // RFC 7692 §7.2.3.1: "Hello", compressed.
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        let mut frame = masked_rsv1(true, OpCode::Text, &hello);
        assert_eq!(
            deflate_decoder().decode(&mut frame.clone()).unwrap(),
            (frame.len(), Some(Message::Text("Hello".into())))
        );
        // Without the extension, RSV1 is a reserved bit (RFC 6455 §5.2).
        let mut plain = MessageDecoder::new(Role::Server, 1 << 20);
        assert_eq!(
            plain.decode(&mut frame),
            Err(ProtocolError::ReservedBits(4))
        );
        // With it, an uncompressed message still decodes as before.
        let mut text = masked(true, OpCode::Text, b"Hello");
        assert_eq!(
            deflate_decoder().decode(&mut text).unwrap().1,
            Some(Message::Text("Hello".into()))
        );
    }

    #[test]
    fn compressed_fragments_are_one_stream() {
        // RFC 7692 §7.2.3.1's bytes split over two frames (§6.2): RSV1 on
        // the first only.
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        let mut bytes = masked_rsv1(false, OpCode::Binary, &hello[..3]);
        bytes.extend(masked(true, OpCode::Continuation, &hello[3..]));
        let mut decoder = deflate_decoder();
        let (used, message) = decoder.decode(&mut bytes).unwrap();
        assert_eq!(
            (used, message),
            (bytes.len(), Some(Message::Binary(b"Hello".to_vec())))
        );
    }

    #[test]
    fn rsv1_on_control_or_continuation_frames_is_1002() {
        let mut ping = masked_rsv1(true, OpCode::Ping, b"");
        let err = deflate_decoder().decode(&mut ping).unwrap_err();
        assert_eq!(err, ProtocolError::MisplacedCompressedBit);
        assert_eq!(err.close_code(), CloseCode::Protocol);
        let mut bytes = masked(false, OpCode::Text, b"He");
        bytes.extend(masked_rsv1(true, OpCode::Continuation, b"llo"));
        assert_eq!(
            deflate_decoder().decode(&mut bytes),
            Err(ProtocolError::MisplacedCompressedBit)
        );
        // RSV2 and RSV3 stay reserved.
        let mut rsv2 = masked(true, OpCode::Text, b"x");
        rsv2[0] |= 0x20;
        assert_eq!(
            deflate_decoder().decode(&mut rsv2),
            Err(ProtocolError::ReservedBits(2))
        );
    }

    #[test]
    fn bad_compressed_payloads_are_1007_and_big_ones_1009() {
        let mut bad = masked_rsv1(true, OpCode::Binary, &[0xff, 0xff]);
        let err = deflate_decoder().decode(&mut bad).unwrap_err();
        assert!(
            matches!(err, ProtocolError::InvalidCompressedData(_)),
            "{err:?}"
        );
        assert_eq!(err.close_code(), CloseCode::InvalidPayload);

        let big = crate::protocol::deflate::compress_message(&[b'a'; 5000]);
        let mut frame = masked_rsv1(true, OpCode::Binary, &big);
        let mut decoder = MessageDecoder::new(Role::Server, 4096);
        decoder.enable_deflate();
        let err = decoder.decode(&mut frame).unwrap_err();
        assert_eq!(err, ProtocolError::MessageTooBig { limit: 4096 });
        assert_eq!(err.close_code(), CloseCode::TooBig);

        // A message of exactly the limit that does not compress is larger
        // compressed, and still accepted; past the compressed bound, the
        // header alone is refused.
        let noise = noise(4096);
        let stored = crate::protocol::deflate::compress_message(&noise);
        assert!(stored.len() > 4096);
        let mut frame = masked_rsv1(true, OpCode::Binary, &stored);
        let mut decoder = MessageDecoder::new(Role::Server, 4096);
        decoder.enable_deflate();
        assert_eq!(
            decoder.decode(&mut frame).unwrap().1,
            Some(Message::Binary(noise))
        );
        let bound = crate::protocol::deflate::max_compressed_len(4096);
        let mut frame = masked_rsv1(true, OpCode::Binary, &vec![0; bound + 1]);
        let mut decoder = MessageDecoder::new(Role::Server, 4096);
        decoder.enable_deflate();
        assert_eq!(
            decoder.decode(&mut frame[..8]),
            Err(ProtocolError::MessageTooBig { limit: 4096 })
        );

        // Compressed bytes that inflate to invalid UTF-8 in a text message.
        let latin1 = crate::protocol::deflate::compress_message(&[0xe9, 0x74, 0xe9]);
        let mut frame = masked_rsv1(true, OpCode::Text, &latin1);
        assert_eq!(
            deflate_decoder().decode(&mut frame),
            Err(ProtocolError::InvalidUtf8)
        );
    }

    #[test]
    fn an_idle_reader_holds_no_buffer() {
        /// Reads `bytes` once, then times out.
        struct Then<'a>(Option<&'a [u8]>);
        impl Read for Then<'_> {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                match self.0.take() {
                    Some(bytes) => (&*bytes).read(out),
                    None => Err(io::ErrorKind::WouldBlock.into()),
                }
            }
        }
        let frame = masked(true, OpCode::Text, b"hi");
        let mut reader = MessageReader::new(Then(Some(&frame)), Role::Server, 1 << 20);
        assert!(!reader.holds_buffer(), "a buffer before the first byte");
        assert_eq!(reader.read_message().unwrap(), Message::Text("hi".into()));
        assert!(reader.holds_buffer());
        assert!(matches!(reader.read_message(), Err(ReadError::Io(_))));
        assert!(!reader.holds_buffer(), "an idle reader kept its buffer");
    }

    #[test]
    fn a_drained_buffer_is_released_and_a_partial_frame_kept() {
        let mut bytes = masked(true, OpCode::Pong, b"");
        let whole = bytes.len();
        bytes.extend_from_slice(&masked(true, OpCode::Text, b"next")[..3]);
        let mut reader = MessageReader::new(&bytes[..whole], Role::Server, 1 << 20);
        assert_eq!(reader.read_message().unwrap(), Message::Pong(vec![]));
        assert!(reader.holds_buffer());
        reader.release_if_drained();
        assert!(!reader.holds_buffer(), "a drained buffer was kept");

        let mut reader = MessageReader::new(&bytes[..], Role::Server, 1 << 20);
        assert_eq!(reader.read_message().unwrap(), Message::Pong(vec![]));
        reader.release_if_drained();
        assert!(
            reader.holds_buffer(),
            "a partial frame's bytes were dropped"
        );
    }

    #[test]
    fn reader_over_a_slice_reads_many_frames_and_reports_eof() {
        let mut bytes = Vec::new();
        for i in 0..100u32 {
            bytes.extend(masked(true, OpCode::Text, i.to_string().as_bytes()));
        }
        let mut reader = MessageReader::new(&bytes[..], Role::Server, 1024);
        for i in 0..100u32 {
            assert_eq!(reader.read_message().unwrap(), Message::Text(i.to_string()));
        }
        assert!(matches!(reader.read_message(), Err(ReadError::Eof)));
    }

    /// A socket stand-in: hands out `bytes` at most `piece` at a time and,
    /// unless `piece` is `usize::MAX`, times out (`WouldBlock`) on every
    /// third call, as a read timeout would.
    struct Trickle<'a> {
        bytes: &'a [u8],
        piece: usize,
        calls: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            self.calls += 1;
            if self.piece != usize::MAX && self.calls.is_multiple_of(3) {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = out.len().min(self.piece).min(self.bytes.len());
            out[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    /// Reads every message, retrying after the timeouts, until the end.
    fn read_all(reader: &mut MessageReader<Trickle<'_>>) -> (Vec<Message>, ReadError) {
        let mut messages = Vec::new();
        loop {
            match reader.read_message() {
                Ok(message) => messages.push(message),
                Err(ReadError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(end) => return (messages, end),
            }
        }
    }

    /// Text of `len` bytes with two- and three-byte characters, so that
    /// pieces split characters.
    fn long_text(len: usize) -> String {
        let mut text = String::new();
        while text.len() < len {
            text.push_str("a\u{e9}\u{20ac}b");
        }
        text
    }

    #[test]
    fn a_large_frame_goes_into_the_message_not_the_read_buffer() {
        let text = long_text(300_000);
        let mut bytes = masked(true, OpCode::Text, text.as_bytes());
        bytes.extend(masked(true, OpCode::Text, b"after"));
        for piece in [7_001, usize::MAX] {
            let source = Trickle {
                bytes: &bytes,
                piece,
                calls: 0,
            };
            let mut reader = MessageReader::new(source, Role::Server, 1 << 20);
            let (messages, end) = read_all(&mut reader);
            assert_eq!(
                messages,
                vec![Message::Text(text.clone()), Message::Text("after".into())]
            );
            assert!(matches!(end, ReadError::Eof));
            if piece == usize::MAX {
                // The payload did not pass through the read buffer: with
                // every read filled, 300 KB through it would have grown
                // it to its largest.
                assert!(reader.buf.len() < MAX_READ_BUFFER, "{}", reader.buf.len());
            }
        }
    }

    #[test]
    fn large_frames_one_after_another_keep_the_read_buffer_small() {
        let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut bytes = Vec::new();
        for _ in 0..8 {
            bytes.extend(masked(true, OpCode::Binary, &payload));
        }
        let source = Trickle {
            bytes: &bytes,
            piece: usize::MAX,
            calls: 0,
        };
        let mut reader = MessageReader::new(source, Role::Server, 1 << 20);
        let (messages, end) = read_all(&mut reader);
        assert_eq!(messages, vec![Message::Binary(payload); 8]);
        assert!(matches!(end, ReadError::Eof));
        // Each frame's first read filled the buffer, but what waited was
        // that frame's payload, read into the message: no reason to grow.
        assert_eq!(reader.buf.len(), INITIAL_READ_BUFFER);

        // Whereas a burst of small frames grows it: each full read
        // doubles the next, so many frames come per read.
        let mut bytes = Vec::new();
        for i in 0..10_000u32 {
            bytes.extend(masked(true, OpCode::Text, i.to_string().as_bytes()));
        }
        let source = Trickle {
            bytes: &bytes,
            piece: usize::MAX,
            calls: 0,
        };
        let mut reader = MessageReader::new(source, Role::Server, 1 << 20);
        let (messages, _) = read_all(&mut reader);
        assert_eq!(messages.len(), 10_000);
        assert_eq!(reader.buf.len(), MAX_READ_BUFFER);
        assert!(reader.inner.calls < 10, "{} reads", reader.inner.calls);
    }

    #[test]
    fn large_fragments_with_a_ping_between_are_one_message() {
        let text = long_text(100_000);
        let (first, second) = text.as_bytes().split_at(50_001); // inside a character
        let mut bytes = masked(false, OpCode::Text, first);
        bytes.extend(masked(true, OpCode::Ping, b"p"));
        bytes.extend(masked(true, OpCode::Continuation, second));
        let big_binary: Vec<u8> = (0..70_000u32).map(|i| (i * 7) as u8).collect();
        bytes.extend(masked(true, OpCode::Binary, &big_binary));
        let source = Trickle {
            bytes: &bytes,
            piece: 65_536,
            calls: 0,
        };
        let mut reader = MessageReader::new(source, Role::Server, 1 << 20);
        let (messages, end) = read_all(&mut reader);
        assert_eq!(
            messages,
            vec![
                Message::Ping(b"p".to_vec()),
                Message::Text(text),
                Message::Binary(big_binary)
            ]
        );
        assert!(matches!(end, ReadError::Eof));
    }

    #[test]
    fn a_large_frame_cut_short_or_invalid_is_refused() {
        let text = long_text(100_000);
        let bytes = masked(true, OpCode::Text, text.as_bytes());
        let cut = Trickle {
            bytes: &bytes[..bytes.len() - 1],
            piece: 9_000,
            calls: 0,
        };
        let (messages, end) = read_all(&mut MessageReader::new(cut, Role::Server, 1 << 20));
        assert!(messages.is_empty());
        assert!(matches!(end, ReadError::Eof));

        let mut bad = text.into_bytes();
        bad[80_000] = 0xff;
        let bytes = masked(true, OpCode::Text, &bad);
        let source = Trickle {
            bytes: &bytes,
            piece: 9_000,
            calls: 0,
        };
        let (_, end) = read_all(&mut MessageReader::new(source, Role::Server, 1 << 20));
        assert!(matches!(
            end,
            ReadError::Protocol(ProtocolError::InvalidUtf8)
        ));
    }

    #[test]
    fn a_large_compressed_message_is_read_whole_then_inflated() {
        let noise = noise(200_000);
        let compressed = crate::protocol::deflate::compress_message(&noise);
        assert!(compressed.len() > MIN_DIRECT_READ);
        let bytes = masked_rsv1(true, OpCode::Binary, &compressed);
        let source = Trickle {
            bytes: &bytes,
            piece: 5_000,
            calls: 0,
        };
        let mut reader = MessageReader::new(source, Role::Server, 1 << 20);
        reader.enable_deflate();
        let (messages, end) = read_all(&mut reader);
        assert_eq!(messages, vec![Message::Binary(noise)]);
        assert!(matches!(end, ReadError::Eof));
    }
}
