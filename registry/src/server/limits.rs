//! Quotas and rate limits: what one principal may cost the registry.
//!
//! Rates are token buckets kept in memory, one per user (token issuing, publishing) or per
//! source address (failed authentications). A bucket holds up to `burst` requests and refills
//! one every `every`; a request finding it empty is answered 429 with `Retry-After`. The map of
//! buckets is bounded: when it is full, buckets that have refilled (which carry no information)
//! are dropped, then the one touched longest ago. Buckets are not persisted: a restart forgives
//! everyone, which bounds nothing less than a restart does anyway.
//!
//! Hand-written rather than `governor`: a keyed governor limiter needs its own pruning for a
//! bounded map too, and pulls in several crates for about eighty lines.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A rate: up to `burst` at once, then one per `every`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub burst: u32,
    pub every: Duration,
}

impl Rate {
    pub const fn new(burst: u32, every: Duration) -> Rate {
        Rate { burst, every }
    }
}

/// What one principal may hold and how fast it may act.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quotas {
    /// Live (unexpired, unrevoked) tokens per user.
    pub tokens_per_user: usize,
    /// Versions a publisher may publish, ever (yanked ones count: the log keeps them).
    pub versions_per_publisher: u64,
    /// Key additions and revocations a publisher's history may hold. An admin's recovery of a
    /// locked-out publisher is not counted against it.
    pub key_events_per_publisher: u64,
    /// Tokens a user may be issued (by anyone), per user.
    pub token_issuing: Rate,
    /// Publishes per user.
    pub publishing: Rate,
    /// Failed authentications per source address (an IPv6 address counts by its /64).
    pub failed_authentications: Rate,
}

pub const DEFAULT_QUOTAS: Quotas = Quotas {
    tokens_per_user: 100,
    versions_per_publisher: 10_000,
    key_events_per_publisher: 100,
    // 20 at once, 120 an hour.
    token_issuing: Rate::new(20, Duration::from_secs(30)),
    // 30 at once, 60 an hour.
    publishing: Rate::new(30, Duration::from_secs(60)),
    // 30 at once, 1,800 an hour.
    failed_authentications: Rate::new(30, Duration::from_secs(2)),
};

impl Default for Quotas {
    fn default() -> Quotas {
        DEFAULT_QUOTAS
    }
}

/// Buckets kept per limiter at most.
const MAX_BUCKETS: usize = 65_536;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// A keyed token-bucket limiter with a bounded number of keys.
#[derive(Debug)]
pub struct Limiter<K> {
    rate: Rate,
    capacity: usize,
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: Eq + Hash + Clone> Limiter<K> {
    pub fn new(rate: Rate) -> Limiter<K> {
        Limiter::with_capacity(rate, MAX_BUCKETS)
    }

    fn with_capacity(rate: Rate, capacity: usize) -> Limiter<K> {
        Limiter {
            rate,
            capacity: capacity.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `key`'s bucket; `Err(wait)` when it is empty, with how long until
    /// one is available.
    pub fn take(&self, key: &K) -> Result<(), Duration> {
        self.at(key, Instant::now(), 1.0)
    }

    /// Whether `key` could make a request now, without taking it. A key without a bucket has
    /// a full one, so peeking creates none: only what is charged fills the map.
    pub fn peek(&self, key: &K) -> Result<(), Duration> {
        self.at(key, Instant::now(), 0.0)
    }

    /// Charges one request to `key` whatever its bucket holds, going into debt if it is empty:
    /// for what is counted after the fact (a failure), where every request that passed `peek`
    /// while others were in flight must still be paid for.
    pub fn charge(&self, key: &K) {
        self.charge_at(key, Instant::now());
    }

    fn charge_at(&self, key: &K, now: Instant) {
        let (burst, per_second) = self.per_second();
        let mut buckets = self.lock();
        let bucket = self.bucket(&mut buckets, key, now, burst, per_second);
        bucket.tokens -= 1.0;
    }

    fn per_second(&self) -> (f64, f64) {
        let burst = f64::from(self.rate.burst.max(1));
        (burst, 1.0 / self.rate.every.as_secs_f64().max(1e-3))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Bucket>> {
        self.buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `key`'s bucket, refilled up to `now`; made (full) if it has none.
    fn bucket<'a>(
        &self,
        buckets: &'a mut HashMap<K, Bucket>,
        key: &K,
        now: Instant,
        burst: f64,
        per_second: f64,
    ) -> &'a mut Bucket {
        if !buckets.contains_key(key) && buckets.len() >= self.capacity {
            evict(buckets, self.capacity, now, burst, per_second);
        }
        let bucket = buckets.entry(key.clone()).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(burst);
        bucket.updated = now;
        bucket
    }

    fn at(&self, key: &K, now: Instant, cost: f64) -> Result<(), Duration> {
        let (burst, per_second) = self.per_second();
        let mut buckets = self.lock();
        if cost == 0.0 && !buckets.contains_key(key) {
            return Ok(());
        }
        let bucket = self.bucket(&mut buckets, key, now, burst, per_second);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= cost;
            Ok(())
        } else {
            // A debt (or a period near `Duration::MAX`) can make this longer than a Duration.
            let wait = ((1.0 - bucket.tokens) / per_second).max(0.0);
            Err(Duration::try_from_secs_f64(wait).unwrap_or(Duration::MAX))
        }
    }
}

/// Makes room: drops the full buckets, or else the eighth touched longest ago (a batch, so a
/// map kept full by many addresses is not scanned again for every new one).
fn evict<K: Eq + Hash + Clone>(
    buckets: &mut HashMap<K, Bucket>,
    capacity: usize,
    now: Instant,
    burst: f64,
    per_second: f64,
) {
    buckets.retain(|_, bucket| {
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens + elapsed * per_second < burst
    });
    if buckets.len() < capacity {
        return;
    }
    let mut by_age: Vec<(Instant, K)> = buckets
        .iter()
        .map(|(key, bucket)| (bucket.updated, key.clone()))
        .collect();
    let drop = (capacity / 8).max(1).min(by_age.len());
    if drop < by_age.len() {
        by_age.select_nth_unstable_by_key(drop, |(updated, _)| *updated);
    }
    for (_, key) in by_age.into_iter().take(drop) {
        buckets.remove(&key);
    }
}

/// The key a source address is limited by: an IPv4 address, or an IPv6 address's /64 (one
/// host usually holds a whole /64, so counting addresses would count nothing). An IPv4 client
/// of a dual-stack listener arrives as `::ffff:a.b.c.d` and counts as its IPv4 address: all of
/// them share one /64, and would share one budget.
pub fn address_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                IpAddr::from(octets)
            }
        },
    }
}

/// Whole seconds to wait, at least one (what `Retry-After` carries).
pub fn retry_after_seconds(wait: Duration) -> u64 {
    wait.as_secs()
        .saturating_add(u64::from(wait.subsec_nanos() > 0).max(u64::from(wait.is_zero())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_empties_then_refills() {
        let limiter = Limiter::new(Rate::new(3, Duration::from_secs(10)));
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.at(&"alice", start, 1.0).is_ok());
        }
        let wait = limiter.at(&"alice", start, 1.0).err();
        assert!(wait.is_some_and(|wait| wait > Duration::from_secs(9)));
        // Another key has its own bucket.
        assert!(limiter.at(&"bob", start, 1.0).is_ok());
        // Ten seconds later one request is available again, not two.
        let later = start + Duration::from_secs(10);
        assert!(limiter.at(&"alice", later, 1.0).is_ok());
        assert!(limiter.at(&"alice", later, 1.0).is_err());
        // Peeking takes nothing.
        let much_later = later + Duration::from_secs(10);
        assert!(limiter.at(&"alice", much_later, 0.0).is_ok());
        assert!(limiter.at(&"alice", much_later, 1.0).is_ok());
        assert!(limiter.at(&"alice", much_later, 1.0).is_err());
    }

    #[test]
    fn the_map_of_buckets_stays_bounded() {
        let limiter = Limiter::with_capacity(Rate::new(1, Duration::from_secs(3600)), 4);
        let start = Instant::now();
        for key in 0..1000u32 {
            let _ = limiter.at(&key, start + Duration::from_millis(u64::from(key)), 1.0);
            let held = limiter.buckets.lock().map(|map| map.len()).unwrap_or(0);
            assert!(held <= 4, "{held}");
        }
        // The most recent keys are still limited.
        assert!(
            limiter
                .at(&999, start + Duration::from_secs(1), 1.0)
                .is_err()
        );
    }

    #[test]
    fn failures_beyond_the_bucket_are_still_counted() {
        // Requests in flight all pass `peek` before any of them fails; each failure must still
        // count, or concurrency multiplies the budget.
        let limiter = Limiter::new(Rate::new(3, Duration::from_secs(10)));
        let start = Instant::now();
        for _ in 0..20 {
            limiter.charge_at(&"mallory", start);
        }
        // 20 failures against a budget of 3: 18 refills (180 s) before one more is allowed.
        let wait = limiter.at(&"mallory", start, 0.0).err();
        assert!(
            wait.is_some_and(|wait| wait >= Duration::from_secs(179)),
            "{wait:?}"
        );
        assert!(
            limiter
                .at(&"mallory", start + Duration::from_secs(175), 0.0)
                .is_err()
        );
        assert!(
            limiter
                .at(&"mallory", start + Duration::from_secs(181), 0.0)
                .is_ok()
        );
    }

    #[test]
    fn peeking_creates_no_bucket() {
        let limiter = Limiter::<u32>::with_capacity(Rate::new(1, Duration::from_secs(3600)), 4);
        let start = Instant::now();
        for key in 0..1000u32 {
            assert!(limiter.at(&key, start, 0.0).is_ok());
        }
        let held = limiter
            .buckets
            .lock()
            .map(|map| map.len())
            .unwrap_or(usize::MAX);
        assert_eq!(held, 0);
    }

    #[test]
    fn huge_periods_and_debts_do_not_panic() {
        let limiter = Limiter::new(Rate::new(1, Duration::MAX));
        let start = Instant::now();
        for _ in 0..1000 {
            limiter.charge_at(&1u8, start);
        }
        let wait = limiter.at(&1u8, start, 1.0).err();
        assert!(wait.is_some_and(|wait| wait > Duration::from_secs(1 << 40)));
        assert!(retry_after_seconds(Duration::MAX) >= u64::MAX - 1);
    }

    #[test]
    fn ipv6_addresses_count_by_their_64() {
        let one: IpAddr = "2001:db8::1".parse().unwrap_or(IpAddr::from([0u8; 16]));
        let two: IpAddr = "2001:db8::ffff:2"
            .parse()
            .unwrap_or(IpAddr::from([0u8; 16]));
        let other: IpAddr = "2001:db8:0:1::1".parse().unwrap_or(IpAddr::from([0u8; 16]));
        assert_eq!(address_key(one), address_key(two));
        assert_ne!(address_key(one), address_key(other));
        let v4: IpAddr = "192.0.2.7".parse().unwrap_or(IpAddr::from([0u8; 4]));
        assert_eq!(address_key(v4), v4);
        // IPv4 clients of a dual-stack listener: each its own key, not one shared /64.
        let mapped: IpAddr = "::ffff:192.0.2.7"
            .parse()
            .unwrap_or(IpAddr::from([0u8; 16]));
        let neighbour: IpAddr = "::ffff:198.51.100.1"
            .parse()
            .unwrap_or(IpAddr::from([0u8; 16]));
        assert_eq!(address_key(mapped), v4);
        assert_ne!(address_key(mapped), address_key(neighbour));
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_secs(5)), 5);
        assert_eq!(retry_after_seconds(Duration::from_millis(5_001)), 6);
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
    }
}
