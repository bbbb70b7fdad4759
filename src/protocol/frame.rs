//! Frames: the header layout, its three length forms, and server-side
//! encoding (RFC 6455 §5.2).
//!
//! ```text
//!   0                   1                   2                   3
//!   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//!  +-+-+-+-+-------+-+-------------+-------------------------------+
//!  |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//!  |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//!  |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//!  | |1|2|3|       |K|             |                               |
//!  +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//!  |     Extended payload length continued, if payload len == 127  |
//!  + - - - - - - - - - - - - - - - +-------------------------------+
//!  |                               |Masking-key, if MASK set to 1  |
//!  +-------------------------------+-------------------------------+
//!  | Masking-key (continued)       |          Payload Data         |
//!  +-------------------------------- - - - - - - - - - - - - - - - +
//! ```

use super::error::ProtocolError;
use super::mask::apply_mask;

/// The longest header: 2 bytes + 8 of extended length + 4 of masking key.
pub const MAX_HEADER_LEN: usize = 14;
/// Control frames carry at most this many payload bytes (§5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;
/// RSV1 in [`FrameHeader::rsv`]: permessage-deflate's "compressed" bit
/// (RFC 7692 §6).
pub const RSV1: u8 = 0b100;

/// The frame types of §5.2 (and §11.8's registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    /// Decodes the low four bits of the first header byte; reserved opcodes
    /// (3–7 data, 0xB–0xF control) are an error since no extension defines them.
    pub fn from_u8(bits: u8) -> Result<OpCode, ProtocolError> {
        match bits {
            0x0 => Ok(OpCode::Continuation),
            0x1 => Ok(OpCode::Text),
            0x2 => Ok(OpCode::Binary),
            0x8 => Ok(OpCode::Close),
            0x9 => Ok(OpCode::Ping),
            0xA => Ok(OpCode::Pong),
            other => Err(ProtocolError::ReservedOpcode(other)),
        }
    }

    pub fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Control frames have the high bit of the opcode set (§5.5).
    pub fn is_control(self) -> bool {
        self.as_u8() & 0x8 != 0
    }
}

/// One frame header, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: this is the last frame of its message.
    pub fin: bool,
    /// RSV1, RSV2, RSV3 as the low three bits. Must be 0 without extensions.
    pub rsv: u8,
    pub opcode: OpCode,
    /// The masking key, present on every client-to-server frame (§5.3).
    pub mask: Option<[u8; 4]>,
    pub payload_len: u64,
}

impl FrameHeader {
    /// A final, unmasked header: what a server sends.
    pub fn server(opcode: OpCode, payload_len: usize) -> FrameHeader {
        FrameHeader {
            fin: true,
            rsv: 0,
            opcode,
            mask: None,
            payload_len: payload_len as u64,
        }
    }

    /// Parses a header from the start of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` holds only part of a header: more bytes
    /// are needed, which is normal for a stream. On success returns the
    /// header and how many bytes it took. The rules that can be checked from
    /// the header alone are checked here: reserved bits and opcodes, control
    /// frames that are fragmented or over 125 bytes, and the 64-bit length's
    /// top bit. Whether a mask is required depends on the role and is left to
    /// the caller.
    ///
    /// ```
    /// use wschat::protocol::frame::{FrameHeader, OpCode};
    ///
    /// // RFC 6455 §5.7: a single-frame masked text message "Hello".
    /// let bytes = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
    /// let (header, used) = FrameHeader::parse(&bytes).unwrap().unwrap();
    /// assert_eq!(used, 6);
    /// assert_eq!(header.opcode, OpCode::Text);
    /// assert_eq!(header.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
    /// assert_eq!(header.payload_len, 5);
    /// assert!(FrameHeader::parse(&bytes[..3]).unwrap().is_none()); // partial
    /// ```
    pub fn parse(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        Self::parse_allowing(buf, 0)
    }

    /// Like [`FrameHeader::parse`], but the reserved bits in `allowed_rsv`
    /// (RSV1 = `0b100`) may be set: a negotiated extension gives them a
    /// meaning (RFC 7692 §6: RSV1 marks a compressed message).
    pub fn parse_allowing(
        buf: &[u8],
        allowed_rsv: u8,
    ) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (buf[0], buf[1]);
        let fin = b0 & 0x80 != 0;
        let rsv = (b0 >> 4) & 0x7;
        if rsv & !allowed_rsv != 0 {
            return Err(ProtocolError::ReservedBits(rsv));
        }
        let opcode = OpCode::from_u8(b0 & 0x0f)?;
        let masked = b1 & 0x80 != 0;
        let short_len = b1 & 0x7f;

        if opcode.is_control() {
            if !fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
            if short_len as usize > MAX_CONTROL_PAYLOAD {
                return Err(ProtocolError::ControlFrameTooLong);
            }
        }

        let length_bytes = match short_len {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        if buf.len() < 2 + length_bytes {
            return Ok(None);
        }
        let payload_len = match length_bytes {
            2 => u16::from_be_bytes([buf[2], buf[3]]) as u64,
            8 => {
                let len = u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes"));
                if len >> 63 != 0 {
                    return Err(ProtocolError::LengthOverflow);
                }
                len
            }
            _ => short_len as u64,
        };
        // Checked before waiting for the masking key: fail as early as we can.
        let header_len = 2 + length_bytes + if masked { 4 } else { 0 };
        if buf.len() < header_len {
            return Ok(None);
        }
        let mask = masked.then(|| {
            let at = 2 + length_bytes;
            [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]
        });
        Ok(Some((
            FrameHeader {
                fin,
                rsv,
                opcode,
                mask,
                payload_len,
            },
            header_len,
        )))
    }

    /// Writes the header into `out` using the shortest length form, as §5.2
    /// requires ("the minimal number of bytes MUST be used"), and returns how
    /// many bytes it wrote.
    pub fn format(&self, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
        out[0] = (if self.fin { 0x80 } else { 0 }) | (self.rsv & 0x7) << 4 | self.opcode.as_u8();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut at = match self.payload_len {
            len @ 0..=125 => {
                out[1] = mask_bit | len as u8;
                2
            }
            len @ 126..=0xffff => {
                out[1] = mask_bit | 126;
                out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
                4
            }
            len => {
                out[1] = mask_bit | 127;
                out[2..10].copy_from_slice(&len.to_be_bytes());
                10
            }
        };
        if let Some(key) = self.mask {
            out[at..at + 4].copy_from_slice(&key);
            at += 4;
        }
        at
    }
}

/// Encodes one complete frame (header then payload) into a new buffer. With
/// a `mask` the payload is masked, as a client must; a server passes `None`.
///
/// ```
/// use wschat::protocol::frame::{encode_frame, OpCode};
///
/// // RFC 6455 §5.7: a single-frame unmasked text message.
/// assert_eq!(encode_frame(OpCode::Text, b"Hello", None),
///            [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
/// ```
pub fn encode_frame(opcode: OpCode, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAX_HEADER_LEN + payload.len());
    encode_frame_into(&mut out, true, opcode, payload, mask);
    out
}

/// Appends one frame to `out`; `fin` false starts or continues a fragmented
/// message (the opcode of later fragments must be `Continuation`).
pub fn encode_frame_into(
    out: &mut Vec<u8>,
    fin: bool,
    opcode: OpCode,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) {
    let header = FrameHeader {
        fin,
        rsv: 0,
        opcode,
        mask,
        payload_len: payload.len() as u64,
    };
    let mut head = [0u8; MAX_HEADER_LEN];
    let head_len = header.format(&mut head);
    out.extend_from_slice(&head[..head_len]);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut out[start..], key, 0);
    }
}

/// Encodes one final, unmasked data frame whose payload is a compressed
/// message, with RSV1 set: "Per-Message Compressed" (RFC 7692 §6). Only
/// Text and Binary may carry it; a control frame never does (§6.1).
///
/// ```
/// use wschat::protocol::frame::{encode_compressed_frame, OpCode};
///
/// // RFC 7692 §7.2.3.1: "Hello", compressed, in one frame.
/// let payload = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
/// assert_eq!(encode_compressed_frame(OpCode::Text, &payload),
///            [0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
/// ```
pub fn encode_compressed_frame(opcode: OpCode, compressed: &[u8]) -> Vec<u8> {
    assert!(
        matches!(opcode, OpCode::Text | OpCode::Binary),
        "RFC 7692 §6.1: only a message's first data frame carries RSV1"
    );
    let header = FrameHeader {
        rsv: RSV1,
        ..FrameHeader::server(opcode, compressed.len())
    };
    let mut head = [0u8; MAX_HEADER_LEN];
    let head_len = header.format(&mut head);
    let mut out = Vec::with_capacity(head_len + compressed.len());
    out.extend_from_slice(&head[..head_len]);
    out.extend_from_slice(compressed);
    out
}

/// Encodes a Close frame with `code` and a reason cut to fit (§5.5.1).
pub fn encode_close(code: super::close::CloseCode, reason: &str, mask: Option<[u8; 4]>) -> Vec<u8> {
    let reason = super::close::truncate_reason(reason);
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&u16::from(code).to_be_bytes());
    payload.extend_from_slice(reason.as_bytes());
    encode_frame(OpCode::Close, &payload, mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(bytes: &[u8]) -> (FrameHeader, usize) {
        FrameHeader::parse(bytes).unwrap().unwrap()
    }

    #[test]
    fn rfc_5_7_headers_decode_and_encode() {
        // Unmasked "Hello".
        let (h, n) = parse_all(&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        assert_eq!(
            (h.fin, h.opcode, h.mask, h.payload_len, n),
            (true, OpCode::Text, None, 5, 2)
        );
        // Fragmented unmasked "Hel" + "lo".
        let (h, _) = parse_all(&[0x01, 0x03, 0x48, 0x65, 0x6c]);
        assert_eq!((h.fin, h.opcode), (false, OpCode::Text));
        let (h, _) = parse_all(&[0x80, 0x02, 0x6c, 0x6f]);
        assert_eq!((h.fin, h.opcode), (true, OpCode::Continuation));
        // 256 bytes binary in one unmasked frame: 0x82 0x7E 0x0100.
        let (h, n) = parse_all(&[0x82, 0x7e, 0x01, 0x00]);
        assert_eq!((h.opcode, h.payload_len, n), (OpCode::Binary, 256, 4));
        // 64 KiB binary: 0x82 0x7F 0x0000000000010000.
        let (h, n) = parse_all(&[0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!((h.payload_len, n), (65536, 10));

        // Each in its shortest length form (§5.2): 7 bits, 16, then 64.
        assert_eq!(
            encode_frame(OpCode::Text, b"Hello", None),
            [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
        );
        assert_eq!(
            &encode_frame(OpCode::Binary, &[0; 256], None)[..4],
            &[0x82, 0x7e, 0x01, 0x00]
        );
        assert_eq!(
            &encode_frame(OpCode::Binary, &[0; 65536], None)[..10],
            &[0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]
        );
    }

    #[test]
    fn every_length_form_round_trips() {
        for len in [
            0u64,
            1,
            125,
            126,
            127,
            128,
            65535,
            65536,
            1 << 32,
            (1 << 63) - 1,
        ] {
            for mask in [None, Some([1, 2, 3, 4])] {
                let header = FrameHeader {
                    fin: true,
                    rsv: 0,
                    opcode: OpCode::Binary,
                    mask,
                    payload_len: len,
                };
                let mut buf = [0u8; MAX_HEADER_LEN];
                let n = header.format(&mut buf);
                assert_eq!(FrameHeader::parse(&buf[..n]).unwrap(), Some((header, n)));
                for cut in 0..n {
                    assert_eq!(
                        FrameHeader::parse(&buf[..cut]).unwrap(),
                        None,
                        "len {len} cut {cut}"
                    );
                }
            }
        }
    }

    #[test]
    fn compressed_frames_set_rsv1_and_keep_every_length_form() {
        for len in [0usize, 125, 126, 65535, 65536] {
            let payload = vec![7u8; len];
            let bytes = encode_compressed_frame(OpCode::Binary, &payload);
            let (header, used) = FrameHeader::parse_allowing(&bytes, RSV1).unwrap().unwrap();
            assert_eq!(
                (header.fin, header.rsv, header.opcode),
                (true, RSV1, OpCode::Binary)
            );
            assert_eq!((header.mask, header.payload_len), (None, len as u64));
            assert_eq!(&bytes[used..], &payload[..]);
            // Without the extension, the same frame is a protocol error.
            assert_eq!(
                FrameHeader::parse(&bytes),
                Err(ProtocolError::ReservedBits(RSV1))
            );
        }
    }

    #[test]
    #[should_panic(expected = "RFC 7692")]
    fn a_control_frame_is_never_compressed() {
        encode_compressed_frame(OpCode::Ping, b"");
    }

    #[test]
    fn header_rules() {
        assert_eq!(
            FrameHeader::parse(&[0xc1, 0x80]),
            Err(ProtocolError::ReservedBits(4))
        );
        assert_eq!(
            FrameHeader::parse(&[0x83, 0x80]),
            Err(ProtocolError::ReservedOpcode(3))
        );
        assert_eq!(
            FrameHeader::parse(&[0x8b, 0x80]),
            Err(ProtocolError::ReservedOpcode(0xb))
        );
        assert_eq!(
            FrameHeader::parse(&[0x09, 0x80]),
            Err(ProtocolError::FragmentedControlFrame)
        );
        assert_eq!(
            FrameHeader::parse(&[0x89, 0xfe]),
            Err(ProtocolError::ControlFrameTooLong)
        );
        assert_eq!(
            FrameHeader::parse(&[0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0]),
            Err(ProtocolError::LengthOverflow)
        );
    }
}
