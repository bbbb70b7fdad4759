//! Everything a peer can do wrong at the frame level, and the close code
//! each answer carries (RFC 6455 §7.4.1).

use super::close::CloseCode;
use std::fmt;

/// A violation of RFC 6455 by the peer. Each variant maps to the close code
/// the server answers with, and displays as the short reason it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// §5.1: a client frame without the MASK bit.
    UnmaskedFrame,
    /// §5.1: a server frame with the MASK bit (seen by a client).
    MaskedFrame,
    /// §5.2: RSV1–3 set although no extension was negotiated.
    ReservedBits(u8),
    /// §5.2: opcodes 3–7 and 0xB–0xF are reserved.
    ReservedOpcode(u8),
    /// §5.5: control frames carry at most 125 bytes.
    ControlFrameTooLong,
    /// §5.5: control frames must not be fragmented.
    FragmentedControlFrame,
    /// §5.4: a continuation frame with no message to continue.
    UnexpectedContinuation,
    /// §5.4: a new Text/Binary frame while a fragmented message is open.
    ExpectedContinuation,
    /// §5.2: the most significant bit of a 64-bit length must be 0.
    LengthOverflow,
    /// §7.4.1 (1009): the message is larger than this endpoint accepts.
    MessageTooBig { limit: usize },
    /// §8.1 (1007): a text message (or fragment) is not UTF-8.
    InvalidUtf8,
    /// §5.5.1: a one-byte Close payload has no room for a code.
    InvalidClosePayload,
    /// §7.4.2: a close code that may not appear on the wire.
    InvalidCloseCode(u16),
    /// §5.5.1: the close reason is not UTF-8.
    InvalidCloseReason,
    /// RFC 7692 §6: RSV1 (the "compressed" bit) on a control frame or a
    /// continuation frame; only a message's first frame may carry it.
    MisplacedCompressedBit,
    /// RFC 7692 §8: a compressed message that does not inflate. The RFC
    /// leaves the code to the endpoint; like most implementations we send
    /// 1007, "data inconsistent with the type of the message", since the
    /// frames were well formed and it is their payload that is bad.
    InvalidCompressedData(&'static str),
}

impl ProtocolError {
    /// The code of the Close frame that answers this error.
    pub fn close_code(self) -> CloseCode {
        match self {
            ProtocolError::MessageTooBig { .. } => CloseCode::TooBig,
            ProtocolError::InvalidUtf8 | ProtocolError::InvalidCompressedData(_) => {
                CloseCode::InvalidPayload
            }
            _ => CloseCode::Protocol,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::UnmaskedFrame => f.write_str("client frames must be masked"),
            ProtocolError::MaskedFrame => f.write_str("server frames must not be masked"),
            ProtocolError::ReservedBits(bits) => write!(f, "reserved bits set ({bits:#05b})"),
            ProtocolError::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            ProtocolError::ControlFrameTooLong => f.write_str("control frame over 125 bytes"),
            ProtocolError::FragmentedControlFrame => f.write_str("fragmented control frame"),
            ProtocolError::UnexpectedContinuation => f.write_str("continuation without a message"),
            ProtocolError::ExpectedContinuation => {
                f.write_str("new message inside a fragmented one")
            }
            ProtocolError::LengthOverflow => f.write_str("64-bit length with the top bit set"),
            ProtocolError::MessageTooBig { limit } => write!(f, "message over {limit} bytes"),
            ProtocolError::InvalidUtf8 => f.write_str("invalid UTF-8 in text"),
            ProtocolError::InvalidClosePayload => f.write_str("one-byte close payload"),
            ProtocolError::InvalidCloseCode(code) => write!(f, "invalid close code {code}"),
            ProtocolError::InvalidCloseReason => f.write_str("close reason is not UTF-8"),
            ProtocolError::MisplacedCompressedBit => {
                f.write_str("RSV1 on a control or continuation frame")
            }
            ProtocolError::InvalidCompressedData(why) => write!(f, "bad compressed data: {why}"),
        }
    }
}

impl std::error::Error for ProtocolError {}
