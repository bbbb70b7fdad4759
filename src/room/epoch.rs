//! The epoch: a short name for one history of message ids. Ids are plain
//! numbers that start again at 1 whenever a history is lost (a server
//! restarted without `--history-file`, a Redis that lost its data), so an
//! id alone cannot tell a resuming client whether the messages after it
//! are the ones it missed or another history's. The welcome carries the
//! epoch; a client resuming with `/?since=ID&epoch=E` from another epoch
//! (or with no epoch) is told `"gap":true` and given the whole kept
//! history — the epoch of Centrifugo's stream positions.
//!
//! An epoch is made once per history ([`Epoch::fresh`], by whoever starts
//! one: the server without a history file, a new history file, a Redis
//! without an epoch key) and then only passed around: the `Chat` stores
//! the one it is given.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};

/// The longest epoch a client may send back (`/?since=ID&epoch=E`).
/// The server's own are [`FRESH_EPOCH_CHARS`] long; the rest is headroom.
pub const MAX_EPOCH_CHARS: usize = 16;
/// The length of a new epoch: eight base-36 digits, about 41 random bits,
/// so two histories practically never share one.
pub const FRESH_EPOCH_CHARS: usize = 8;

/// A valid epoch: 1 to [`MAX_EPOCH_CHARS`] ASCII letters, digits, `-` or
/// `_` (nothing to escape in JSON, a URL or a Redis key).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Epoch(Box<str>);

impl Epoch {
    /// `text` if it is a valid epoch.
    pub fn parse(text: &str) -> Option<Epoch> {
        let valid = (1..=MAX_EPOCH_CHARS).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        valid.then(|| Epoch(text.into()))
    }

    /// The epoch written with the low bits of `bits`, in base 36
    /// ([`FRESH_EPOCH_CHARS`] digits, `0-9a-z`).
    pub fn from_bits(mut bits: u64) -> Epoch {
        const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let mut text = String::with_capacity(FRESH_EPOCH_CHARS);
        for _ in 0..FRESH_EPOCH_CHARS {
            text.push(DIGITS[(bits % 36) as usize] as char);
            bits /= 36;
        }
        Epoch(text.into())
    }

    /// A new epoch, random: the standard library's `RandomState` is seeded
    /// from the operating system's random source, and the time and the
    /// process id are mixed in besides.
    pub fn fresh() -> Epoch {
        let mut hasher = RandomState::new().build_hasher();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        hasher.write_u128(now);
        hasher.write_u32(std::process::id());
        Epoch::from_bits(hasher.finish())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a resuming client stands (`/?since=ID&epoch=E`): the last message
/// id it saw, in the epoch it saw it in (`None`: it sent none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    pub since: u64,
    pub epoch: Option<Epoch>,
}

/// The query of a chat upgrade's target, read for resuming: `since` (a
/// whole number) and `epoch`. No `since` is `Ok(None)` (an `epoch` alone
/// means nothing and is ignored); a malformed value is the reason for a
/// 400.
pub fn resume_param(target: &str) -> Result<Option<Resume>, &'static str> {
    let Some((_, query)) = target.split_once('?') else {
        return Ok(None);
    };
    let query = query.split('#').next().unwrap_or_default();
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
    };
    let Some(value) = param("since") else {
        return Ok(None);
    };
    let digits =
        !value.is_empty() && value.len() <= 20 && value.bytes().all(|b| b.is_ascii_digit());
    let since = match value.parse::<u64>() {
        Ok(since) if digits => since,
        _ => return Err("since must be a message id (a whole number)"),
    };
    let epoch = match param("epoch") {
        None => None,
        Some(text) => Some(
            Epoch::parse(text)
                .ok_or("epoch must be 1 to 16 letters, digits, - or _ (as the welcome gave it)")?,
        ),
    };
    Ok(Some(Resume { since, epoch }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_are_short_and_checked() {
        let fresh = Epoch::fresh();
        assert_eq!(fresh.as_str().len(), FRESH_EPOCH_CHARS);
        assert_eq!(Epoch::parse(fresh.as_str()), Some(fresh.clone()));
        assert_ne!(Epoch::fresh(), fresh, "a new one each time");
        assert_eq!(Epoch::from_bits(0).as_str(), "00000000");
        assert_eq!(Epoch::from_bits(35 + 36).as_str(), "z1000000");
        let longest = "a".repeat(MAX_EPOCH_CHARS);
        assert!(Epoch::parse(&longest).is_some());
        for bad in ["", "a b", "é", "a\"", "a/b", &format!("{longest}a")] {
            assert_eq!(Epoch::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn since_and_epoch_come_from_the_query() {
        let at = |since, epoch: Option<&str>| {
            Some(Resume {
                since,
                epoch: epoch.map(|e| Epoch::parse(e).unwrap()),
            })
        };
        assert_eq!(resume_param("/").unwrap(), None);
        assert_eq!(resume_param("/?x=1").unwrap(), None);
        assert_eq!(resume_param("/?epoch=ab").unwrap(), None);
        assert_eq!(resume_param("/?since=42").unwrap(), at(42, None));
        assert_eq!(resume_param("/?a=b&since=0#top").unwrap(), at(0, None));
        assert_eq!(
            resume_param("/?since=7&epoch=k3x9_a-2").unwrap(),
            at(7, Some("k3x9_a-2"))
        );
        assert_eq!(
            resume_param("/?epoch=zz&since=7#e").unwrap(),
            at(7, Some("zz"))
        );
        // `sinceX=` and `epochs=` are other parameters.
        assert_eq!(resume_param("/?sinceX=4&since=5").unwrap(), at(5, None));
        assert_eq!(resume_param("/?since=5&epochs=x").unwrap(), at(5, None));
        for bad in [
            "/?since=",
            "/?since=-1",
            "/?since=+1",
            "/?since=1x",
            "/?since=99999999999999999999",
        ] {
            let reason = resume_param(bad).unwrap_err();
            assert!(reason.contains("since must be a message id"), "{bad}");
        }
        for bad in [
            "/?since=1&epoch=",
            "/?since=1&epoch=a%20b",
            "/?since=1&epoch=aaaaaaaaaaaaaaaaa",
        ] {
            let reason = resume_param(bad).unwrap_err();
            assert!(reason.starts_with("epoch must be"), "{bad}");
        }
    }
}
