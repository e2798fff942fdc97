//! Abuse limits per identity: a token bucket of RPCs per token, and a cap on the `WatchEvents`
//! streams one token holds open at once. Both refuse with `RESOURCE_EXHAUSTED` and the reason
//! `rate_limited` ([`Error::RateLimited`]).
//!
//! Keyed by the token's id, so they apply only after authentication: an unknown token is refused
//! by auth.rs before it costs a bucket. The buckets run on the real monotonic clock, not the
//! service's [`whistle_dispatch::Clock`], which tests move by hours.

use std::{sync::Arc, time::Instant};

use dashmap::DashMap;
use uuid::Uuid;

use whistle_auth::RateLimiter;

use crate::{Error, Result};

/// Requests per second a token may sustain by default.
pub const DEFAULT_RATE: f64 = 50.0;
/// Requests a token may send at once above the sustained rate by default.
pub const DEFAULT_BURST: u32 = 200;
/// Open `WatchEvents` streams per token by default.
pub const DEFAULT_WATCH_STREAMS: u32 = 16;
/// The configured limits; 0 switches one off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Config {
    pub rate: f64,
    pub burst: u32,
    pub watch_streams: u32,
}

/// The limits' state, shared by every handler.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    config: Config,
    requests: RateLimiter<Uuid>,
    streams: Arc<DashMap<Uuid, u32>>,
}

impl Limits {
    pub fn new(config: Config) -> Limits {
        Limits {
            config,
            requests: RateLimiter::new(config.rate, config.burst),
            streams: Arc::default(),
        }
    }

    /// Takes one request from the token's bucket, or refuses.
    pub fn request(&self, token: Uuid) -> Result<()> {
        self.request_at(token, Instant::now())
    }

    fn request_at(&self, token: Uuid, now: Instant) -> Result<()> {
        self.requests
            .take_at(&token, now)
            .map_err(|limited| Error::RateLimited(format!("this token sent {limited}")))
    }

    /// Counts one more open `WatchEvents` stream of the token until the permit is dropped, or
    /// refuses when the token already holds its maximum.
    pub fn watch(&self, token: Uuid) -> Result<WatchPermit> {
        let max = self.config.watch_streams;
        if max > 0 {
            let mut open = self.streams.entry(token).or_insert(0);
            if *open >= max {
                return Err(Error::RateLimited(format!(
                    "this token already has {max} WatchEvents streams open; close one first"
                )));
            }
            *open += 1;
        }
        Ok(WatchPermit {
            token,
            streams: (max > 0).then(|| self.streams.clone()),
        })
    }
}

/// One open `WatchEvents` stream, counted until dropped (with the response stream).
#[derive(Debug)]
pub(crate) struct WatchPermit {
    token: Uuid,
    streams: Option<Arc<DashMap<Uuid, u32>>>,
}

impl Drop for WatchPermit {
    fn drop(&mut self) {
        if let Some(streams) = &self.streams {
            streams.remove_if_mut(&self.token, |_, open| {
                *open = open.saturating_sub(1);
                *open == 0
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limits(rate: f64, burst: u32, watch_streams: u32) -> Limits {
        Limits::new(Config {
            rate,
            burst,
            watch_streams,
        })
    }

    #[test]
    fn a_burst_is_allowed_then_refused_until_the_bucket_refills() {
        let limits = limits(2.0, 3, 0);
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let start = Instant::now();
        for _ in 0..3 {
            limits.request_at(a, start).unwrap();
        }
        let refused = limits.request_at(a, start).unwrap_err();
        assert!(matches!(refused, Error::RateLimited(_)), "{refused:?}");
        // Another token has its own bucket.
        limits.request_at(b, start).unwrap();
        // Half a second at 2/s gives one request back, and only one.
        let later = start + Duration::from_millis(500);
        limits.request_at(a, later).unwrap();
        assert!(limits.request_at(a, later).is_err());
        // A long pause refills to the burst, not beyond.
        let much_later = later + Duration::from_secs(3600);
        for _ in 0..3 {
            limits.request_at(a, much_later).unwrap();
        }
        assert!(limits.request_at(a, much_later).is_err());
    }

    #[test]
    fn a_zero_rate_or_burst_switches_the_rate_limit_off() {
        for limits in [limits(0.0, 3, 0), limits(5.0, 0, 0)] {
            let now = Instant::now();
            for _ in 0..1000 {
                limits.request_at(Uuid::nil(), now).unwrap();
            }
        }
    }

    #[test]
    fn watch_streams_are_capped_per_token_and_freed_when_dropped() {
        let limits = limits(0.0, 0, 2);
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let first = limits.watch(a).unwrap();
        let _second = limits.watch(a).unwrap();
        assert!(matches!(limits.watch(a), Err(Error::RateLimited(_))));
        let _other = limits.watch(b).unwrap();
        drop(first);
        let _third = limits.watch(a).unwrap();
        assert!(limits.watch(a).is_err());
    }

    #[test]
    fn the_stream_count_forgets_a_token_with_none_open() {
        let limits = limits(0.0, 0, 1);
        drop(limits.watch(Uuid::nil()).unwrap());
        assert!(limits.streams.is_empty());
        let unlimited = self::limits(0.0, 0, 0);
        let permits: Vec<_> = (0..100)
            .map(|_| unlimited.watch(Uuid::nil()).unwrap())
            .collect();
        assert_eq!(permits.len(), 100);
        assert!(unlimited.streams.is_empty());
    }
}
