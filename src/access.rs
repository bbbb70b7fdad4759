//! Who may use this server, beyond what RFC 6455 says: which host names a
//! request may be addressed to (a defence against DNS rebinding), and which
//! browser pages may open a WebSocket (the Origin policy of §10.2).
//!
//! **DNS rebinding.** A web page on `evil.example` can make its own name
//! resolve to 127.0.0.1 after it has loaded. Its scripts then talk to a
//! server on this machine, and to the browser that is the page's own
//! origin: it sends `Host: evil.example:8080` and a matching `Origin`, so
//! an Origin check alone lets it in. The Host header gives it away: a
//! server bound to loopback is only ever reached by loopback names, so any
//! other name is refused (403) unless listed with `--allow-host`.

use std::net::{Ipv4Addr, Ipv6Addr};

/// The one-line reason sent (and logged) with the 403 for a foreign Host.
pub const HOST_NOT_ALLOWED: &str = "host not allowed (see --allow-host)";

/// Is a request whose `Host` header is `host` (`name`, `name:port`,
/// `[v6]` or `[v6]:port`) addressed to this server?
///
/// Loopback names are always accepted: `localhost`, `*.localhost`,
/// `127.0.0.0/8` literals and `[::1]` (no page can have these as its
/// origin and a public name at once). Other names are accepted when they
/// match a `--allow-host` pattern in `allowed`: `NAME` exactly, `.DOMAIN`
/// for that domain and its subdomains, `*` for any. With no pattern given,
/// a server bound to a non-loopback address accepts any name (it is meant
/// to be reached by names this server cannot know), and one bound to
/// loopback accepts loopback names only.
///
/// ```
/// use wschat::access::host_allowed;
///
/// let none: &[String] = &[];
/// assert!(host_allowed("localhost:8080", true, none));
/// assert!(host_allowed("127.0.0.1:8080", true, none));
/// assert!(!host_allowed("evil.example:8080", true, none)); // DNS rebinding
/// assert!(host_allowed("evil.example:8080", false, none)); // bound to 0.0.0.0
/// assert!(host_allowed("chat.example.com", true, &[".example.com".to_string()]));
/// assert!(!host_allowed("chat.example.net", false, &["chat.example.com".to_string()]));
/// ```
pub fn host_allowed(host: &str, bound_to_loopback: bool, allowed: &[String]) -> bool {
    let Some((name, _port)) = split_host_port(host, 0) else {
        return false;
    };
    // A fully qualified `localhost.` is the same name. Lower-cased on the
    // stack when it fits a DNS name (RFC 1035 §2.3.4): on a connection's
    // thread, a freed block stays cached for the connection's life.
    let name = name.strip_suffix('.').unwrap_or(name);
    let mut stack = [0u8; 255];
    let lowered: String;
    let name = match stack.get_mut(..name.len()) {
        Some(lower) => {
            lower.copy_from_slice(name.as_bytes());
            lower.make_ascii_lowercase();
            std::str::from_utf8(lower).expect("ASCII case changes keep UTF-8")
        }
        None => {
            lowered = name.to_ascii_lowercase();
            &lowered
        }
    };
    if is_loopback_name(name) {
        return true;
    }
    if allowed.is_empty() {
        return !bound_to_loopback;
    }
    allowed.iter().any(|pattern| matches_pattern(name, pattern))
}

/// `localhost`, a subdomain of it (RFC 6761 §6.3 keeps them all on
/// loopback), an IPv4 literal in 127.0.0.0/8, or `::1`. `name` is lower
/// case, with the brackets of an IPv6 literal already taken off.
fn is_loopback_name(name: &str) -> bool {
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
        || name.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// Does lower-case host `name` match an `--allow-host` pattern?
fn matches_pattern(name: &str, pattern: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let pattern = pattern.trim_start_matches('[').trim_end_matches(']');
    match pattern.strip_prefix('.') {
        _ if pattern == "*" => true,
        Some(domain) => {
            name == domain
                || name
                    .strip_suffix(domain)
                    .is_some_and(|sub| sub.ends_with('.'))
        }
        None => name == pattern,
    }
}

/// Is `pattern` something `--allow-host` understands: `*`, a host name or
/// address, or `.` followed by a domain name?
pub fn is_host_pattern(pattern: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let name = pattern.strip_prefix('.').unwrap_or(pattern);
    let name = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b))
}

/// Is a browser page at `origin` allowed to open a socket here?
///
/// A request without `Origin` comes from a non-browser client and is
/// allowed (RFC 6455 §10.2: Origin protects browser users, it is not
/// authentication). A page served by this same host and port is allowed.
/// Anything else (another site, or the opaque origin `null`) must be
/// listed in `allowed`, where `*` allows every origin.
///
/// ```
/// use wschat::access::origin_allowed;
///
/// assert!(origin_allowed(None, "localhost:8080", &[]));
/// assert!(origin_allowed(Some("http://localhost:8080"), "localhost:8080", &[]));
/// assert!(!origin_allowed(Some("https://evil.example"), "localhost:8080", &[]));
/// assert!(origin_allowed(Some("https://evil.example"), "localhost:8080", &["*".into()]));
/// ```
pub fn origin_allowed(origin: Option<&str>, host: &str, allowed: &[String]) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    if allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
    {
        return true;
    }
    same_origin(origin, host)
}

/// Compares an Origin (`scheme://host[:port]`) with a Host header
/// (`host[:port]`), filling in the scheme's default port on either side.
fn same_origin(origin: &str, host: &str) -> bool {
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => 80,
        "https" | "wss" => 443,
        _ => return false,
    };
    match (
        split_host_port(rest, default_port),
        split_host_port(host, default_port),
    ) {
        (Some((oh, op)), Some((hh, hp))) => oh.eq_ignore_ascii_case(hh) && op == hp,
        _ => false,
    }
}

/// Splits `host[:port]` (or `[v6]:port`), defaulting the port.
fn split_host_port(s: &str, default_port: u16) -> Option<(&str, u16)> {
    if s.contains('/') || s.is_empty() {
        return None;
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        match after.strip_prefix(':') {
            Some(port) => (host, port.parse().ok()?),
            None if after.is_empty() => (host, default_port),
            None => return None,
        }
    } else {
        match s.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().ok()?),
            None => (s, default_port),
        }
    };
    (!host.is_empty()).then_some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names() {
        let none: &[String] = &[];
        for host in [
            "localhost",
            "localhost:8080",
            "LOCALHOST:1",
            "localhost.",
            "chat.localhost:8080",
            "127.0.0.1",
            "127.255.0.9:80",
            "[::1]",
            "[::1]:8080",
        ] {
            assert!(host_allowed(host, true, none), "{host}");
        }
        for host in [
            "evil.example",
            "localhost.evil.example",
            "127.0.0.1.nip.io:8080",
            "128.0.0.1",
            "0.0.0.0:8080",
            "[::2]:8080",
            "[::1",
            "localhost:port",
            "",
            ":8080",
        ] {
            assert!(!host_allowed(host, true, none), "{host}");
        }
    }

    #[test]
    fn patterns() {
        let allowed = ["chat.example".to_string(), ".example.org".to_string()];
        for (host, ok) in [
            ("chat.example", true),
            ("Chat.Example:443", true),
            ("x.chat.example", false),
            ("example.org", true),
            ("a.b.example.org:8080", true),
            ("badexample.org", false),
            ("localhost:1", true),
        ] {
            assert_eq!(host_allowed(host, true, &allowed), ok, "{host}");
            assert_eq!(host_allowed(host, false, &allowed), ok, "{host}");
        }
        assert!(host_allowed("any.thing", true, &["*".into()]));
        assert!(host_allowed(
            "[2001:db8::1]:80",
            true,
            &["[2001:db8::1]".into()]
        ));
        assert!(is_host_pattern(".example.com") && is_host_pattern("*"));
        assert!(is_host_pattern("[::1]") && is_host_pattern("10.0.0.1"));
        assert!(!is_host_pattern("") && !is_host_pattern("a b") && !is_host_pattern("a/b"));
    }

    #[test]
    fn origins() {
        assert!(origin_allowed(
            Some("http://localhost"),
            "localhost:80",
            &[]
        ));
        assert!(origin_allowed(
            Some("https://LOCALHOST"),
            "localhost:443",
            &[]
        ));
        assert!(origin_allowed(Some("https://localhost"), "localhost", &[]));
        assert!(!origin_allowed(
            Some("http://localhost:8081"),
            "localhost:8080",
            &[]
        ));
        assert!(!origin_allowed(Some("null"), "localhost:8080", &[]));
        assert!(origin_allowed(
            Some("null"),
            "localhost:8080",
            &["null".into()]
        ));
        assert!(origin_allowed(Some("http://[::1]:8080"), "[::1]:8080", &[]));
    }
}
