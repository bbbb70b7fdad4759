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
    /// `/say #room TEXT`: the room as typed (checked by the chat) and the
    /// text, itself read for `/me`.
    SayIn(&'a str, &'a str),
    /// `/join #room`
    Join(&'a str),
    /// `/part [#room]` (`None`: `#main`)
    Part(Option<&'a str>),
    /// `/rooms`
    Rooms,
    /// `/topic #room [TEXT]` (`None`: the asker wants to know it; `Some("")`
    /// clears it)
    Topic(&'a str, Option<&'a str>),
    /// `/who #room`
    WhoIn(&'a str),
    /// `/msg NICK TEXT`
    Msg(&'a str, &'a str),
    /// `/kick`, `/ban`, `/unban`, `/mute`, `/oplock`
    Moderate(Moderation<'a>),
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
    let (command, untrimmed) = command_line
        .split_once(char::is_whitespace)
        .unwrap_or((command_line, ""));
    let argument = untrimmed.trim();
    match command {
        "me" if argument.is_empty() => Input::Usage("usage: /me TEXT"),
        "me" => Input::Action(argument),
        "nick" => Input::Nick(argument),
        "who" if argument.is_empty() => Input::Who,
        "who" => Input::WhoIn(argument),
        "rooms" => Input::Rooms,
        "join" if argument.is_empty() => Input::Usage("usage: /join #room"),
        "join" => Input::Join(argument),
        "part" if argument.is_empty() => Input::Part(None),
        "part" => Input::Part(Some(argument)),
        "topic" => topic_command(untrimmed.trim_start()),
        "kick" | "ban" | "unban" | "mute" | "oplock" => moderation_command(command, argument),
        _ => room_command(command, argument),
    }
}

/// A moderation command's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModAction {
    Kick,
    Ban,
    Unban,
    Mute,
    Oplock,
}

impl ModAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ModAction::Kick => "kick",
            ModAction::Ban => "ban",
            ModAction::Unban => "unban",
            ModAction::Mute => "mute",
            ModAction::Oplock => "oplock",
        }
    }
}

/// A moderation command as typed: the nickname (or address, for
/// `/unban`), the room if one is named, the duration, the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moderation<'a> {
    pub action: ModAction,
    /// The target's nickname (an address too for `/unban`); empty for
    /// `/oplock`.
    pub target: &'a str,
    /// The room as typed (checked by the chat), if one is named.
    pub room: Option<&'a str>,
    /// How long, in ms (`/ban`, `/mute`).
    pub duration: Option<u64>,
    /// The rest of the line (`/kick`, `/ban`).
    pub reason: Option<&'a str>,
    /// `/oplock #room on`.
    pub on: bool,
}

/// The longest DURATION accepted: a year. Longer is "until lifted": a
/// `/ban` without a DURATION.
pub const MAX_DURATION_SECS: u64 = 366 * 24 * 3600;

/// A DURATION: a whole number followed by `s`, `m`, `h` or `d`, from one
/// second to [`MAX_DURATION_SECS`]; in milliseconds.
///
/// ```
/// use wschat::room::parse_duration;
/// assert_eq!(parse_duration("90s"), Some(90_000));
/// assert_eq!(parse_duration("2d"), Some(2 * 86_400_000));
/// assert_eq!(parse_duration("10"), None);
/// ```
pub fn parse_duration(text: &str) -> Option<u64> {
    let unit = match text.chars().last()? {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    let digits = &text[..text.len() - 1];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let seconds = digits.parse::<u64>().ok()?.checked_mul(unit)?;
    (1..=MAX_DURATION_SECS)
        .contains(&seconds)
        .then_some(seconds * 1000)
}

const KICK_USAGE: &str = "usage: /kick NICK [#room] [REASON]";
const BAN_USAGE: &str = "usage: /ban NICK [#room] [DURATION] [REASON] (DURATION: 30m, 12h, 7d...)";
const UNBAN_USAGE: &str = "usage: /unban NICK|ADDRESS [#room]";
const MUTE_USAGE: &str = "usage: /mute NICK [#room] DURATION (DURATION: 90s, 10m, 1h, 1d...)";
const OPLOCK_USAGE: &str = "usage: /oplock #room on|off";

/// `/kick NICK [#room] [REASON]`, `/ban NICK [#room] [DURATION] [REASON]`,
/// `/unban NICK|ADDRESS [#room]`, `/mute NICK [#room] DURATION`,
/// `/oplock #room on|off`.
fn moderation_command<'a>(command: &str, argument: &'a str) -> Input<'a> {
    let mut rest = argument;
    let next = |rest: &mut &'a str| -> Option<&'a str> {
        let trimmed = rest.trim_start();
        if trimmed.is_empty() {
            return None;
        }
        let (word, after) = trimmed
            .split_once(char::is_whitespace)
            .unwrap_or((trimmed, ""));
        *rest = after;
        Some(word)
    };
    let mut moderation = Moderation {
        action: ModAction::Kick,
        target: "",
        room: None,
        duration: None,
        reason: None,
        on: false,
    };
    if command == "oplock" {
        let (Some(room), Some(state), None) = (next(&mut rest), next(&mut rest), next(&mut rest))
        else {
            return Input::Usage(OPLOCK_USAGE);
        };
        moderation.action = ModAction::Oplock;
        moderation.room = Some(room);
        moderation.on = match state {
            "on" => true,
            "off" => false,
            _ => return Input::Usage(OPLOCK_USAGE),
        };
        return Input::Moderate(moderation);
    }
    let (action, usage) = match command {
        "kick" => (ModAction::Kick, KICK_USAGE),
        "ban" => (ModAction::Ban, BAN_USAGE),
        "unban" => (ModAction::Unban, UNBAN_USAGE),
        _ => (ModAction::Mute, MUTE_USAGE),
    };
    moderation.action = action;
    let Some(target) = next(&mut rest) else {
        return Input::Usage(usage);
    };
    moderation.target = target;
    let peek = |rest: &str| rest.split_whitespace().next().map(str::to_string);
    if peek(rest).is_some_and(|w| w.starts_with('#')) {
        moderation.room = next(&mut rest);
    }
    if matches!(action, ModAction::Ban | ModAction::Mute)
        && let Some(duration) = peek(rest).and_then(|w| parse_duration(&w))
    {
        next(&mut rest);
        moderation.duration = Some(duration);
    }
    let reason = rest.trim();
    match action {
        ModAction::Mute if moderation.duration.is_none() || !reason.is_empty() => {
            return Input::Usage(usage);
        }
        ModAction::Unban if !reason.is_empty() => return Input::Usage(usage),
        _ => {}
    }
    moderation.reason = (!reason.is_empty()).then_some(reason);
    Input::Moderate(moderation)
}

/// The commands with two arguments: a room or a nickname, then text.
fn room_command<'a>(command: &'a str, argument: &'a str) -> Input<'a> {
    let (first, rest) = match argument.split_once(char::is_whitespace) {
        Some((first, rest)) => (first, Some(rest.trim())),
        None => (argument, None),
    };
    match (command, rest) {
        ("say", Some(text)) if !text.is_empty() => Input::SayIn(first, text),
        ("say", _) => Input::Usage("usage: /say #room TEXT"),
        ("msg", Some(text)) if !text.is_empty() => Input::Msg(first, text),
        ("msg", _) => Input::Usage("usage: /msg NICK TEXT"),
        _ => Input::Unknown(command),
    }
}

/// `/topic #room` asks; `/topic #room TEXT` sets, and an empty TEXT (the
/// room followed by a space) clears.
fn topic_command(argument: &str) -> Input<'_> {
    match argument.split_once(char::is_whitespace) {
        _ if argument.trim().is_empty() => Input::Usage("usage: /topic #room [TEXT]"),
        Some((room, text)) => Input::Topic(room, Some(text.trim())),
        None => Input::Topic(argument, None),
    }
}

/// The default nickname of client `id`; such names are reserved.
pub fn guest_nick(id: ClientId) -> String {
    format!("guest-{id}")
}

/// Checks a requested nickname's form (uniqueness is the room's business,
/// comparing [`nick_key`]s).
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
    // `ann` followed by a zero-width space would sit beside `ann`,
    // looking the same.
    if nick.chars().any(is_invisible) {
        return Err("nickname may not contain invisible or formatting characters");
    }
    if let Some(digits) = nick_key(nick).strip_prefix("guest-")
        && !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
    {
        return Err("guest-<number> names are reserved");
    }
    Ok(())
}

/// What two nicknames are compared by: lower case, with the fullwidth
/// forms of ASCII (U+FF01–FF5E, `ａｎｎ`) folded to ASCII (`ann`), so that
/// names that differ only in these read as the same name and cannot both
/// be taken.
///
/// ```
/// use wschat::room::nick_key;
/// assert_eq!(nick_key("Ann"), nick_key("ａｎｎ"));
/// assert_eq!(nick_key("ÅSA"), "åsa");
/// ```
pub fn nick_key(nick: &str) -> String {
    nick.chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            c => c,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// Characters that take no visible space, or change how text around them
/// is shown: Unicode's general category Cf ("format", Unicode 15.1) plus
/// the invisible characters of other categories that make lookalike names
/// (variation selectors, the combining grapheme joiner, Hangul fillers,
/// Mongolian free variation selectors). Each row is an inclusive range.
const INVISIBLE: &[(u32, u32)] = &[
    (0x00AD, 0x00AD),   // soft hyphen (Cf)
    (0x034F, 0x034F),   // combining grapheme joiner (Mn)
    (0x0600, 0x0605),   // Arabic number signs (Cf)
    (0x061C, 0x061C),   // Arabic letter mark (Cf)
    (0x06DD, 0x06DD),   // Arabic end of ayah (Cf)
    (0x070F, 0x070F),   // Syriac abbreviation mark (Cf)
    (0x0890, 0x0891),   // Arabic pound and piastre marks above (Cf)
    (0x08E2, 0x08E2),   // Arabic disputed end of ayah (Cf)
    (0x115F, 0x1160),   // Hangul choseong and jungseong fillers (Lo)
    (0x180B, 0x180F),   // Mongolian variation selectors and vowel separator
    (0x200B, 0x200F),   // zero-width space, (non-)joiner, LRM, RLM (Cf)
    (0x202A, 0x202E),   // bidi embeddings and overrides (Cf)
    (0x2060, 0x2064),   // word joiner, invisible operators (Cf)
    (0x2066, 0x206F),   // bidi isolates, deprecated format characters (Cf)
    (0x3164, 0x3164),   // Hangul filler (Lo)
    (0xFE00, 0xFE0F),   // variation selectors 1-16 (Mn)
    (0xFEFF, 0xFEFF),   // byte order mark, zero-width no-break space (Cf)
    (0xFFA0, 0xFFA0),   // halfwidth Hangul filler (Lo)
    (0xFFF9, 0xFFFB),   // interlinear annotation (Cf)
    (0x110BD, 0x110BD), // Kaithi number sign (Cf)
    (0x110CD, 0x110CD), // Kaithi number sign above (Cf)
    (0x13430, 0x1343F), // Egyptian hieroglyph format controls (Cf)
    (0x1BCA0, 0x1BCA3), // shorthand format controls (Cf)
    (0x1D173, 0x1D17A), // musical symbol beam and phrase controls (Cf)
    (0xE0001, 0xE0001), // language tag (Cf)
    (0xE0020, 0xE007F), // tag characters (Cf)
    (0xE0100, 0xE01EF), // variation selectors 17-256 (Mn)
];

/// Is `c` one of the [`INVISIBLE`] characters?
pub fn is_invisible(c: char) -> bool {
    let c = c as u32;
    INVISIBLE
        .iter()
        .any(|&(first, last)| (first..=last).contains(&c))
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
        assert_eq!(parse_input("/who #go"), Input::WhoIn("#go"));
        assert_eq!(
            parse_input("/say #go hi  there "),
            Input::SayIn("#go", "hi  there")
        );
        assert_eq!(
            parse_input("/say #go /me waves"),
            Input::SayIn("#go", "/me waves")
        );
        assert_eq!(
            parse_input("/say #go"),
            Input::Usage("usage: /say #room TEXT")
        );
        assert_eq!(parse_input("/say"), Input::Usage("usage: /say #room TEXT"));
        assert_eq!(parse_input("/join  #go"), Input::Join("#go"));
        assert_eq!(parse_input("/join"), Input::Usage("usage: /join #room"));
        assert_eq!(parse_input("/part"), Input::Part(None));
        assert_eq!(parse_input("/part #go"), Input::Part(Some("#go")));
        assert_eq!(parse_input("/rooms"), Input::Rooms);
        assert_eq!(parse_input("/topic #go"), Input::Topic("#go", None));
        assert_eq!(
            parse_input("/topic #go a b"),
            Input::Topic("#go", Some("a b"))
        );
        assert_eq!(parse_input("/topic  #go "), Input::Topic("#go", Some("")));
        assert_eq!(
            parse_input("/topic"),
            Input::Usage("usage: /topic #room [TEXT]")
        );
        assert_eq!(parse_input("/msg bob psst"), Input::Msg("bob", "psst"));
        assert_eq!(
            parse_input("/msg bob"),
            Input::Usage("usage: /msg NICK TEXT")
        );
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
        assert!(validate_nick("ＧＵＥＳＴ-12").is_err());
    }

    #[test]
    fn invisible_characters_are_refused_in_nicknames() {
        for c in [
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{200E}',
            '\u{200F}',
            '\u{202A}',
            '\u{202E}',
            '\u{2066}',
            '\u{2069}',
            '\u{2060}',
            '\u{FEFF}',
            '\u{AD}',
            '\u{FE0F}',
            '\u{FE00}',
            '\u{E0100}',
            '\u{E01EF}',
            '\u{34F}',
            '\u{115F}',
            '\u{1160}',
            '\u{3164}',
            '\u{FFA0}',
            '\u{E0041}',
            '\u{61C}',
        ] {
            for nick in [format!("ann{c}"), format!("{c}ann"), format!("a{c}nn")] {
                assert_eq!(
                    validate_nick(&nick),
                    Err("nickname may not contain invisible or formatting characters"),
                    "U+{:04X}",
                    c as u32
                );
            }
        }
        // Visible neighbours of those ranges are fine.
        for nick in [
            "ann\u{AC}",
            "a\u{2010}b",
            "x\u{FE10}",
            "\u{3165}",
            "é",
            "日本",
        ] {
            assert!(validate_nick(nick).is_ok(), "{nick:?}");
        }
        // The table is sorted and its ranges do not overlap.
        assert!(INVISIBLE.windows(2).all(|w| w[0].1 < w[1].0));
        assert!(INVISIBLE.iter().all(|&(a, b)| a <= b));
    }

    #[test]
    fn nick_keys_fold_case_and_fullwidth_forms() {
        assert_eq!(nick_key("ann"), "ann");
        assert_eq!(nick_key("ANN"), "ann");
        assert_eq!(nick_key("ａｎｎ"), "ann");
        assert_eq!(nick_key("ＡＮＮ"), "ann");
        assert_eq!(nick_key("Ａ！～"), "a!~");
        assert_eq!(nick_key("Åsa"), "åsa");
        assert_ne!(nick_key("ann"), nick_key("anm"));
        // U+FF5F is past the fullwidth ASCII block: left alone.
        assert_eq!(nick_key("\u{FF5F}"), "\u{FF5F}");
    }

    #[test]
    fn text_rules() {
        assert!("tab\tand\nnewline".chars().all(allowed_in_text));
        assert!(!allowed_in_text('\u{1b}'));
        assert!(!allowed_in_text('\u{7f}'));
        assert!(!allowed_in_text('\0'));
    }
}
