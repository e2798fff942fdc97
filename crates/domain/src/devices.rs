//! Sensors and analytics systems as reporters (issue 21, item 5): the pure rules dispatch's intake
//! applies per device (its intake lease holder keeps a track per device), with time passed in
//! (docs/devices.md).
//!
//! - **Rate** (a policy figure): at most `burst` readings at once and `per_minute` a minute
//!   sustained (a token bucket); a reading past it is refused, never queued.
//! - **Storm**: a device repeating the same detection (category) before it cleared is folded into
//!   the incident its first detection opened, however often it repeats.
//! - **Flapping**: a device whose state changes (alarm ↔ clear) `flap_changes` times within
//!   `flap_window` is flagged for maintenance once; until an operator clears the flag its
//!   detections open no incident (they are kept, not sent to the departments).

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, TimeDelta, Utc};

use crate::CategoryCode;

/// What kind of reporter a device is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeviceKind {
    /// 水位传感器.
    WaterLevel,
    /// 烟感.
    Smoke,
    /// 井盖传感器.
    ManholeCover,
    /// An external video-analytics system (视频智能分析); Whistle runs none itself.
    VideoAnalytics,
}

impl DeviceKind {
    pub const ALL: [DeviceKind; 4] = [
        DeviceKind::WaterLevel,
        DeviceKind::Smoke,
        DeviceKind::ManholeCover,
        DeviceKind::VideoAnalytics,
    ];

    pub fn slug(self) -> &'static str {
        match self {
            DeviceKind::WaterLevel => "water_level",
            DeviceKind::Smoke => "smoke",
            DeviceKind::ManholeCover => "manhole_cover",
            DeviceKind::VideoAnalytics => "video_analytics",
        }
    }

    pub fn name_zh(self) -> &'static str {
        match self {
            DeviceKind::WaterLevel => "水位传感器",
            DeviceKind::Smoke => "烟感",
            DeviceKind::ManholeCover => "井盖传感器",
            DeviceKind::VideoAnalytics => "视频智能分析",
        }
    }

    pub fn from_slug(slug: &str) -> Option<DeviceKind> {
        DeviceKind::ALL.into_iter().find(|k| k.slug() == slug)
    }
}

/// The per-device figures of the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevicePolicy {
    /// Readings a device may send at once.
    pub burst: u32,
    /// Readings a minute, sustained.
    pub per_minute: u32,
    /// State changes within `flap_window` that flag a device for maintenance.
    pub flap_changes: u32,
    pub flap_window: TimeDelta,
}

impl Default for DevicePolicy {
    /// Six at once, six a minute; five changes in ten minutes is flapping.
    fn default() -> Self {
        DevicePolicy {
            burst: 6,
            per_minute: 6,
            flap_changes: 5,
            flap_window: TimeDelta::minutes(10),
        }
    }
}

/// What a device says: it detects something (of a category), or that it cleared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading {
    Alarm(CategoryCode),
    Clear(CategoryCode),
}

impl Reading {
    fn category(&self) -> &CategoryCode {
        match self {
            Reading::Alarm(c) | Reading::Clear(c) => c,
        }
    }
}

/// What intake does with a reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A new detection: it opens an incident (or joins one by intake's usual duplicate rules).
    Open,
    /// The same detection again before it cleared: folded into the incident its first one opened.
    Fold,
    /// The detection cleared; nothing goes to the departments.
    Cleared,
    /// Past the device's rate: refused.
    RateLimited,
    /// This reading made the device flap: flagged for maintenance now (an event, a list for
    /// operators); the reading opens nothing.
    Flagged,
    /// The device is flagged: kept, sent to no one, until an operator clears the flag.
    Suppressed,
}

/// One device's memory of its recent readings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceTrack {
    /// The bucket's tokens and when it was last filled.
    tokens: f64,
    filled_at: Option<DateTime<Utc>>,
    /// Per category: whether its last reading was an alarm.
    alarmed: BTreeMap<CategoryCode, bool>,
    /// When the state changed, within the flap window.
    changes: VecDeque<DateTime<Utc>>,
    flagged: bool,
}

impl DeviceTrack {
    pub fn is_flagged(&self) -> bool {
        self.flagged
    }

    /// The device is under maintenance by the registry's word (flagged before this track's
    /// memory begins, or set so by an operator): its readings are suppressed until the flag is
    /// cleared.
    pub fn mark_flagged(&mut self) {
        self.flagged = true;
    }

    /// An operator cleared the maintenance flag (the device was fixed): its history starts over.
    pub fn clear_flag(&mut self) {
        self.flagged = false;
        self.changes.clear();
        self.alarmed.clear();
    }

    /// Applies a reading at `at` (readings in the order intake takes them; `at` never goes back).
    pub fn observe(
        &mut self,
        policy: &DevicePolicy,
        reading: &Reading,
        at: DateTime<Utc>,
    ) -> Verdict {
        if !self.take_token(policy, at) {
            return Verdict::RateLimited;
        }
        let alarm = matches!(reading, Reading::Alarm(_));
        let before = self.alarmed.insert(reading.category().clone(), alarm);
        // A change is a reading that differs from the category's last one (a first alarm too).
        let changed = before.map_or(alarm, |was| was != alarm);
        if changed {
            self.changes.push_back(at);
        }
        while self
            .changes
            .front()
            .is_some_and(|&t| at - t >= policy.flap_window)
        {
            self.changes.pop_front();
        }
        if self.flagged {
            return Verdict::Suppressed;
        }
        if self.changes.len() as u32 >= policy.flap_changes {
            self.flagged = true;
            return Verdict::Flagged;
        }
        match (alarm, changed) {
            (true, true) => Verdict::Open,
            (true, false) => Verdict::Fold,
            (false, _) => Verdict::Cleared,
        }
    }

    fn take_token(&mut self, policy: &DevicePolicy, at: DateTime<Utc>) -> bool {
        let burst = f64::from(policy.burst);
        let refill = match self.filled_at {
            None => burst,
            Some(then) => {
                let secs = (at - then).num_milliseconds().max(0) as f64 / 1000.0;
                secs * f64::from(policy.per_minute) / 60.0
            }
        };
        self.tokens = (self.tokens + refill).min(burst);
        self.filled_at = Some(at);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        "2026-12-07T08:00:00Z".parse::<DateTime<Utc>>().unwrap() + TimeDelta::seconds(secs)
    }

    fn cat(code: &str) -> CategoryCode {
        code.parse().unwrap()
    }

    fn loose() -> DevicePolicy {
        DevicePolicy {
            burst: 1_000,
            per_minute: 60_000,
            ..DevicePolicy::default()
        }
    }

    #[test]
    fn kinds_round_trip_through_their_slugs() {
        for kind in DeviceKind::ALL {
            assert_eq!(DeviceKind::from_slug(kind.slug()), Some(kind));
        }
        assert_eq!(DeviceKind::from_slug("radar"), None);
    }

    #[test]
    fn a_storm_of_the_same_detection_opens_one_incident() {
        let mut track = DeviceTrack::default();
        let flood = Reading::Alarm(cat("municipal.waterlogging"));
        let verdicts: Vec<Verdict> = (0..50)
            .map(|i| track.observe(&loose(), &flood, t(i * 10)))
            .collect();
        assert_eq!(verdicts[0], Verdict::Open);
        assert!(verdicts[1..].iter().all(|v| *v == Verdict::Fold));
        // Cleared and detected again later: a new incident.
        let clear = Reading::Clear(cat("municipal.waterlogging"));
        assert_eq!(track.observe(&loose(), &clear, t(3_600)), Verdict::Cleared);
        assert_eq!(track.observe(&loose(), &flood, t(7_200)), Verdict::Open);
        // Another detection of the same device is its own.
        let smoke = Reading::Alarm(cat("safety.fire_hazard"));
        assert_eq!(track.observe(&loose(), &smoke, t(7_210)), Verdict::Open);
    }

    #[test]
    fn a_flapping_device_is_flagged_once_and_then_suppressed_until_cleared() {
        let policy = DevicePolicy {
            flap_changes: 4,
            flap_window: TimeDelta::minutes(10),
            ..loose()
        };
        let c = cat("municipal.manhole_cover");
        let mut track = DeviceTrack::default();
        let readings = [
            Reading::Alarm(c.clone()),
            Reading::Clear(c.clone()),
            Reading::Alarm(c.clone()),
            Reading::Clear(c.clone()),
            Reading::Alarm(c.clone()),
        ];
        let verdicts: Vec<Verdict> = readings
            .iter()
            .enumerate()
            .map(|(i, r)| track.observe(&policy, r, t(i as i64 * 60)))
            .collect();
        assert_eq!(
            verdicts,
            [
                Verdict::Open,
                Verdict::Cleared,
                Verdict::Open,
                Verdict::Flagged,
                Verdict::Suppressed
            ]
        );
        assert!(track.is_flagged());
        track.clear_flag();
        assert_eq!(
            track.observe(&policy, &Reading::Alarm(c), t(600)),
            Verdict::Open
        );
    }

    #[test]
    fn changes_spread_wider_than_the_window_are_no_flapping() {
        let policy = DevicePolicy {
            flap_changes: 3,
            flap_window: TimeDelta::minutes(10),
            ..loose()
        };
        let c = cat("municipal.waterlogging");
        let mut track = DeviceTrack::default();
        for i in 0..20 {
            let reading = if i % 2 == 0 {
                Reading::Alarm(c.clone())
            } else {
                Reading::Clear(c.clone())
            };
            // Five minutes apart: two changes in any ten minutes.
            let verdict = track.observe(&policy, &reading, t(i * 300));
            assert!(
                matches!(verdict, Verdict::Open | Verdict::Cleared),
                "{i}: {verdict:?}"
            );
        }
        assert!(!track.is_flagged());
    }

    #[test]
    fn the_rate_allows_a_burst_then_the_sustained_rate() {
        let policy = DevicePolicy {
            burst: 3,
            per_minute: 6,
            ..DevicePolicy::default()
        };
        let mut track = DeviceTrack::default();
        let r = Reading::Alarm(cat("municipal.waterlogging"));
        let at_once: Vec<bool> = (0..5)
            .map(|_| track.observe(&policy, &r, t(0)) != Verdict::RateLimited)
            .collect();
        assert_eq!(at_once, [true, true, true, false, false]);
        // Six a minute: one more token every ten seconds.
        assert_eq!(track.observe(&policy, &r, t(5)), Verdict::RateLimited);
        assert_ne!(track.observe(&policy, &r, t(10)), Verdict::RateLimited);
    }

    proptest! {
        /// Over any sequence of readings: no more pass than the bucket allows, a detection opens
        /// at most one incident until it clears, and a flag is raised exactly when
        /// `flap_changes` changes fall within `flap_window`.
        #[test]
        fn the_rules_hold_over_any_sequence(
            steps in prop::collection::vec((0i64..120, any::<bool>(), 0usize..2), 1..200),
            burst in 1u32..10,
            per_minute in 1u32..30,
            flap_changes in 2u32..8,
        ) {
            let policy = DevicePolicy { burst, per_minute, flap_changes, flap_window: TimeDelta::minutes(10) };
            let cats = [cat("municipal.waterlogging"), cat("safety.fire_hazard")];
            let mut track = DeviceTrack::default();
            let mut now = 0i64;
            let mut passed = 0u64;
            let mut open: BTreeMap<usize, bool> = BTreeMap::new();
            let mut flagged_at = None;
            for (gap, alarm, c) in steps {
                now += gap;
                let reading = if alarm { Reading::Alarm(cats[c].clone()) } else { Reading::Clear(cats[c].clone()) };
                let verdict = track.observe(&policy, &reading, t(now));
                if verdict != Verdict::RateLimited {
                    passed += 1;
                }
                match verdict {
                    Verdict::Open => {
                        prop_assert!(!open.get(&c).copied().unwrap_or(false), "opened twice");
                        open.insert(c, true);
                    }
                    Verdict::Cleared => { open.insert(c, false); }
                    Verdict::Flagged => {
                        prop_assert!(flagged_at.is_none(), "flagged twice");
                        flagged_at = Some(now);
                    }
                    Verdict::Suppressed => prop_assert!(flagged_at.is_some()),
                    Verdict::Fold => prop_assert!(open.get(&c).copied().unwrap_or(false)),
                    Verdict::RateLimited => {}
                }
            }
            // The bucket: at most the burst plus what the elapsed time refills.
            let allowed = u64::from(burst) + (now as u64 * u64::from(per_minute)) / 60 + 1;
            prop_assert!(passed <= allowed, "{passed} passed, at most {allowed}");
            prop_assert_eq!(track.is_flagged(), flagged_at.is_some());
        }
    }
}
