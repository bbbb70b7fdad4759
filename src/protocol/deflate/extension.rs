//! Negotiating permessage-deflate (RFC 7692 §5, §7.1) from the client's
//! `Sec-WebSocket-Extensions` header values.
//!
//! The header grammar is RFC 6455 §9.1's:
//!
//! ```text
//! Sec-WebSocket-Extensions = 1#extension                 (comma-separated)
//! extension       = extension-token *( ";" extension-param )
//! extension-param = token [ "=" ( token | quoted-string ) ]
//! ```
//!
//! A client may offer permessage-deflate several times with different
//! parameters, in order of preference; the server accepts one offer or
//! none (§5). A bad offer is declined, never an error: the connection
//! then simply goes on uncompressed.

use super::{MAX_WINDOW_BITS, MIN_WINDOW_BITS};
use std::borrow::Cow;

/// The extension's registered name (RFC 7692 §7).
pub const EXTENSION_NAME: &str = "permessage-deflate";

/// The accepted offer: what the server answers and how it must compress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreement {
    /// The client's `server_max_window_bits`, if it sent one: the server's
    /// matches must then reach back at most `2^bits` bytes (§7.1.2.1).
    pub server_max_window_bits: Option<u8>,
}

impl Agreement {
    /// The `Sec-WebSocket-Extensions` value of the 101 response. The server
    /// always takes no context takeover in both directions: it keeps no
    /// compression state between messages (§7.1.1.1), and asks the client
    /// to keep none either (§7.1.1.2: a server may add
    /// `client_no_context_takeover` even if the offer did not have it).
    /// `client_max_window_bits` is never sent back: it is optional in the
    /// answer (§7.1.2.2), and the inflater accepts the full 32 KiB window.
    /// Without a window limit (what browsers offer) the answer is a
    /// constant, so answering allocates nothing.
    pub fn response_header(&self) -> Cow<'static, str> {
        const BOTH: &str =
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
        match self.server_max_window_bits {
            None => Cow::Borrowed(BOTH),
            Some(bits) => Cow::Owned(format!("{BOTH}; server_max_window_bits={bits}")),
        }
    }

    /// The window the compressor must use for this connection.
    pub fn compress_window_bits(&self) -> u8 {
        self.server_max_window_bits.unwrap_or(MAX_WINDOW_BITS)
    }
}

/// Picks the first acceptable permessage-deflate offer among the client's
/// `Sec-WebSocket-Extensions` header values (all of them, in order: several
/// header lines are one comma-separated list). `None` declines: send no
/// `Sec-WebSocket-Extensions` header and no compressed frames.
///
/// ```
/// use wschat::protocol::deflate::negotiate;
///
/// // What Chromium and Firefox send.
/// let agreement = negotiate(["permessage-deflate; client_max_window_bits"]).unwrap();
/// assert_eq!(
///     agreement.response_header(),
///     "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
/// );
/// assert_eq!(negotiate(["x-webkit-deflate-frame"]), None);
/// ```
pub fn negotiate<'a>(header_values: impl IntoIterator<Item = &'a str>) -> Option<Agreement> {
    negotiate_where(header_values, |_| true)
}

/// Like [`negotiate`], but an offer that is valid and yet not `wanted` by
/// the server is declined too, and the next one is tried. A server may
/// decline any offer (§5); §7.1.2.1 names `server_max_window_bits` as a
/// parameter a server may refuse. The chat server uses this to keep one
/// compression per broadcast: it takes only offers that let it use the
/// full window.
///
/// ```
/// use wschat::protocol::deflate::{Agreement, MAX_WINDOW_BITS, negotiate_where};
///
/// let full_window = |a: &Agreement| a.compress_window_bits() == MAX_WINDOW_BITS;
/// let offers = ["permessage-deflate; server_max_window_bits=10, permessage-deflate"];
/// let agreement = negotiate_where(offers, full_window).unwrap();
/// assert_eq!(agreement.server_max_window_bits, None); // the second offer
/// assert!(negotiate_where(["permessage-deflate; server_max_window_bits=10"], full_window).is_none());
/// ```
pub fn negotiate_where<'a>(
    header_values: impl IntoIterator<Item = &'a str>,
    wanted: impl Fn(&Agreement) -> bool,
) -> Option<Agreement> {
    header_values
        .into_iter()
        .flat_map(elements)
        .flatten()
        .filter(|offer| offer.name.eq_ignore_ascii_case(EXTENSION_NAME))
        .filter_map(|offer| accept(offer.params()))
        .find(|agreement| wanted(agreement))
}

/// One element of the list: a name and its parameters (value unquoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    pub name: String,
    pub params: Vec<(String, Option<String>)>,
}

/// One element as the parser finds it, borrowed from the header value:
/// negotiating allocates nothing (a connection thread would keep the freed
/// blocks in its allocator's cache for the life of the connection).
#[derive(Debug, Clone, Copy)]
struct Element<'a> {
    name: &'a str,
    /// What follows the name, already checked against the grammar.
    params: &'a str,
}

impl<'a> Element<'a> {
    /// The parameters, in order: name and value (unquoted; a value is
    /// copied only if it has `\` escapes).
    fn params(&self) -> impl Iterator<Item = (&'a str, Option<Cow<'a, str>>)> + 'a {
        let mut parser = Parser {
            text: self.params,
            pos: 0,
        };
        std::iter::from_fn(move || parser.param())
    }
}

/// Checks one permessage-deflate offer's parameters against §7 and §7.1; `None`
/// declines it.
fn accept<'a>(params: impl Iterator<Item = (&'a str, Option<Cow<'a, str>>)>) -> Option<Agreement> {
    let mut agreement = Agreement {
        server_max_window_bits: None,
    };
    let mut seen = [false; 4];
    for (name, value) in params {
        let is = |known: &str| name.eq_ignore_ascii_case(known);
        let index = if is("server_no_context_takeover") && value.is_none() {
            // §7.1.1.1, §7.1.1.2: no value allowed.
            0
        } else if is("client_no_context_takeover") && value.is_none() {
            1
        } else if is("server_max_window_bits") {
            // §7.1.2.1: a value is required.
            agreement.server_max_window_bits = Some(window_bits(value.as_deref()?)?);
            2
        } else if is("client_max_window_bits") {
            // §7.1.2.2: the value is optional, but must be valid if present.
            if let Some(v) = value {
                window_bits(&v)?;
            }
            3
        } else {
            // §7: an unknown parameter, or a value where none is allowed.
            return None;
        };
        // §7: an offer with the same parameter twice is declined.
        if std::mem::replace(&mut seen[index], true) {
            return None;
        }
    }
    Some(agreement)
}

/// §7.1.2.1: "8" to "15", digits only, no leading zero.
fn window_bits(value: &str) -> Option<u8> {
    if value.starts_with('0') || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bits: u8 = value.parse().ok()?;
    (MIN_WINDOW_BITS..=MAX_WINDOW_BITS)
        .contains(&bits)
        .then_some(bits)
}

/// RFC 7230 §3.2.6 `tchar`: the characters a token may hold.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Splits a header value into its extensions. Each element is `Some` when
/// it follows the grammar and `None` when it does not (so that one
/// malformed offer is declined without losing the ones after it). Empty
/// elements (`a, , b`) are skipped, as RFC 7230 §7 allows.
pub fn parse_extensions(value: &str) -> Vec<Option<Extension>> {
    elements(value)
        .map(|element| {
            element.map(|element| Extension {
                name: element.name.to_string(),
                params: element
                    .params()
                    .map(|(name, value)| (name.to_string(), value.map(Cow::into_owned)))
                    .collect(),
            })
        })
        .collect()
}

/// The elements of a header value, as [`parse_extensions`] describes them,
/// without copying anything.
fn elements(value: &str) -> impl Iterator<Item = Option<Element<'_>>> {
    let mut parser = Parser {
        text: value,
        pos: 0,
    };
    std::iter::from_fn(move || {
        loop {
            parser.skip_spaces();
            match parser.peek() {
                None => return None,
                Some(b',') => parser.pos += 1,
                Some(_) => break,
            }
        }
        let element = parser.extension();
        if element.is_none() {
            parser.skip_element();
        }
        Some(element)
    })
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_spaces(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn token(&mut self) -> Option<&'a str> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        // Every tchar is ASCII, so the slice ends on a character boundary.
        (self.pos > start).then(|| &self.text[start..self.pos])
    }

    /// RFC 7230 §3.2.6: `"` ... `"` with `\` escaping the next character.
    /// RFC 6455 §9.1: the unescaped value must itself be a token.
    fn quoted_token(&mut self) -> Option<Cow<'a, str>> {
        self.pos += 1; // the opening quote
        let start = self.pos;
        let (mut escaped, mut len, mut valid) = (false, 0, true);
        // Read to the closing quote even past a bad character, so that a
        // malformed element is skipped from after its quoted string.
        loop {
            match self.peek()? {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    self.pos += 1;
                    valid &= is_tchar(self.peek()?);
                }
                b => valid &= is_tchar(b),
            }
            len += 1;
            self.pos += 1;
        }
        let raw = &self.text[start..self.pos];
        self.pos += 1; // the closing quote
        if len == 0 || !valid {
            return None;
        }
        Some(if escaped {
            Cow::Owned(raw.replace('\\', ""))
        } else {
            Cow::Borrowed(raw)
        })
    }

    /// One `; name[=value]` after an extension's name, or `None` at the
    /// end of the element.
    fn param(&mut self) -> Option<(&'a str, Option<Cow<'a, str>>)> {
        self.skip_spaces();
        if self.peek() != Some(b';') {
            return None;
        }
        self.pos += 1;
        self.skip_spaces();
        let name = self.token()?;
        self.skip_spaces();
        let value = if self.peek() == Some(b'=') {
            self.pos += 1;
            self.skip_spaces();
            Some(if self.peek() == Some(b'"') {
                self.quoted_token()?
            } else {
                Cow::Borrowed(self.token()?)
            })
        } else {
            None
        };
        Some((name, value))
    }

    /// One extension, up to (not including) the comma that ends it; its
    /// parameters are checked here and read again by [`Element::params`].
    fn extension(&mut self) -> Option<Element<'a>> {
        let name = self.token()?;
        let params_start = self.pos;
        loop {
            self.skip_spaces();
            match self.peek() {
                None | Some(b',') => {
                    return Some(Element {
                        name,
                        params: &self.text[params_start..self.pos],
                    });
                }
                Some(b';') => {
                    self.param()?;
                }
                Some(_) => return None,
            }
        }
    }

    /// After a malformed element: moves to the next comma outside quotes.
    fn skip_element(&mut self) {
        let mut quoted = false;
        while let Some(b) = self.peek() {
            match b {
                b'"' => quoted = !quoted,
                b'\\' if quoted => self.pos += 1,
                b',' if !quoted => return,
                _ => {}
            }
            self.pos += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

    fn answer(values: &[&str]) -> Option<String> {
        negotiate(values.iter().copied()).map(|a| a.response_header().into_owned())
    }

    #[test]
    fn browser_offers() {
        // Chromium and Firefox both send exactly this.
        assert_eq!(
            answer(&["permessage-deflate; client_max_window_bits"]).as_deref(),
            Some(BOTH)
        );
        assert_eq!(answer(&["permessage-deflate"]).as_deref(), Some(BOTH));
    }

    #[test]
    fn rfc_7692_examples() {
        // §5: offers in order of preference; the first acceptable one wins.
        let offer = "permessage-deflate; client_max_window_bits; server_max_window_bits=10, \
                     permessage-deflate; client_max_window_bits";
        let a = negotiate([offer]).unwrap();
        assert_eq!(a.server_max_window_bits, Some(10));
        assert_eq!(
            a.response_header(),
            format!("{BOTH}; server_max_window_bits=10")
        );
        // §7.1.3's example: a server window of 10 bits preferred, no
        // parameters as the fallback. We can honour the first.
        let a = negotiate(["permessage-deflate; server_max_window_bits=10, permessage-deflate"]);
        assert_eq!(a.unwrap().compress_window_bits(), 10);
        // The smallest window, 2^8 bytes, is honoured too.
        assert_eq!(
            negotiate(["permessage-deflate; server_max_window_bits=8"])
                .unwrap()
                .compress_window_bits(),
            8
        );
        // A quoted value is the same as a token (RFC 6455 §9.1).
        assert_eq!(
            negotiate(["permessage-deflate; client_max_window_bits=\"10\""]),
            Some(Agreement {
                server_max_window_bits: None
            })
        );
    }

    #[test]
    fn bad_offers_are_declined_and_the_next_one_is_taken() {
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_max_window_bits=\"1 0\"",
            "permessage-deflate; client_max_window_bits=abc",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; server_max_window_bits=9; server_max_window_bits=9",
            "permessage-deflate; mystery",
            "permessage-deflate; ; x",
            "permessage-deflate x",
        ] {
            assert_eq!(negotiate([bad]), None, "{bad}");
            let with_fallback = format!("{bad}, permessage-deflate");
            assert_eq!(
                answer(&[&with_fallback]).as_deref(),
                Some(BOTH),
                "{with_fallback}"
            );
        }
    }

    #[test]
    fn an_unterminated_quote_swallows_the_rest_of_the_list() {
        let value = "permessage-deflate; server_max_window_bits=\"10, permessage-deflate";
        assert_eq!(negotiate([value]), None);
    }

    #[test]
    fn lists_across_header_lines_and_other_extensions() {
        assert_eq!(
            answer(&[
                "x-custom; a=\"b,c\"",
                " , permessage-deflate ;client_no_context_takeover"
            ])
            .as_deref(),
            Some(BOTH)
        );
        assert_eq!(answer(&["foo, bar; baz=2"]), None);
        assert_eq!(answer(&[""]), None);
        assert_eq!(
            parse_extensions("a; b=\"c\\\"d\", e"),
            vec![
                None,
                Some(Extension {
                    name: "e".into(),
                    params: vec![]
                })
            ]
        );
    }
}
