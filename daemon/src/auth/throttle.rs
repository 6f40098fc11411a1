//! Repeated authentication failures from one source are slowed down: each source (an IPv4
//! address, an IPv6 /64) has a bucket of `per_minute` failures that refills at that rate. A
//! source whose bucket is empty gets 429 before its credential is even looked at, so a flood
//! of bad tokens costs neither signature checks nor key-set fetches.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Sources tracked at most; past it, sources whose buckets have refilled are forgotten, and
/// if none has, a new source is not tracked until one does.
const MAX_SOURCES: usize = 16 * 1024;

pub struct FailureThrottle {
    per_minute: u32,
    buckets: Mutex<HashMap<Option<IpAddr>, Bucket>>,
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

impl FailureThrottle {
    pub fn new(per_minute: u32) -> FailureThrottle {
        FailureThrottle {
            per_minute: per_minute.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn refilled(&self, bucket: Bucket, now: Instant) -> Bucket {
        let rate = f64::from(self.per_minute) / 60.0;
        Bucket {
            tokens: (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate)
                .min(f64::from(self.per_minute)),
            at: now,
        }
    }

    /// When `peer` has used up its failures: how long until it has one again.
    pub fn blocked(&self, peer: Option<IpAddr>, now: Instant) -> Option<Duration> {
        let buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let bucket = self.refilled(*buckets.get(&source(peer))?, now);
        if bucket.tokens >= 1.0 {
            return None;
        }
        let rate = f64::from(self.per_minute) / 60.0;
        Some(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
    }

    /// Counts one failure from `peer`.
    pub fn failed(&self, peer: Option<IpAddr>, now: Instant) {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = source(peer);
        if buckets.len() >= MAX_SOURCES && !buckets.contains_key(&key) {
            let full = f64::from(self.per_minute);
            buckets.retain(|_, bucket| self.refilled(*bucket, now).tokens < full);
            if buckets.len() >= MAX_SOURCES {
                return;
            }
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: f64::from(self.per_minute),
            at: now,
        });
        let mut refilled = self.refilled(*bucket, now);
        refilled.tokens = (refilled.tokens - 1.0).max(0.0);
        *bucket = refilled;
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
}
