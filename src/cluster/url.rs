//! Where Redis is: `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`, the form
//! of the `--redis` flag (and of most Redis clients).
//!
//! ```text
//!   redis://127.0.0.1                  port 6379, no password, db 0
//!   redis://:s3cret@10.0.0.5:6380/2    password "s3cret", db 2
//!   redis://chat:s3cret@redis:6379/0   ACL user "chat" (Redis 6+)
//!   redis://[::1]:6379                 an IPv6 address in brackets
//! ```
//!
//! The user and password may be percent-encoded (`%40` for `@`, `%2F` for
//! `/`); raw, they are taken up to the last `@`. Errors are one line, fit
//! to print after the flag's name, and never echo any part of the user or
//! password.

use std::fmt;

/// The port Redis listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 6379;
/// The highest database number accepted in a URL. Redis has 16 databases
/// (0–15) unless its `databases` setting says more; a number past the
/// server's count is refused by `SELECT` when connecting.
pub const MAX_DB: u32 = 1_000_000;

/// A parsed `redis://` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// A host name or an IP address (IPv6 without its brackets).
    pub host: String,
    pub port: u16,
    /// The ACL user for `AUTH user password`; `None` means `AUTH password`.
    pub username: Option<String>,
    /// `None`: no `AUTH` at all.
    pub password: Option<String>,
    /// The database `SELECT`ed after connecting; 0 is the default and needs
    /// no `SELECT`.
    pub db: u32,
}

/// Why a URL was refused: one line, without the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlError(pub String);

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UrlError {}

fn err(reason: impl Into<String>) -> UrlError {
    UrlError(reason.into())
}

impl RedisUrl {
    /// Parses a `redis://` URL.
    ///
    /// ```
    /// use wschat::cluster::url::RedisUrl;
    ///
    /// let url = RedisUrl::parse("redis://:pw@127.0.0.1:7000/3").unwrap();
    /// assert_eq!((url.host.as_str(), url.port, url.db), ("127.0.0.1", 7000, 3));
    /// assert_eq!(url.password.as_deref(), Some("pw"));
    /// assert_eq!(RedisUrl::parse("redis://localhost").unwrap().port, 6379);
    /// ```
    pub fn parse(text: &str) -> Result<RedisUrl, UrlError> {
        let rest = match text.split_once("://") {
            Some(("redis", rest)) => rest,
            Some(("rediss", _)) => {
                return Err(err("rediss:// (TLS) is not supported; use redis://"));
            }
            Some((scheme, _)) => {
                return Err(err(format!(
                    "unsupported scheme {scheme:?}; expected redis://"
                )));
            }
            None => {
                return Err(err("expected redis://[[user]:password@]host[:port][/db]"));
            }
        };
        // The user and password come before the last '@' of the whole URL
        // (the db after the host is a number, never holding one): so a
        // raw '/' or '@' in a password, which should be percent-encoded,
        // still lands in the password and never in the host, port or db,
        // whose errors quote what they got.
        let (userinfo, after_userinfo) = match rest.rsplit_once('@') {
            Some((userinfo, after)) => (Some(userinfo), after),
            None => (None, rest),
        };
        // The host ends at the first '/'; what follows is the db.
        let (hostport, path) = match after_userinfo.split_once('/') {
            Some((hostport, path)) => (hostport, Some(path)),
            None => (after_userinfo, None),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(info) => {
                let (user, pass) = info.split_once(':').ok_or_else(|| {
                    err("user without a password; use redis://user:password@host")
                })?;
                let user =
                    percent_decode(user).ok_or_else(|| err("bad %-escape in the user name"))?;
                let pass =
                    percent_decode(pass).ok_or_else(|| err("bad %-escape in the password"))?;
                ((!user.is_empty()).then_some(user), Some(pass))
            }
        };
        let (host, port) = split_host_port(hostport)?;
        let db = match path {
            None | Some("") => 0,
            Some(db) => db
                .parse::<u32>()
                .ok()
                .filter(|&n| n <= MAX_DB && n.to_string() == db) // "/03" and "/+3" too
                // Not quoted: in a URL missing its '@', this could be
                // the end of a password.
                .ok_or_else(|| err(format!("database must be a number 0..={MAX_DB}")))?,
        };
        Ok(RedisUrl {
            host,
            port,
            username,
            password,
            db,
        })
    }

    /// `host:port`, for `TcpStream` (IPv6 in brackets).
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

fn split_host_port(hostport: &str) -> Result<(String, u16), UrlError> {
    let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| err("IPv6 address without its closing ']'"))?;
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| err("expected ':' after the IPv6 address"))?,
            ),
        };
        (host, port)
    } else {
        match hostport.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(err("missing host"));
    }
    if host.contains(|c: char| c.is_whitespace() || c == '?' || c == '#') {
        return Err(err(format!("invalid host {host:?}")));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0 && p.to_string() == port)
            // Not quoted: in a URL missing its '@', `user:password`
            // reads as `host:port`.
            .ok_or_else(|| err("port must be a number 1..=65535"))?,
    };
    Ok((host.to_string(), port))
}

/// Decodes `%XX` escapes; `None` for a malformed escape or a result that
/// is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    String::from_utf8(crate::protocol::handshake::percent_decode(text)?).ok()
}

/// Shows the URL with the password masked: safe for logs.
impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("redis://")?;
        match (&self.username, &self.password) {
            (Some(user), Some(_)) => write!(f, "{user}:***@")?,
            (None, Some(_)) => f.write_str(":***@")?,
            _ => {}
        }
        write!(f, "{}/{}", self.address(), self.db)
    }
}

/// Like Display: a password must not reach a log through `{:?}` either.
impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({self})")
    }
}

impl std::str::FromStr for RedisUrl {
    type Err = UrlError;

    fn from_str(text: &str) -> Result<RedisUrl, UrlError> {
        RedisUrl::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> RedisUrl {
        RedisUrl::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn host_alone_gets_the_default_port_and_db_0() {
        let u = url("redis://localhost");
        assert_eq!(
            (u.host.as_str(), u.port, u.db, u.username, u.password),
            ("localhost", 6379, 0, None, None)
        );
        assert_eq!(url("redis://localhost/").db, 0);
    }

    #[test]
    fn every_part() {
        let u = url("redis://:pw@127.0.0.1:7000/3");
        assert_eq!((u.host.as_str(), u.port, u.db), ("127.0.0.1", 7000, 3));
        assert_eq!((u.username, u.password.as_deref()), (None, Some("pw")));

        let u = url("redis://chat:s%40cret%3A@redis.internal:6380/15");
        assert_eq!(u.username.as_deref(), Some("chat"));
        assert_eq!(u.password.as_deref(), Some("s@cret:"));
        assert_eq!(
            (u.host.as_str(), u.port, u.db),
            ("redis.internal", 6380, 15)
        );

        let u = url("redis://[::1]:6390/1");
        assert_eq!((u.host.as_str(), u.port, u.db), ("::1", 6390, 1));
        assert_eq!(u.address(), "[::1]:6390");
        assert_eq!(url("redis://[::1]").port, 6379);

        // An empty password is still a password (AUTH "" is sent).
        assert_eq!(url("redis://:@h").password.as_deref(), Some(""));
    }

    #[test]
    fn refusals_are_one_line_and_never_show_the_password() {
        let cases = [
            ("localhost:6379", "expected redis://"),
            ("http://localhost", "unsupported scheme"),
            ("rediss://localhost", "TLS"),
            ("redis://", "missing host"),
            ("redis://:pw@", "missing host"),
            ("redis://h:", "port must be"),
            ("redis://h:0", "port must be"),
            ("redis://h:65536", "port must be"),
            ("redis://h:+80", "port must be"),
            ("redis://h:80x", "port must be"),
            ("redis://h/x", "database must be"),
            ("redis://h/-1", "database must be"),
            ("redis://h/03", "database must be"),
            ("redis://h/1000001", "database must be"),
            ("redis://h/1/2", "database must be"),
            ("redis://user@h", "user without a password"),
            ("redis://:p%zzsecret@h", "bad %-escape in the password"),
            ("redis://:p%+1secret@h", "bad %-escape in the password"),
            ("redis://u%-1:secret@h", "bad %-escape in the user name"),
            ("redis://[::1", "closing ']'"),
            ("redis://[::1]x", "expected ':'"),
            ("redis://h h", "invalid host"),
        ];
        for (text, expected) in cases {
            let e = RedisUrl::parse(text).expect_err(text).to_string();
            assert!(e.contains(expected), "{text}: {e}");
            assert!(!e.contains('\n'), "{text}: {e}");
            assert!(!e.contains("secret"), "{text}: {e}");
        }
    }

    /// A raw `/`, `@` or `:` in a password (not percent-encoded) stays in
    /// the password: it is never taken for a host, port or db, and no
    /// error quotes it.
    #[test]
    fn a_raw_slash_in_the_password_is_never_echoed() {
        let u = url("redis://:Sup3r/Secret@h:7/1");
        assert_eq!(u.password.as_deref(), Some("Sup3r/Secret"));
        assert_eq!((u.host.as_str(), u.port, u.db), ("h", 7, 1));
        let u = url("redis://chat:a@b/c:d@h");
        assert_eq!(u.password.as_deref(), Some("a@b/c:d"));
        let refused = [
            "redis://chat:Sup3rSecret/x@h:port",
            "redis://chat:Sup3r/Secret@h/db",
            "redis://chat:Sup3rSecret",
            "redis://chat:Sup3r/Secret",
            "redis://chat:Sup3rSecret/9999999",
            "redis://:Sup3r/Secret@",
            "redis://:Sup3r%zz/Secret@h",
        ];
        for text in refused {
            let e = RedisUrl::parse(text).expect_err(text).to_string();
            for part in ["Sup3r", "Secret", "chat"] {
                assert!(!e.contains(part), "{text}: {e}");
            }
        }
    }

    #[test]
    fn display_and_debug_mask_the_password() {
        let u = url("redis://chat:hunter2@h:1/2");
        assert_eq!(u.to_string(), "redis://chat:***@h:1/2");
        assert!(!format!("{u:?}").contains("hunter2"));
        assert_eq!(url("redis://:x@h").to_string(), "redis://:***@h:6379/0");
        assert_eq!(url("redis://h").to_string(), "redis://h:6379/0");
        assert_eq!("redis://h:5".parse::<RedisUrl>().unwrap().port, 5);
    }
}
