//! Who a request is really from when it comes through a reverse proxy:
//! the `--trusted-proxy` list and the `X-Forwarded-For` header.
//!
//! Behind nginx every connection comes from the proxy's address, so limits
//! per address would count all clients as one. nginx says who its client
//! was in `X-Forwarded-For`, but anyone can send that header, so it is
//! believed only from a proxy named with `--trusted-proxy`; from anyone
//! else it is ignored and the TCP peer is the client.
//!
//! nginx's `$proxy_add_x_forwarded_for` *appends* the address it sees to
//! whatever the client sent: `X-Forwarded-For: forged, 203.0.113.7`. Only
//! the entries added by trusted proxies can be believed, and those are at
//! the right end. So the header is read from the right, skipping entries
//! that are themselves trusted proxies (a chain of them), and the first
//! entry that is not one is the client. Everything to its left was written
//! by the client or by proxies nobody vouches for.
//!
//! Malformed input has one answer, and never a panic: an empty list
//! element is skipped (RFC 9110 §5.6.1 lets a sender leave them); an entry
//! that is not an address (`unknown`, a name, garbage, an entry longer
//! than [`MAX_ENTRY_BYTES`]), or a walk past [`MAX_HOPS`] trusted
//! entries, ends the walk, and the client is the last trusted hop reached
//! (the proxy itself when it is the first entry). A client can therefore
//! never make up an address by sending garbage: at worst it is counted
//! as its proxy. The header is only parsed, never copied: entries are
//! slices of the request head.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The header read, as nginx and most proxies send it. (The `Forwarded`
/// header of RFC 7239 is not read: nginx does not send it.)
pub const FORWARDED_FOR: &str = "X-Forwarded-For";
/// The most entries examined, from the right: far more than any real
/// chain of proxies, and a bound on the work whatever the header holds.
pub const MAX_HOPS: usize = 16;
/// The longest entry parsed: `[` an IPv6 address `]:65535` is 47 bytes;
/// a longer entry is malformed without a look inside.
pub const MAX_ENTRY_BYTES: usize = 64;

/// An address, or a block of addresses in CIDR notation (`10.0.0.0/8`,
/// `2001:db8::/32`): a `--trusted-proxy` value.
///
/// ```
/// use wschat::forwarded::AddrBlock;
///
/// let block = AddrBlock::parse("10.0.0.0/8").unwrap();
/// assert!(block.contains("10.1.2.3".parse().unwrap()));
/// assert!(!block.contains("11.0.0.1".parse().unwrap()));
/// assert!(AddrBlock::parse("127.0.0.1").unwrap().contains("127.0.0.1".parse().unwrap()));
/// assert!(AddrBlock::parse("10.0.0.1/8").is_err()); // bits set past the prefix
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrBlock {
    network: IpAddr,
    prefix_len: u8,
}

impl AddrBlock {
    /// Parses `ADDR` or `ADDR/LEN`. The error is one line, for `--help`
    /// users: a prefix out of range, or address bits set past the prefix
    /// (`10.0.0.1/8` is most likely a typo, and is refused rather than
    /// guessed at).
    pub fn parse(text: &str) -> Result<AddrBlock, String> {
        let (addr, len) = match text.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("'{text}' is not an IP address or ADDR/LEN block"))?;
        let network = network.to_canonical();
        let bits = match network {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        let prefix_len = match len {
            None => bits,
            Some(len) => len
                .parse::<u8>()
                .ok()
                .filter(|&n| n <= bits && len.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| format!("'{text}': the prefix length must be 0 to {bits}"))?,
        };
        let block = AddrBlock {
            network,
            prefix_len,
        };
        if block.masked(network) != network {
            return Err(format!(
                "'{text}' has address bits set past the /{prefix_len} (did you mean {}/{prefix_len}?)",
                block.masked(network)
            ));
        }
        Ok(block)
    }

    /// Is `ip` in this block? An IPv4 address written as IPv6
    /// (`::ffff:10.0.0.1`, as a dual-stack socket shows it) counts as the
    /// IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        match (ip, self.network) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                self.masked(ip) == self.network
            }
            _ => false,
        }
    }

    /// `ip` with the bits past this block's prefix cleared.
    fn masked(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix_len));
                Ipv4Addr::from(u32::from(v4) & mask.unwrap_or(0)).into()
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix_len));
                Ipv6Addr::from(u128::from(v6) & mask.unwrap_or(0)).into()
            }
        }
    }
}

impl fmt::Display for AddrBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

/// Is `ip` one of the trusted proxies?
pub fn is_trusted(ip: IpAddr, trusted: &[AddrBlock]) -> bool {
    trusted.iter().any(|block| block.contains(ip))
}

/// The client's address for a request from `peer` whose `X-Forwarded-For`
/// header lines are `forwarded_for`, in the order they came (RFC 9110
/// §5.3: several lines are one comma-separated list). From a peer that is
/// not a trusted proxy, the header is ignored: the answer is `peer`.
///
/// ```
/// use wschat::forwarded::{AddrBlock, client_address};
///
/// let ip = |s: &str| s.parse().unwrap();
/// let nginx = [AddrBlock::parse("127.0.0.1").unwrap()];
/// // The rightmost entry is what nginx saw; the one left of it was forged.
/// let header = ["198.51.100.1, 203.0.113.7"];
/// assert_eq!(client_address(ip("127.0.0.1"), header, &nginx), ip("203.0.113.7"));
/// // From anyone else the header means nothing.
/// assert_eq!(client_address(ip("192.0.2.9"), header, &nginx), ip("192.0.2.9"));
/// // Garbage from a trusted proxy: the proxy itself is the client.
/// assert_eq!(client_address(ip("127.0.0.1"), ["unknown"], &nginx), ip("127.0.0.1"));
/// ```
pub fn client_address<'a, I>(peer: IpAddr, forwarded_for: I, trusted: &[AddrBlock]) -> IpAddr
where
    I: IntoIterator<Item = &'a str>,
    I::IntoIter: DoubleEndedIterator,
{
    let peer = peer.to_canonical();
    if !is_trusted(peer, trusted) {
        return peer;
    }
    // The nearest hop known so far; every entry walked past is trusted.
    let mut nearest = peer;
    let mut hops = 0;
    let entries = forwarded_for
        .into_iter()
        .rev()
        .flat_map(|line| line.rsplit(','));
    for entry in entries {
        let entry = entry.trim_matches([' ', '\t']);
        if entry.is_empty() {
            continue;
        }
        hops += 1;
        if hops > MAX_HOPS {
            break;
        }
        let Some(ip) = parse_entry(entry) else { break };
        if !is_trusted(ip, trusted) {
            return ip;
        }
        nearest = ip;
    }
    nearest
}

/// One `X-Forwarded-For` entry: an IPv4 or IPv6 address, bracketed or
/// not, optionally with a port (`192.0.2.1:5000`, `[2001:db8::1]:443`; a
/// few proxies add one), which is ignored. `None` for anything else.
///
/// ```
/// use wschat::forwarded::parse_entry;
///
/// assert_eq!(parse_entry("192.0.2.1:5000"), "192.0.2.1".parse().ok());
/// assert_eq!(parse_entry("[2001:db8::1]"), "2001:db8::1".parse().ok());
/// assert_eq!(parse_entry("unknown"), None);
/// ```
pub fn parse_entry(entry: &str) -> Option<IpAddr> {
    if entry.len() > MAX_ENTRY_BYTES {
        return None;
    }
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    let (host, port) = match entry.strip_prefix('[') {
        Some(rest) => {
            let (host, after) = rest.split_once(']')?;
            let ip = host.parse::<Ipv6Addr>().ok()?;
            match after {
                "" => return Some(IpAddr::V6(ip).to_canonical()),
                _ => (IpAddr::V6(ip), after.strip_prefix(':')?),
            }
        }
        None => {
            let (host, port) = entry.split_once(':')?;
            (IpAddr::V4(host.parse().ok()?), port)
        }
    };
    let port_ok =
        !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok();
    port_ok.then(|| host.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn blocks(list: &[&str]) -> Vec<AddrBlock> {
        list.iter().map(|b| AddrBlock::parse(b).unwrap()).collect()
    }

    #[test]
    fn blocks_parse_and_contain() {
        let b = AddrBlock::parse("10.0.0.0/8").unwrap();
        assert_eq!(b.to_string(), "10.0.0.0/8");
        assert!(b.contains(ip("10.255.255.255")) && b.contains(ip("::ffff:10.0.0.1")));
        assert!(!b.contains(ip("11.0.0.0")) && !b.contains(ip("::1")));
        let all = AddrBlock::parse("0.0.0.0/0").unwrap();
        assert!(all.contains(ip("255.255.255.255")) && !all.contains(ip("::2")));
        let v6 = AddrBlock::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")) && !v6.contains(ip("2001:db9::1")));
        assert!(AddrBlock::parse("::/0").unwrap().contains(ip("::1")));
        let one = AddrBlock::parse("::1").unwrap();
        assert_eq!(one.to_string(), "::1/128");
        assert!(one.contains(ip("::1")) && !one.contains(ip("127.0.0.1")));
        // A mapped address is the IPv4 address.
        assert_eq!(
            AddrBlock::parse("::ffff:127.0.0.1").unwrap().to_string(),
            "127.0.0.1/32"
        );
        assert_eq!(AddrBlock::parse("192.0.2.7/32").unwrap().prefix_len, 32);
        for bad in [
            "",
            "/8",
            "10.0.0.0/",
            "10.0.0.0/33",
            "10.0.0.0/+8",
            "10.0.0.0/8/8",
            "2001:db8::/129",
            "10.0.0.1/8",
            "localhost",
            "10.0.0",
            "[::1]",
            "10.0.0.0/256",
        ] {
            let e = AddrBlock::parse(bad).unwrap_err();
            assert!(!e.contains('\n'), "{e}");
        }
        assert!(
            AddrBlock::parse("10.0.0.1/8")
                .unwrap_err()
                .contains("did you mean 10.0.0.0/8?")
        );
    }

    #[test]
    fn entries_parse() {
        for (entry, want) in [
            ("192.0.2.1", Some("192.0.2.1")),
            ("192.0.2.1:80", Some("192.0.2.1")),
            ("2001:db8::1", Some("2001:db8::1")),
            ("[2001:db8::1]", Some("2001:db8::1")),
            ("[2001:db8::1]:65535", Some("2001:db8::1")),
            ("::ffff:192.0.2.1", Some("192.0.2.1")),
            ("[::ffff:192.0.2.1]:1", Some("192.0.2.1")),
            ("unknown", None),
            ("_hidden", None),
            ("example.com", None),
            ("192.0.2.1:", None),
            ("192.0.2.1:65536", None),
            ("192.0.2.1:+80", None),
            ("192.0.2.1:80:80", None),
            ("[2001:db8::1]80", None),
            ("[2001:db8::1", None),
            ("[192.0.2.1]", None),
            ("fe80::1%eth0", None),
            ("192.0.2.256", None),
            ("1.2.3", None),
            ("", None),
            ("\u{1F600}", None),
        ] {
            assert_eq!(parse_entry(entry), want.map(ip), "{entry:?}");
        }
        let long = format!("{}1.2.3.4", "0".repeat(MAX_ENTRY_BYTES));
        assert_eq!(parse_entry(&long), None);
    }

    #[test]
    fn the_header_counts_only_from_a_trusted_proxy() {
        let trusted = blocks(&["127.0.0.1", "10.0.0.0/8"]);
        let peer = ip("192.0.2.50");
        assert_eq!(client_address(peer, ["203.0.113.7"], &trusted), peer);
        assert_eq!(client_address(peer, ["203.0.113.7"], &[]), peer);
        assert_eq!(
            client_address(ip("127.0.0.1"), ["203.0.113.7"], &[]),
            ip("127.0.0.1")
        );
        // A mapped peer is its IPv4 address, trusted or not.
        assert_eq!(
            client_address(ip("::ffff:192.0.2.50"), ["203.0.113.7"], &trusted),
            peer
        );
        assert_eq!(
            client_address(ip("::ffff:127.0.0.1"), ["203.0.113.7"], &trusted),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn the_rightmost_untrusted_entry_is_the_client() {
        let trusted = blocks(&["127.0.0.1", "10.0.0.0/8"]);
        let proxy = ip("127.0.0.1");
        let cases: &[(&[&str], &str)] = &[
            (&["203.0.113.7"], "203.0.113.7"),
            // Forged entries on the left are never reached.
            (&["198.51.100.1, 203.0.113.7"], "203.0.113.7"),
            (&["198.51.100.1,203.0.113.7"], "203.0.113.7"),
            (&["10.0.0.1, 203.0.113.7"], "203.0.113.7"),
            // Trusted hops on the right are walked past.
            (&["198.51.100.1, 203.0.113.7, 10.1.1.1"], "203.0.113.7"),
            (&["203.0.113.7, 10.1.1.1, 127.0.0.1"], "203.0.113.7"),
            // Several header lines are one list, the last line nearest.
            (&["198.51.100.1", "203.0.113.7"], "203.0.113.7"),
            (&["203.0.113.7", "10.1.1.1"], "203.0.113.7"),
            (&["198.51.100.1, 203.0.113.7", ""], "203.0.113.7"),
            // Empty elements are skipped.
            (&[" , 203.0.113.7 ,, \t,"], "203.0.113.7"),
            // Ports and brackets.
            (&["[2001:db8::7]:443"], "2001:db8::7"),
            (&["203.0.113.7:5000"], "203.0.113.7"),
            // Malformed: the walk stops at the last trusted hop.
            (&["unknown"], "127.0.0.1"),
            (&["203.0.113.7, garbage"], "127.0.0.1"),
            (&["203.0.113.7, unknown, 10.2.2.2"], "10.2.2.2"),
            (&["203.0.113.7:99999"], "127.0.0.1"),
            // Nothing usable at all.
            (&[], "127.0.0.1"),
            (&[""], "127.0.0.1"),
            (&[",,,"], "127.0.0.1"),
            // Only trusted hops: the farthest one.
            (&["10.9.9.9, 10.1.1.1"], "10.9.9.9"),
        ];
        for (lines, want) in cases {
            let got = client_address(proxy, lines.iter().copied(), &trusted);
            assert_eq!(got, ip(want), "{lines:?}");
        }
    }

    #[test]
    fn the_walk_is_bounded() {
        let trusted = blocks(&["10.0.0.0/8"]);
        let proxy = ip("10.0.0.1");
        // The client as the MAX_HOPS-th entry, behind trusted ones: found.
        let mut line = String::from("203.0.113.7");
        for _ in 0..MAX_HOPS - 1 {
            line.push_str(", 10.0.0.2");
        }
        assert_eq!(
            client_address(proxy, [line.as_str()], &trusted),
            ip("203.0.113.7")
        );
        // One more trusted entry: the walk stops at the last one reached.
        line.push_str(", 10.0.0.3");
        assert_eq!(
            client_address(proxy, [line.as_str()], &trusted),
            ip("10.0.0.2")
        );
        // A whole head's worth of entries and commas, any bytes: no panic.
        let junk = ",10.0.0.9".repeat(900) + &"\u{0}[]:%,".repeat(300);
        let _ = client_address(proxy, [junk.as_str()], &trusted);
    }
}
