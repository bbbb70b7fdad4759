//! Room names: `#` and 1 to [`MAX_ROOM_NAME_CHARS`] characters of
//! `a-z 0-9 - _`, after folding ASCII case and the fullwidth forms of
//! ASCII (U+FF01–FF5E, as nicknames are folded), so that `#Rust` and
//! `＃ｒｕｓｔ` name the one room `#rust`. Pure functions of a string.

use crate::protocol::handshake::percent_decode;
use std::fmt;
use std::sync::Arc;

/// A room's name is `#` and at most this many characters.
pub const MAX_ROOM_NAME_CHARS: usize = 32;
/// The room everyone starts in, which always exists.
pub const MAIN_ROOM: &str = "#main";
/// The `text` of a `room_invalid` error.
pub const ROOM_INVALID_TEXT: &str = "a room name is # and 1 to 32 characters of a-z, 0-9, - and _";

/// A valid room name in its folded form, `#` included: what the server
/// writes on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomName(Arc<str>);

impl RoomName {
    /// `#main`.
    pub fn main() -> RoomName {
        RoomName(MAIN_ROOM.into())
    }

    /// `text` (with its `#`) folded, if it names a room.
    ///
    /// ```
    /// use wschat::room::RoomName;
    /// assert_eq!(RoomName::parse("#Rust").unwrap().as_str(), "#rust");
    /// assert_eq!(RoomName::parse("＃ｒｕｓｔ").unwrap().as_str(), "#rust");
    /// assert!(RoomName::parse("rust").is_none());
    /// ```
    pub fn parse(text: &str) -> Option<RoomName> {
        let folded = fold(text);
        let rest = folded.strip_prefix('#')?;
        let valid = (1..=MAX_ROOM_NAME_CHARS).contains(&rest.len())
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        valid.then(|| RoomName(folded.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_main(&self) -> bool {
        &*self.0 == MAIN_ROOM
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Fullwidth forms to ASCII, then ASCII upper case to lower case.
fn fold(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            c => c,
        })
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The `rooms` parameter of a chat upgrade's target (`/?rooms=main,rust`):
/// the rooms to be in on connect, in the order listed, duplicates left
/// out. No parameter is `Ok(None)` (the default: `#main`); `rooms=` is an
/// empty list. A name is written without its `#` (in a URL `#` starts
/// the fragment) or with it as `%23`; other percent escapes are decoded
/// too (a fullwidth name). A bad name is the reason for a 400.
pub fn rooms_param(target: &str) -> Result<Option<Vec<RoomName>>, &'static str> {
    let Some((_, query)) = target.split_once('?') else {
        return Ok(None);
    };
    let query = query.split('#').next().unwrap_or_default();
    let Some(value) = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("rooms")?.strip_prefix('='))
    else {
        return Ok(None);
    };
    let mut rooms: Vec<RoomName> = Vec::new();
    for item in value.split(',').filter(|item| !item.is_empty()) {
        let decoded = percent_decode(item)
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or("rooms: a bad percent escape")?;
        let with_hash = if decoded.starts_with('#') || decoded.starts_with('＃') {
            decoded
        } else {
            format!("#{decoded}")
        };
        let name = RoomName::parse(&with_hash).ok_or(
            "rooms: a room name is 1 to 32 characters of a-z, 0-9, - and _ (comma-separated)",
        )?;
        if !rooms.contains(&name) {
            rooms.push(name);
        }
    }
    Ok(Some(rooms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> Option<String> {
        RoomName::parse(text).map(|n| n.as_str().to_string())
    }

    #[test]
    fn names_fold_ascii_case_and_fullwidth_forms() {
        assert_eq!(name("#rust").as_deref(), Some("#rust"));
        assert_eq!(name("#RuSt").as_deref(), Some("#rust"));
        assert_eq!(name("＃ｒｕｓｔ").as_deref(), Some("#rust"));
        assert_eq!(name("#ＲＵＳＴ").as_deref(), Some("#rust"));
        assert_eq!(name("#a-b_9").as_deref(), Some("#a-b_9"));
        assert_eq!(name("#main"), Some(MAIN_ROOM.to_string()));
        assert!(RoomName::parse("#MAIN").unwrap().is_main());
    }

    #[test]
    fn names_are_one_to_thirty_two_allowed_characters_after_a_hash() {
        assert!(name(&format!("#{}", "x".repeat(MAX_ROOM_NAME_CHARS))).is_some());
        assert!(name(&format!("#{}", "x".repeat(MAX_ROOM_NAME_CHARS + 1))).is_none());
        assert!(name("#x").is_some());
        for bad in [
            "#",
            "rust",
            "",
            "#a b",
            "#é",
            "#Å",
            "#a.b",
            "##a",
            "#a#",
            "#\u{200B}a",
        ] {
            assert_eq!(name(bad), None, "{bad:?}");
        }
        // Non-ASCII capitals are not folded into ASCII.
        assert_eq!(name("#\u{212A}"), None); // Kelvin sign
    }

    #[test]
    fn the_rooms_parameter_lists_names_without_their_hash() {
        let names = |target| {
            rooms_param(target)
                .unwrap()
                .map(|rooms| rooms.iter().map(|r| r.to_string()).collect::<Vec<_>>())
        };
        assert_eq!(names("/"), None);
        assert_eq!(names("/?since=4"), None);
        assert_eq!(names("/?rooms="), Some(vec![]));
        assert_eq!(
            names("/?since=4&rooms=main,Rust,go#x"),
            Some(vec!["#main".into(), "#rust".into(), "#go".into()])
        );
        assert_eq!(names("/?rooms=%23rust,rust"), Some(vec!["#rust".into()]));
        assert_eq!(
            names("/?rooms=%EF%BD%92%EF%BD%95"),
            Some(vec!["#ru".into()])
        );
        assert_eq!(names("/?roomsx=a"), None);
        for bad in [
            "/?rooms=a%2",
            "/?rooms=a b",
            "/?rooms=%23",
            "/?rooms=a.b",
            "/?rooms=%ff",
        ] {
            assert!(rooms_param(bad).is_err(), "{bad}");
        }
        // A malformed escape is named as such, not taken for a control
        // character that then fails as a room name.
        for bad in ["/?rooms=a%2", "/?rooms=%zz", "/?rooms=%+1", "/?rooms=a,%-1"] {
            assert_eq!(
                rooms_param(bad),
                Err("rooms: a bad percent escape"),
                "{bad}"
            );
        }
    }
}
