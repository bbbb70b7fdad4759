//! Client-controlled text on its way to the log. A chat message, a request
//! target or a close reason could otherwise hold a newline (and forge a
//! log line of its own), a terminal escape sequence (and repaint the
//! terminal of whoever reads the log), bidi overrides that reorder what a
//! reader sees, or a megabyte of text. [`Untrusted`] prints such text on
//! one line, escaped, and cut short.

use std::fmt::{self, Write};

/// How many characters of one piece of client text a log line shows;
/// the rest is replaced by `…`.
pub const MAX_LOGGED_CHARS: usize = 100;

/// Client text, displayed safe for a log line: `\` becomes `\\`; `\n`,
/// `\r` and `\t` are written as such; other control characters as
/// `\xNN`; invisible and formatting characters (bidi overrides,
/// zero-width spaces, see [`crate::room::is_invisible`]) as `\u{NNNN}`;
/// and text past [`MAX_LOGGED_CHARS`] characters is cut, ending in `…`.
///
/// ```
/// use wschat::log_text::Untrusted;
///
/// assert_eq!(Untrusted("hi\nthere\u{1b}[2J").to_string(), r"hi\nthere\x1b[2J");
/// assert_eq!(Untrusted(&"x".repeat(500)).to_string().chars().count(), 101);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Untrusted<'a>(pub &'a str);

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (count, c) in self.0.chars().enumerate() {
            if count == MAX_LOGGED_CHARS {
                return f.write_char('…');
            }
            match c {
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c if c.is_control() && (c as u32) < 0x100 => write!(f, "\\x{:02x}", c as u32)?,
                c if c.is_control() || crate::room::is_invisible(c) || is_line_break(c) => {
                    write!(f, "\\u{{{:04x}}}", c as u32)?
                }
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// Line and paragraph separators: not control characters, but some log
/// viewers break lines at them.
fn is_line_break(c: char) -> bool {
    matches!(c, '\u{2028}' | '\u{2029}' | '\u{85}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(s: &str) -> String {
        Untrusted(s).to_string()
    }

    #[test]
    fn escapes_what_could_break_a_log_line() {
        assert_eq!(shown("plain ünïcödé"), "plain ünïcödé");
        assert_eq!(shown("a\nb\rc\td"), r"a\nb\rc\td");
        assert_eq!(shown("\u{0}\u{7}\u{1b}[31m\u{7f}"), r"\x00\x07\x1b[31m\x7f");
        assert_eq!(shown("\u{9b}"), r"\x9b");
        assert_eq!(shown("a\\nb"), r"a\\nb");
        assert_eq!(shown("\u{202e}evil\u{200b}"), r"\u{202e}evil\u{200b}");
        assert_eq!(shown("\u{2028}"), r"\u{2028}");
        assert!(!shown("x\u{85}y").chars().any(char::is_control));
    }

    #[test]
    fn long_text_is_cut_with_an_ellipsis() {
        let exact = "y".repeat(MAX_LOGGED_CHARS);
        assert_eq!(shown(&exact), exact);
        let long = format!("{exact}z");
        assert_eq!(shown(&long), format!("{exact}…"));
        assert_eq!(
            shown(&"é".repeat(1000)).chars().count(),
            MAX_LOGGED_CHARS + 1
        );
    }
}
