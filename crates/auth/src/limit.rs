//! A rate limit per identity: a token bucket for each key (a token id on the gRPC door, a person
//! on the NATS door), refilled continuously up to its burst. Both doors refuse what it refuses
//! with the reason `rate_limited`.
//!
//! It runs on the monotonic clock, not the services' injected `Clock`, which tests move by hours.

use std::{hash::Hash, sync::Arc, time::Instant};

use dashmap::DashMap;

/// Past this many buckets the full ones (idle long enough to have refilled) are dropped.
const BUCKETS_MAX: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Refused: more than the burst at once, or more than the rate for a while.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("more than {burst} requests at once or more than {rate} per second; retry in {retry_in_secs:.1} s")]
pub struct Limited {
    pub rate: f64,
    pub burst: u32,
    pub retry_in_secs: f64,
}

/// Token buckets of `rate` requests per second with room for `burst`; a zero rate or burst
/// switches the limit off. Cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct RateLimiter<K: Eq + Hash> {
    rate: f64,
    burst: u32,
    buckets: Arc<DashMap<K, Bucket>>,
}

impl<K: Eq + Hash + Clone> RateLimiter<K> {
    pub fn new(rate: f64, burst: u32) -> RateLimiter<K> {
        RateLimiter {
            rate,
            burst,
            buckets: Arc::default(),
        }
    }

    /// Takes one request from `key`'s bucket, or refuses.
    pub fn take(&self, key: &K) -> Result<(), Limited> {
        self.take_at(key, Instant::now())
    }

    pub fn take_at(&self, key: &K, now: Instant) -> Result<(), Limited> {
        let (rate, burst) = (self.rate, f64::from(self.burst));
        if rate <= 0.0 || self.burst == 0 {
            return Ok(());
        }
        if self.buckets.len() >= BUCKETS_MAX {
            self.buckets
                .retain(|_, b| refilled(b, rate, burst, now) < burst);
        }
        let mut bucket = self.buckets.entry(key.clone()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        bucket.tokens = refilled(&bucket, rate, burst, now);
        bucket.at = now;
        if bucket.tokens < 1.0 {
            return Err(Limited {
                rate,
                burst: self.burst,
                retry_in_secs: (1.0 - bucket.tokens) / rate,
            });
        }
        bucket.tokens -= 1.0;
        Ok(())
    }
}

fn refilled(bucket: &Bucket, rate: f64, burst: f64, now: Instant) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
    (bucket.tokens + elapsed * rate).min(burst)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_is_allowed_then_refused_until_the_bucket_refills() {
        let limiter = RateLimiter::new(2.0, 3);
        let start = Instant::now();
        for _ in 0..3 {
            limiter.take_at(&"a", start).unwrap();
        }
        let refused = limiter.take_at(&"a", start).unwrap_err();
        assert_eq!((refused.burst, refused.retry_in_secs), (3, 0.5));
        // Another key has its own bucket.
        limiter.take_at(&"b", start).unwrap();
        // Half a second at 2/s gives one request back, and only one.
        let later = start + Duration::from_millis(500);
        limiter.take_at(&"a", later).unwrap();
        assert!(limiter.take_at(&"a", later).is_err());
        // A long pause refills to the burst, not beyond.
        let much_later = later + Duration::from_secs(3600);
        for _ in 0..3 {
            limiter.take_at(&"a", much_later).unwrap();
        }
        assert!(limiter.take_at(&"a", much_later).is_err());
    }

    #[test]
    fn a_zero_rate_or_burst_switches_the_limit_off() {
        for limiter in [RateLimiter::new(0.0, 3), RateLimiter::new(5.0, 0)] {
            let now = Instant::now();
            for _ in 0..1000 {
                limiter.take_at(&(), now).unwrap();
            }
        }
    }
}
