//! Injected time: the services read the clock only through [`Clock`], so tests can drive it.

use std::{
    str::FromStr,
    sync::{Arc, Mutex},
};

use chrono::{DateTime, TimeDelta, Utc};

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told to; for tests.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> ManualClock {
        ManualClock(Arc::new(Mutex::new(start)))
    }

    pub fn advance(&self, by: TimeDelta) {
        *self.0.lock().expect("clock lock is never poisoned") += by;
    }

    pub fn set(&self, to: DateTime<Utc>) {
        *self.0.lock().expect("clock lock is never poisoned") = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().expect("clock lock is never poisoned")
    }
}

/// A clock that runs `speed` times faster than the wall clock, for benchmarks only: it reads
/// `start` at the wall-clock instant `anchor`, and `start + (wall − anchor) × speed` after it. A
/// simulated year on an accelerated clock (`whistle bench year`) gives dispatch, the query service
/// and the load generator the same spec (`WHISTLE_BENCH_CLOCK`), so all three agree on the
/// simulated time. Never for production: deadlines, tokens and the follow-up window all run at
/// that speed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScaledClock {
    pub start: DateTime<Utc>,
    pub anchor: DateTime<Utc>,
    pub speed: f64,
}

impl ScaledClock {
    /// The simulated time at the wall-clock instant `wall`.
    pub fn at(&self, wall: DateTime<Utc>) -> DateTime<Utc> {
        let elapsed = (wall - self.anchor).num_microseconds().unwrap_or(i64::MAX) as f64;
        self.start + TimeDelta::microseconds((elapsed * self.speed) as i64)
    }

    /// How long on the wall clock `simulated` takes.
    pub fn wall(&self, simulated: TimeDelta) -> std::time::Duration {
        let micros = simulated.num_microseconds().unwrap_or(i64::MAX).max(0) as f64;
        std::time::Duration::from_micros((micros / self.speed) as u64)
    }
}

impl Clock for ScaledClock {
    fn now(&self) -> DateTime<Utc> {
        self.at(Utc::now())
    }
}

impl std::fmt::Display for ScaledClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "start={},anchor={},speed={}",
            self.start.to_rfc3339(),
            self.anchor.to_rfc3339(),
            self.speed
        )
    }
}

/// `start=RFC3339,anchor=RFC3339,speed=N` (in any order; `anchor` defaults to now, which only
/// suits a single process).
impl FromStr for ScaledClock {
    type Err = String;

    fn from_str(spec: &str) -> Result<ScaledClock, String> {
        let (mut start, mut anchor, mut speed) = (None, None, None);
        let time = |v: &str| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.to_utc())
                .map_err(|e| format!("{v:?} is not an RFC 3339 time: {e}"))
        };
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                Some(("start", v)) => start = Some(time(v)?),
                Some(("anchor", v)) => anchor = Some(time(v)?),
                Some(("speed", v)) => {
                    speed = Some(
                        v.parse::<f64>()
                            .ok()
                            .filter(|s| s.is_finite() && *s > 0.0)
                            .ok_or_else(|| format!("speed {v:?} is not a positive number"))?,
                    )
                }
                _ => return Err(format!("{part:?}: expected start=, anchor= or speed=")),
            }
        }
        Ok(ScaledClock {
            start: start.ok_or("start= is missing")?,
            anchor: anchor.unwrap_or_else(Utc::now),
            speed: speed.ok_or("speed= is missing")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn a_scaled_clock_runs_speed_times_faster_from_its_anchor() {
        let clock: ScaledClock =
            "start=2027-01-01T00:00:00+08:00, anchor=2026-12-06T08:00:00Z, speed=1440"
                .parse()
                .unwrap();
        assert_eq!(clock.at(clock.anchor), at("2026-12-31T16:00:00Z"));
        // One wall-clock minute is a simulated day.
        assert_eq!(
            clock.at(at("2026-12-06T08:01:00Z")),
            at("2027-01-01T16:00:00Z")
        );
        assert_eq!(
            clock.wall(TimeDelta::days(1)),
            std::time::Duration::from_secs(60)
        );
        assert_eq!(clock.to_string().parse::<ScaledClock>().unwrap(), clock);
    }

    #[test]
    fn a_scaled_clock_spec_names_start_and_a_positive_speed() {
        for bad in [
            "speed=10",
            "start=2027-01-01T00:00:00Z",
            "start=2027-01-01T00:00:00Z,speed=0",
            "start=2027-01-01T00:00:00Z,speed=-3",
            "start=yesterday,speed=2",
            "start=2027-01-01T00:00:00Z,speed=2,pace=3",
        ] {
            assert!(bad.parse::<ScaledClock>().is_err(), "{bad}");
        }
    }
}
