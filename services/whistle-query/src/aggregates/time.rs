//! Time as the counters key it: microseconds, Shanghai days and UTC hours.

use chrono::{DateTime, Utc};

use crate::{overview, trend};

/// Microseconds since the Unix epoch.
pub(crate) type Micros = i64;
/// A calendar day in Asia/Shanghai (UTC+8 all year), counted from 1970-01-01.
pub(crate) type Day = i32;
/// A whole hour of UTC, counted from 1970-01-01T00:00Z; Shanghai's hours are the same hours.
pub(crate) type Hour = i32;

pub(super) const HOUR: Micros = 3_600_000_000;
pub(super) const DAY: Micros = 24 * HOUR;
const UTC8: Micros = 8 * HOUR;
/// Days of counters kept: the longest window, plus the day before it, so that a request whose
/// clock read came just before the feed moved to the next day still finds its oldest day.
pub(super) const KEPT_DAYS: Day = overview::MAX_WINDOW.num_days() as Day + 1;
/// Hours of counters kept: the longest trend, plus the hour before it, so that a request whose
/// clock read came just before the feed moved to the next hour still finds its oldest bucket.
pub(super) const KEPT_HOURS: Hour = trend::MAX_HOURS as Hour + 1;
/// How long a terminal incident's entry outlives its last transition, measured from the newest
/// transition seen: longer than any event of one incident can trail another's in the stream
/// (the relay publishes in commit order, within a second normally), so that the rule "an event
/// from before the floor about an incident the store does not hold is about a dropped one" never
/// mistakes a new incident for a dropped one.
pub(super) const SETTLED_KEPT: Micros = DAY;

pub(crate) fn micros(at: DateTime<Utc>) -> Micros {
    at.timestamp_micros()
}

pub(crate) fn proto_micros(at: &prost_types::Timestamp) -> Micros {
    at.seconds * 1_000_000 + i64::from(at.nanos.div_euclid(1_000))
}

pub(crate) fn day_of(at: Micros) -> Day {
    Day::try_from((at + UTC8).div_euclid(DAY)).unwrap_or(Day::MAX)
}

pub(super) fn day_start(day: Day) -> Micros {
    i64::from(day).saturating_mul(DAY).saturating_sub(UTC8)
}

pub(crate) fn hour_of(at: Micros) -> Hour {
    Hour::try_from(at.div_euclid(HOUR)).unwrap_or(Hour::MAX)
}

pub(super) fn hour_start(hour: Hour) -> Micros {
    i64::from(hour).saturating_mul(HOUR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shanghai_days_match_overview_s_calendar_day() {
        for at in [
            "2026-03-01T15:59:59.999999Z",
            "2026-03-01T16:00:00Z",
            "2026-03-01T23:30:00Z",
        ] {
            let at = DateTime::parse_from_rfc3339(at).unwrap().to_utc();
            let (start, end) = overview::shanghai_day(at);
            let day = day_of(micros(at));
            assert_eq!(day_start(day), micros(start));
            assert_eq!(day_start(day + 1), micros(end));
        }
        assert_eq!(
            proto_micros(&prost_types::Timestamp {
                seconds: 1,
                nanos: 999_999_999
            }),
            1_999_999
        );
    }

    #[test]
    fn hours_are_whole_hours_of_utc_and_of_shanghai() {
        let at = |s: &str| micros(DateTime::parse_from_rfc3339(s).unwrap().to_utc());
        let hour = hour_of(at("2026-03-01T15:59:59.999999Z"));
        assert_eq!(hour_start(hour), at("2026-03-01T15:00:00Z"));
        assert_eq!(hour_of(at("2026-03-01T16:00:00Z")), hour + 1);
        // A Shanghai day starts on a UTC hour, so every hour lies in one day.
        let day = day_of(at("2026-03-02T00:30:00+08:00"));
        assert_eq!(hour_start(hour + 1), day_start(day));
        assert_eq!(day_of(hour_start(hour)), day - 1);
        assert_eq!(
            hour_of(-1),
            -1,
            "before 1970, hours still start on the hour"
        );
        assert_eq!(hour_start(-1), -HOUR);
    }
}
