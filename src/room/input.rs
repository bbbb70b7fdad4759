//! What a `wschat.v1` client types: commands, and the rules a nickname
//! must follow. Pure functions of a string.

use super::{ClientId, MAX_NICK_CHARS};

/// What a `wschat.v1` client's text frame asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Input<'a> {
    Say(&'a str),
    Action(&'a str),
    Nick(&'a str),
    Who,
    Unknown(&'a str),
    /// A known command used wrongly; the text says how to use it.
    Usage(&'static str),
    Empty,
}

/// Reads a v1 client's line: `/nick NAME`, `/me TEXT`, `/who`, `//text` for
/// a literal `/text`, anything else is said as is.
///
/// ```
/// use wschat::room::{parse_input, Input};
/// assert_eq!(parse_input("hello"), Input::Say("hello"));
/// assert_eq!(parse_input("/me waves"), Input::Action("waves"));
/// assert_eq!(parse_input("//etc/passwd"), Input::Say("/etc/passwd"));
/// assert_eq!(parse_input("/nick ann"), Input::Nick("ann"));
/// ```
pub fn parse_input(text: &str) -> Input<'_> {
    if text.trim().is_empty() {
        return Input::Empty;
    }
    if text.starts_with("//") {
        return Input::Say(&text[1..]);
    }
    let Some(command_line) = text.strip_prefix('/') else {
        return Input::Say(text);
    };
    let (command, argument) = match command_line.split_once(char::is_whitespace) {
        Some((c, a)) => (c, a.trim()),
        None => (command_line, ""),
    };
    match command {
        "me" if argument.is_empty() => Input::Usage("usage: /me TEXT"),
        "me" => Input::Action(argument),
        "nick" => Input::Nick(argument),
        "who" => Input::Who,
        _ => Input::Unknown(command),
    }
}

/// The default nickname of client `id`; such names are reserved.
pub fn guest_nick(id: ClientId) -> String {
    format!("guest-{id}")
}

/// Checks a requested nickname's form (uniqueness is the room's business).
pub fn validate_nick(nick: &str) -> Result<(), &'static str> {
    let chars = nick.chars().count();
    if chars == 0 {
        return Err("usage: /nick NAME");
    }
    if chars > MAX_NICK_CHARS {
        return Err("nickname is longer than 24 characters");
    }
    if nick.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("nickname may not contain spaces or control characters");
    }
    if let Some(digits) = nick.to_ascii_lowercase().strip_prefix("guest-")
        && !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
    {
        return Err("guest-<number> names are reserved");
    }
    Ok(())
}

/// The form of a nickname that uniqueness is judged on: two nicknames with
/// the same key cannot be held at once (`Ann` and `ann` are one name).
pub fn nick_key(nick: &str) -> String {
    nick.to_lowercase()
}

/// Whether chat text may carry `c`: tab and newline are text, every other
/// control character is not (JSON turns each into six bytes, and a
/// terminal or log reader may act on them).
pub fn allowed_in_text(c: char) -> bool {
    c == '\t' || c == '\n' || !c.is_control()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(parse_input("  "), Input::Empty);
        assert_eq!(parse_input("/who"), Input::Who);
        assert_eq!(parse_input("/nick"), Input::Nick(""));
        assert_eq!(parse_input("/me"), Input::Usage("usage: /me TEXT"));
        assert_eq!(parse_input("/dance now"), Input::Unknown("dance"));
        assert_eq!(parse_input("//"), Input::Say("/"));
        assert_eq!(parse_input("//me x"), Input::Say("/me x"));
    }

    #[test]
    fn nick_rules() {
        assert!(validate_nick("ann").is_ok());
        assert!(validate_nick("Åsa-ü_1").is_ok());
        assert!(validate_nick(&"x".repeat(24)).is_ok());
        assert!(validate_nick(&"x".repeat(25)).is_err());
        assert!(validate_nick("a b").is_err());
        assert!(validate_nick("a\u{7}").is_err());
        assert!(validate_nick("").is_err());
        assert!(validate_nick("Guest-12").is_err());
        assert!(validate_nick("guest-").is_ok());
        assert_eq!(nick_key("Ann"), nick_key("aNN"));
    }

    #[test]
    fn text_rules() {
        assert!("tab\tand\nnewline".chars().all(allowed_in_text));
        assert!(!allowed_in_text('\u{1b}'));
        assert!(!allowed_in_text('\u{7f}'));
        assert!(!allowed_in_text('\0'));
    }
}
