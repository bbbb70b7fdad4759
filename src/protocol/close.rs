//! Close codes and the Close frame's payload (RFC 6455 §5.5.1, §7.4).

use super::error::ProtocolError;
use std::fmt;

/// The status code carried by a Close frame (§7.4.1), with the codes
/// registered in the IANA "WebSocket Close Code Number Registry" named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    /// 1000: the purpose of the connection is fulfilled.
    Normal,
    /// 1001: the endpoint is going away (server shutting down, page left).
    Away,
    /// 1002: protocol error.
    Protocol,
    /// 1003: a data type the endpoint cannot accept.
    Unsupported,
    /// 1005: reserved; means "no code was present". Never sent on the wire.
    NoStatus,
    /// 1006: reserved; means "closed without a Close frame". Never on the wire.
    Abnormal,
    /// 1007: message data not consistent with its type (bad UTF-8 in text).
    InvalidPayload,
    /// 1008: a policy was violated (slow consumer, rate limit, ...).
    Policy,
    /// 1009: a message too big to process.
    TooBig,
    /// 1010: the client expected an extension the server did not negotiate.
    MandatoryExtension,
    /// 1011: an unexpected condition on the server.
    InternalError,
    /// 1012: the service is restarting.
    Restart,
    /// 1013: try again later.
    TryAgainLater,
    /// 1014: bad gateway.
    BadGateway,
    /// 1015: reserved; TLS handshake failure. Never on the wire.
    Tls,
    /// 3000–3999: registered for libraries and frameworks.
    Library(u16),
    /// 4000–4999: private use by applications.
    Private(u16),
    /// Anything else: reserved or unassigned, and invalid on the wire.
    Reserved(u16),
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        use CloseCode::*;
        match code {
            1000 => Normal,
            1001 => Away,
            1002 => Protocol,
            1003 => Unsupported,
            1005 => NoStatus,
            1006 => Abnormal,
            1007 => InvalidPayload,
            1008 => Policy,
            1009 => TooBig,
            1010 => MandatoryExtension,
            1011 => InternalError,
            1012 => Restart,
            1013 => TryAgainLater,
            1014 => BadGateway,
            1015 => Tls,
            3000..=3999 => Library(code),
            4000..=4999 => Private(code),
            _ => Reserved(code),
        }
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> u16 {
        use CloseCode::*;
        match code {
            Normal => 1000,
            Away => 1001,
            Protocol => 1002,
            Unsupported => 1003,
            NoStatus => 1005,
            Abnormal => 1006,
            InvalidPayload => 1007,
            Policy => 1008,
            TooBig => 1009,
            MandatoryExtension => 1010,
            InternalError => 1011,
            Restart => 1012,
            TryAgainLater => 1013,
            BadGateway => 1014,
            Tls => 1015,
            Library(code) | Private(code) | Reserved(code) => code,
        }
    }
}

impl CloseCode {
    /// May this code appear in a Close frame? 1005, 1006 and 1015 are
    /// reserved for reporting (§7.4.1), 1004 and 1016–2999 are unassigned,
    /// and nothing below 1000 or above 4999 is defined (§7.4.2).
    pub fn is_allowed_on_wire(self) -> bool {
        !matches!(
            self,
            CloseCode::NoStatus | CloseCode::Abnormal | CloseCode::Tls | CloseCode::Reserved(_)
        )
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", u16::from(*self))
    }
}

/// The longest reason that fits a Close frame: a control frame's payload is
/// at most 125 bytes (§5.5) and the code takes two of them.
pub const MAX_CLOSE_REASON: usize = 123;

/// A decoded Close frame payload: the code and the UTF-8 reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    pub code: CloseCode,
    pub reason: String,
}

/// Parses and validates a received Close payload (§5.5.1): empty, or a
/// two-byte code that is allowed on the wire followed by a UTF-8 reason.
///
/// ```
/// use wschat::protocol::close::{parse_close_payload, CloseCode};
///
/// let frame = parse_close_payload(b"\x03\xe8bye").unwrap().unwrap();
/// assert_eq!(frame.code, CloseCode::Normal);
/// assert_eq!(frame.reason, "bye");
/// assert!(parse_close_payload(b"").unwrap().is_none());
/// assert!(parse_close_payload(b"\x03").is_err()); // one byte: no room for a code
/// assert!(parse_close_payload(b"\x03\xed").is_err()); // 1005 is never sent
/// ```
pub fn parse_close_payload(payload: &[u8]) -> Result<Option<CloseFrame>, ProtocolError> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(ProtocolError::InvalidClosePayload),
        _ => {
            let code = CloseCode::from(u16::from_be_bytes([payload[0], payload[1]]));
            if !code.is_allowed_on_wire() {
                return Err(ProtocolError::InvalidCloseCode(code.into()));
            }
            let reason = std::str::from_utf8(&payload[2..])
                .map_err(|_| ProtocolError::InvalidCloseReason)?;
            Ok(Some(CloseFrame {
                code,
                reason: reason.to_owned(),
            }))
        }
    }
}

/// Truncates `reason` to at most [`MAX_CLOSE_REASON`] bytes on a character
/// boundary, so that any reason we choose fits a Close frame.
pub fn truncate_reason(reason: &str) -> &str {
    if reason.len() <= MAX_CLOSE_REASON {
        return reason;
    }
    let mut end = MAX_CLOSE_REASON;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_u16() {
        for code in 0..=u16::MAX {
            assert_eq!(u16::from(CloseCode::from(code)), code);
        }
    }

    #[test]
    fn wire_validity_follows_the_registry() {
        let valid = |c: u16| CloseCode::from(c).is_allowed_on_wire();
        for c in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
            4000, 4999,
        ] {
            assert!(valid(c), "{c}");
        }
        for c in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!valid(c), "{c}");
        }
    }

    #[test]
    fn reasons_are_utf8_checked() {
        assert_eq!(
            parse_close_payload(b"\x03\xe8\xff"),
            Err(ProtocolError::InvalidCloseReason)
        );
    }

    #[test]
    fn truncation_respects_characters() {
        let long = "é".repeat(100); // 200 bytes
        let cut = truncate_reason(&long);
        assert!(cut.len() <= MAX_CLOSE_REASON);
        assert_eq!(cut.len(), 122);
    }
}
