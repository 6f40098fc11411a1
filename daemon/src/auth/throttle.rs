//! Token buckets by key: how the daemon bounds what one source or one user can make it do.
//!
//! - **Failed authentications, by source** (an IPv4 address, an IPv6 /64): each source may fail
//!   `per_minute` times at once, refilled at that rate. Past it, the source's further failures
//!   are 429, and the one kind of credential that can be guessed (an operator key, chosen by
//!   a person) is not even compared: guessing it from a held source is impossible, not just
//!   relabelled. Credentials that cannot be guessed (256-bit store secrets, signed tokens) are
//!   still checked, so a good one gets through from behind the same NAT or proxy.
//! - **Self-service, by user**: how many PATs a person may issue itself an hour.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys tracked at most; past it, keys whose buckets have refilled are forgotten, and if none
/// has, a new key is not tracked until one does.
const MAX_KEYS: usize = 16 * 1024;

/// A bucket of `capacity` per `period` for each key.
pub struct RateLimit<K> {
    capacity: u32,
    period: Duration,
    buckets: Mutex<HashMap<K, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The source failures are counted by: IPv4-mapped as IPv4, IPv6 by its /64.
pub fn source(peer: Option<IpAddr>) -> Option<IpAddr> {
    peer.map(|ip| match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(std::net::Ipv6Addr::from(segments))
            }
        },
        v4 => v4,
    })
}

/// Failed authentications by source.
pub type FailureThrottle = RateLimit<Option<IpAddr>>;

impl FailureThrottle {
    pub fn new(per_minute: u32) -> FailureThrottle {
        RateLimit::per(per_minute, Duration::from_secs(60))
    }

    /// When `peer`'s source has used up its failures: how long until it has one again.
    pub fn blocked(&self, peer: Option<IpAddr>, now: Instant) -> Option<Duration> {
        self.empty(&source(peer), now)
    }

    /// Counts one failure from `peer`.
    pub fn failed(&self, peer: Option<IpAddr>, now: Instant) {
        self.take(source(peer), now);
    }
}

impl<K: Hash + Eq> RateLimit<K> {
    /// `capacity` at once, refilled at `capacity` per `period`.
    pub fn per(capacity: u32, period: Duration) -> RateLimit<K> {
        RateLimit {
            capacity: capacity.max(1),
            period: period.max(Duration::from_secs(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn rate(&self) -> f64 {
        f64::from(self.capacity) / self.period.as_secs_f64()
    }

    fn refilled(&self, bucket: Bucket, now: Instant) -> Bucket {
        Bucket {
            tokens: (bucket.tokens
                + now.saturating_duration_since(bucket.at).as_secs_f64() * self.rate())
            .min(f64::from(self.capacity)),
            at: now.max(bucket.at),
        }
    }

    fn buckets(&self) -> std::sync::MutexGuard<'_, HashMap<K, Bucket>> {
        self.buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// When `key`'s bucket is empty: how long until it holds one again.
    pub fn empty(&self, key: &K, now: Instant) -> Option<Duration> {
        let bucket = self.refilled(*self.buckets().get(key)?, now);
        if bucket.tokens >= 1.0 {
            return None;
        }
        Some(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate()))
    }

    /// Takes one from `key`'s bucket (none left stays none).
    pub fn take(&self, key: K, now: Instant) {
        let mut buckets = self.buckets();
        if buckets.len() >= MAX_KEYS && !buckets.contains_key(&key) {
            let full = f64::from(self.capacity);
            buckets.retain(|_, bucket| self.refilled(*bucket, now).tokens < full);
            if buckets.len() >= MAX_KEYS {
                return;
            }
        }
        let fresh = Bucket {
            tokens: f64::from(self.capacity),
            at: now,
        };
        let bucket = buckets.entry(key).or_insert(fresh);
        let mut refilled = self.refilled(*bucket, now);
        refilled.tokens = (refilled.tokens - 1.0).max(0.0);
        *bucket = refilled;
    }

    /// Takes one from `key`'s bucket if it has one; otherwise how long until it does.
    pub fn try_take(&self, key: K, now: Instant) -> Result<(), Duration> {
        if let Some(wait) = self.empty(&key, now) {
            return Err(wait);
        }
        self.take(key, now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_is_held_after_its_failures_and_released_as_the_bucket_refills() {
        let throttle = FailureThrottle::new(6);
        let start = Instant::now();
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        let b: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..6 {
            assert_eq!(throttle.blocked(Some(a), start), None);
            throttle.failed(Some(a), start);
        }
        let wait = throttle.blocked(Some(same_64), start).expect("held");
        assert!(wait > Duration::from_secs(9) && wait <= Duration::from_secs(10));
        assert_eq!(
            throttle.blocked(Some(b), start),
            None,
            "another source is not"
        );
        // One failure's worth refills in 10 s (6 a minute).
        assert_eq!(
            throttle.blocked(Some(a), start + Duration::from_secs(10)),
            None
        );
        throttle.failed(Some(a), start + Duration::from_secs(10));
        assert!(
            throttle
                .blocked(Some(a), start + Duration::from_secs(11))
                .is_some()
        );
    }

    #[test]
    fn a_users_self_service_is_bounded_per_period() {
        let limit = RateLimit::per(3, Duration::from_secs(3600));
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limit.try_take("ada", start).is_ok());
        }
        let wait = limit.try_take("ada", start).unwrap_err();
        assert!(wait > Duration::from_secs(1100) && wait <= Duration::from_secs(1200));
        assert!(limit.try_take("bob", start).is_ok());
        assert!(
            limit
                .try_take("ada", start + Duration::from_secs(1200))
                .is_ok()
        );
    }
}
