//! Connection caps: a connection is admitted against a total and a per-address count, and
//! holds its place until it is dropped.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};

/// Why a connection was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the server holds its maximum of {0} connections")]
    Total(usize),
    #[error("this address holds its maximum of {0} connections")]
    PerAddress(usize),
}

#[derive(Default)]
struct Counts {
    total: usize,
    by_source: HashMap<IpAddr, usize>,
}

/// The counts of open connections, shared by the accept loop and every connection.
#[derive(Clone)]
pub(crate) struct Caps {
    counts: Arc<Mutex<Counts>>,
    max_total: usize,
    max_per_source: usize,
}

/// A connection's place under the caps, given back when dropped.
pub(crate) struct Admission {
    caps: Caps,
    source: IpAddr,
}

/// The address a connection is counted under: IPv4 addresses (IPv4-mapped IPv6 ones
/// included) as they are, IPv6 addresses by their /64, since one host commonly holds a whole
/// /64 and could otherwise open connections from as many addresses as it likes.
pub(crate) fn source_of(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

impl Caps {
    pub(crate) fn new(max_total: usize, max_per_source: usize) -> Caps {
        Caps {
            counts: Arc::default(),
            max_total,
            max_per_source,
        }
    }

    /// Admits a connection from `address`, or says which cap it would pass.
    pub(crate) fn admit(&self, address: IpAddr) -> Result<Admission, Refusal> {
        let source = source_of(address);
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if counts.total >= self.max_total {
            return Err(Refusal::Total(self.max_total));
        }
        let from_source = counts.by_source.entry(source).or_insert(0);
        if *from_source >= self.max_per_source {
            return Err(Refusal::PerAddress(self.max_per_source));
        }
        *from_source += 1;
        counts.total += 1;
        Ok(Admission {
            caps: self.clone(),
            source,
        })
    }

    /// Connections open now.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut counts = self
            .caps
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        counts.total = counts.total.saturating_sub(1);
        // Entries go when their count does, so the map holds only addresses with connections.
        if let Some(count) = counts.by_source.get_mut(&self.source) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.by_source.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_per_address_cap_binds_before_the_total() {
        let caps = Caps::new(3, 2);
        let a = caps.admit(ip("10.0.0.1")).unwrap();
        let _b = caps.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(
            caps.admit(ip("10.0.0.1")).err(),
            Some(Refusal::PerAddress(2))
        );
        let _c = caps.admit(ip("10.0.0.2")).unwrap();
        assert_eq!(caps.admit(ip("10.0.0.3")).err(), Some(Refusal::Total(3)));
        drop(a);
        assert_eq!(caps.open(), 2);
        caps.admit(ip("10.0.0.1")).unwrap();
    }

    #[test]
    fn places_are_given_back_and_empty_entries_removed() {
        let caps = Caps::new(10, 10);
        let admissions: Vec<_> = (0..5)
            .map(|i| caps.admit(ip(&format!("10.0.0.{i}"))).unwrap())
            .collect();
        assert_eq!(caps.open(), 5);
        drop(admissions);
        assert_eq!(caps.open(), 0);
        assert!(caps.counts.lock().unwrap().by_source.is_empty());
    }

    #[test]
    fn an_ipv6_slash_64_counts_as_one_source_and_mapped_ipv4_as_ipv4() {
        let caps = Caps::new(10, 1);
        let _first = caps.admit(ip("2001:db8:1:2::1")).unwrap();
        assert!(caps.admit(ip("2001:db8:1:2:ffff::9")).is_err());
        caps.admit(ip("2001:db8:1:3::1")).unwrap();
        let _v4 = caps.admit(ip("192.0.2.7")).unwrap();
        assert!(caps.admit(ip("::ffff:192.0.2.7")).is_err());
    }
}
