//! Limits per client address: WebSocket connections
//! (`--max-clients-per-ip`) and connections still sending their request
//! head (`--max-pending-per-ip`), so that one address cannot take every
//! place that the server-wide limits (`--max-clients`,
//! `MAX_PENDING_HANDSHAKES`) leave for everyone.
//!
//! One map from address to what it holds, behind one lock. It is touched
//! a few times per connection (accept, end of the head, upgrade, close),
//! never per message, and only for addresses a limit applies to: with the
//! default limits, connections from loopback never take the lock. An entry
//! lives only while its address holds a place, so the map never has more
//! entries than there are connections.
//!
//! An IPv6 address is counted by its /64, the smallest subnet a network
//! hands out (RFC 4291 §2.5.4): a single host can use any address in its
//! /64, so counting addresses one by one would count nothing.

use crate::config::PerAddressLimit;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};

/// What is counted as one address: an IPv4 address, or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddressKey(IpAddr);

impl AddressKey {
    pub fn of(ip: IpAddr) -> AddressKey {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !u128::from(u64::MAX);
                AddressKey(IpAddr::V6(Ipv6Addr::from(prefix)))
            }
            v4 => AddressKey(v4),
        }
    }
}

/// The two kinds of place an address can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// A connection whose request head has not arrived yet.
    Pending,
    /// A WebSocket connection.
    Client,
}

#[derive(Debug, Default)]
struct Held {
    pending: usize,
    clients: usize,
}

impl Held {
    fn count(&mut self, hold: Hold) -> &mut usize {
        match hold {
            Hold::Pending => &mut self.pending,
            Hold::Client => &mut self.clients,
        }
    }
}

/// The places each address holds, and the limits.
#[derive(Debug)]
pub struct AddressLimits {
    clients: PerAddressLimit,
    pending: PerAddressLimit,
    held: Mutex<HashMap<AddressKey, Held>>,
}

impl AddressLimits {
    pub fn new(clients: PerAddressLimit, pending: PerAddressLimit) -> Arc<AddressLimits> {
        Arc::new(AddressLimits {
            clients,
            pending,
            held: Mutex::new(HashMap::new()),
        })
    }

    pub fn limit(&self, hold: Hold) -> PerAddressLimit {
        match hold {
            Hold::Pending => self.pending,
            Hold::Client => self.clients,
        }
    }

    /// Takes a place of kind `hold` for `ip`, held until the returned
    /// place is dropped: `Ok(None)` when no limit applies to `ip`,
    /// `Err(max)` when its address already holds `max` places of the kind.
    pub fn take(self: &Arc<Self>, hold: Hold, ip: IpAddr) -> Result<Option<AddressPlace>, usize> {
        let limit = self.limit(hold);
        if !limit.applies_to(ip) {
            return Ok(None);
        }
        let key = AddressKey::of(ip);
        // Nothing in this module panics under the lock; should it ever
        // be poisoned, the counts are still whole numbers worth keeping.
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = held.entry(key).or_default();
        let count = entry.count(hold);
        if *count >= limit.max {
            if entry.pending == 0 && entry.clients == 0 {
                held.remove(&key); // a limit of 0: nothing is held
            }
            return Err(limit.max);
        }
        *count += 1;
        Ok(Some(AddressPlace {
            limits: self.clone(),
            key,
            hold,
        }))
    }

    /// How many places of kind `hold` the address of `ip` holds now.
    #[cfg(test)]
    fn held(&self, hold: Hold, ip: IpAddr) -> usize {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.get_mut(&AddressKey::of(ip))
            .map_or(0, |entry| *entry.count(hold))
    }

    /// Addresses holding anything now.
    #[cfg(test)]
    fn addresses(&self) -> usize {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// One place held by an address; given back when dropped.
#[derive(Debug)]
pub struct AddressPlace {
    limits: Arc<AddressLimits>,
    key: AddressKey,
    hold: Hold,
}

impl Drop for AddressPlace {
    fn drop(&mut self) {
        let mut held = self
            .limits
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = held.get_mut(&self.key) {
            let count = entry.count(self.hold);
            *count = count.saturating_sub(1);
            if entry.pending == 0 && entry.clients == 0 {
                held.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            AddressKey::of(ip("2001:db8:1:2:aaaa::1")),
            AddressKey::of(ip("2001:db8:1:2:bbbb::9"))
        );
        assert_ne!(
            AddressKey::of(ip("2001:db8:1:2::1")),
            AddressKey::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            AddressKey::of(ip("::ffff:192.0.2.1")),
            AddressKey::of(ip("192.0.2.1"))
        );
        assert_ne!(
            AddressKey::of(ip("192.0.2.1")),
            AddressKey::of(ip("192.0.2.2"))
        );
    }

    #[test]
    fn places_are_counted_up_to_the_limit_and_given_back() {
        let limits = AddressLimits::new(
            PerAddressLimit::everywhere(2),
            PerAddressLimit::everywhere(1),
        );
        let a = ip("192.0.2.1");
        let one = limits.take(Hold::Client, a).unwrap().unwrap();
        let two = limits.take(Hold::Client, a).unwrap().unwrap();
        assert_eq!(limits.take(Hold::Client, a).unwrap_err(), 2);
        // Another address, and the other kind, are counted apart.
        let other = limits.take(Hold::Client, ip("192.0.2.2")).unwrap();
        let pending = limits.take(Hold::Pending, a).unwrap();
        assert_eq!(limits.take(Hold::Pending, a).unwrap_err(), 1);
        assert_eq!(
            (limits.held(Hold::Client, a), limits.held(Hold::Pending, a)),
            (2, 1)
        );
        drop(one);
        let three = limits.take(Hold::Client, a).unwrap();
        drop((two, three, other, pending));
        assert_eq!(limits.addresses(), 0, "empty entries are removed");
    }

    #[test]
    fn default_limits_leave_loopback_uncounted() {
        let limits = AddressLimits::new(
            PerAddressLimit::by_default(1),
            PerAddressLimit::everywhere(1),
        );
        for _ in 0..3 {
            assert!(
                limits
                    .take(Hold::Client, ip("127.0.0.1"))
                    .unwrap()
                    .is_none()
            );
            assert!(limits.take(Hold::Client, ip("::1")).unwrap().is_none());
        }
        assert_eq!(limits.addresses(), 0);
        // An explicit limit counts loopback like any address.
        let _held = limits
            .take(Hold::Pending, ip("127.0.0.1"))
            .unwrap()
            .unwrap();
        assert!(limits.take(Hold::Pending, ip("127.0.0.1")).is_err());
        assert!(
            limits
                .take(Hold::Pending, ip("127.0.0.2"))
                .unwrap()
                .is_some()
        );
    }
}
