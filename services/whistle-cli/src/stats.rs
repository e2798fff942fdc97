//! The pure parts of the benchmarks: latency summaries, rate formatting, and the rules of
//! `whistle load --find-max` (how the offered rate steps up, and when a step counts as fallen
//! behind). No I/O and no clock, so all of it is unit-tested.

use std::fmt;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latency percentiles in milliseconds, from a histogram of microseconds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub count: u64,
}

impl Latency {
    /// Summarises a histogram whose values are microseconds.
    pub fn from_micros(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            count: h.len(),
        }
    }
}

impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (n={})",
            format_ms(self.p50),
            format_ms(self.p90),
            format_ms(self.p99),
            format_ms(self.p999),
            format_ms(self.max),
            self.count
        )
    }
}

/// A histogram of microseconds from 1 µs to 10 minutes, 3 significant digits.
pub fn micros_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Milliseconds as people read them: two decimals below 10 ms, one below 1 s, whole above
/// (with thousands separators).
pub fn format_ms(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 1000.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{} ms", thousands(ms.round() as u64))
    }
}

/// A whole number with thousands separators: 160000 → "160,000".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate, rounded to a whole number per second: "27,912/s".
pub fn format_rate(per_second: f64) -> String {
    if !per_second.is_finite() || per_second < 0.0 {
        return "-".into();
    }
    format!("{}/s", thousands(per_second.round() as u64))
}

/// A `--find-max` search: how the rate steps up, when a step has fallen behind, how long each
/// step sends and how often its backlog is sampled. The platform and the ceiling pipeline are
/// searched with the same plan, so their sustained rates compare like with like.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FindMaxPlan {
    pub steps: RateSteps,
    pub bounds: StepBounds,
    pub step_duration: std::time::Duration,
    pub sample_every: std::time::Duration,
}

/// How `--find-max` raises the offered rate from one step to the next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateSteps {
    pub start: f64,
    /// Multiply by this (1.25 = +25 % a step); 1 or less to add only.
    pub factor: f64,
    /// Then add this many reports a second.
    pub add: f64,
    /// Never offer more than this.
    pub max: f64,
}

impl RateSteps {
    /// The rate after `rate`, or `None` when the next would pass `max` or not be higher (the
    /// search is over).
    pub fn next(&self, rate: f64) -> Option<f64> {
        let next = rate * self.factor.max(1.0) + self.add.max(0.0);
        (next > rate && next <= self.max).then_some(next.round())
    }

    /// Every rate the search would try if every step kept up.
    pub fn all(&self) -> Vec<f64> {
        let mut rates = Vec::new();
        let mut rate = Some(self.start).filter(|r| *r > 0.0 && *r <= self.max);
        while let Some(r) = rate {
            rates.push(r);
            rate = self.next(r);
        }
        rates
    }
}

/// When a step counts as fallen behind.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StepBounds {
    /// The backlog (pending + awaiting ack) at the end of a step must stay at or below this …
    pub backlog: u64,
    /// … unless it did not grow across the step; and p99 (ms) must stay at or below this.
    pub p99_ms: f64,
}

/// The verdict on one step of `--find-max`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    Sustained,
    /// The backlog ended above the bound and grew across the step.
    BacklogGrew {
        at_end: u64,
        first_half_mean: f64,
        second_half_mean: f64,
    },
    /// p99 of report → event latency passed the bound.
    LatencyExceeded {
        p99_ms: f64,
    },
    /// No backlog sample could be taken (dispatch's consumer not found).
    Unknown,
}

impl Verdict {
    pub fn sustained(&self) -> bool {
        matches!(self, Verdict::Sustained)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Sustained => write!(f, "keeps up"),
            Verdict::BacklogGrew {
                at_end,
                first_half_mean,
                second_half_mean,
            } => write!(
                f,
                "falls behind: backlog {at_end} at the end, growing (mean {:.0} → {:.0})",
                first_half_mean, second_half_mean
            ),
            Verdict::LatencyExceeded { p99_ms } => {
                write!(f, "too slow: p99 {} over the bound", format_ms(*p99_ms))
            }
            Verdict::Unknown => write!(f, "unknown: no backlog sample"),
        }
    }
}

/// Whether a backlog sampled at even intervals across a step grew: the mean of the second half
/// of the samples is more than `margin` above the mean of the first half (an odd middle sample
/// counts in neither), so the noise of a steady backlog is not growth. Returns the two means.
/// Fewer than two samples cannot show growth.
pub fn backlog_growth(samples: &[u64], margin: f64) -> (bool, f64, f64) {
    if samples.len() < 2 {
        return (false, 0.0, 0.0);
    }
    let half = samples.len() / 2;
    let mean = |s: &[u64]| s.iter().sum::<u64>() as f64 / s.len() as f64;
    let first = mean(&samples[..half]);
    let second = mean(&samples[samples.len() - half..]);
    (second > first + margin, first, second)
}

/// Judges one step from the backlog samples taken during it (the last one at its end) and its
/// p99 latency in ms. A step falls behind when the backlog at its end is above the bound **and**
/// grew across the step by more than half the bound (`backlog_growth` with that margin: a
/// steady backlog of a few batches is work in hand, not falling behind), or when p99 is above
/// the bound.
pub fn judge_step(samples: &[u64], p99_ms: f64, bounds: StepBounds) -> Verdict {
    let Some(&at_end) = samples.last() else {
        return Verdict::Unknown;
    };
    let (growing, first_half_mean, second_half_mean) =
        backlog_growth(samples, bounds.backlog as f64 / 2.0);
    if at_end > bounds.backlog && growing {
        return Verdict::BacklogGrew {
            at_end,
            first_half_mean,
            second_half_mean,
        };
    }
    if p99_ms > bounds.p99_ms {
        return Verdict::LatencyExceeded { p99_ms };
    }
    Verdict::Sustained
}

/// The highest offered rate among the steps that kept up, if any. Steps after the first that
/// fell behind do not count (the search stops there anyway).
pub fn highest_sustained(steps: &[(f64, Verdict)]) -> Option<f64> {
    steps
        .iter()
        .take_while(|(_, verdict)| verdict.sustained())
        .map(|(rate, _)| *rate)
        .fold(None, |best, rate| {
            Some(best.map_or(rate, |b: f64| b.max(rate)))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: StepBounds = StepBounds {
        backlog: 1000,
        p99_ms: 1000.0,
    };

    #[test]
    fn rates_step_by_factor_then_addition_up_to_the_maximum() {
        let by_factor = RateSteps {
            start: 1000.0,
            factor: 1.25,
            add: 0.0,
            max: 3000.0,
        };
        assert_eq!(
            by_factor.all(),
            vec![1000.0, 1250.0, 1563.0, 1954.0, 2443.0]
        );
        let by_addition = RateSteps {
            start: 1000.0,
            factor: 1.0,
            add: 500.0,
            max: 2500.0,
        };
        assert_eq!(by_addition.all(), vec![1000.0, 1500.0, 2000.0, 2500.0]);
        assert_eq!(by_addition.next(2500.0), None);
    }

    #[test]
    fn a_step_plan_that_cannot_rise_stops() {
        let flat = RateSteps {
            start: 1000.0,
            factor: 1.0,
            add: 0.0,
            max: 10_000.0,
        };
        assert_eq!(flat.all(), vec![1000.0]);
        let above_max = RateSteps {
            start: 5000.0,
            factor: 1.25,
            add: 0.0,
            max: 1000.0,
        };
        assert!(above_max.all().is_empty());
    }

    #[test]
    fn growth_compares_the_halves_of_the_samples() {
        assert_eq!(backlog_growth(&[], 0.0), (false, 0.0, 0.0));
        assert_eq!(backlog_growth(&[5], 0.0), (false, 0.0, 0.0));
        assert_eq!(backlog_growth(&[0, 10], 0.0), (true, 0.0, 10.0));
        // The odd middle sample is in neither half.
        assert_eq!(
            backlog_growth(&[0, 100, 1000, 5000, 9000], 500.0),
            (true, 50.0, 7000.0)
        );
        assert_eq!(
            backlog_growth(&[900, 1200, 800, 1100], 0.0),
            (false, 1050.0, 950.0)
        );
        assert!(!backlog_growth(&[3000, 3000, 3000, 3000], 0.0).0);
        // Within the margin: noise, not growth.
        assert_eq!(
            backlog_growth(&[1500, 1400, 1600, 1450], 500.0),
            (false, 1450.0, 1525.0)
        );
    }

    #[test]
    fn a_growing_backlog_above_the_bound_falls_behind() {
        let verdict = judge_step(&[0, 2000, 5000, 9000], 50.0, BOUNDS);
        assert_eq!(
            verdict,
            Verdict::BacklogGrew {
                at_end: 9000,
                first_half_mean: 1000.0,
                second_half_mean: 7000.0
            }
        );
        assert!(!verdict.sustained());
    }

    #[test]
    fn a_backlog_that_is_high_but_steady_or_small_but_growing_keeps_up() {
        // Steady: a batch or two in hand all along.
        assert_eq!(
            judge_step(&[1500, 1400, 1600, 1450], 50.0, BOUNDS),
            Verdict::Sustained
        );
        // Growing, but still under the bound at the end.
        assert_eq!(
            judge_step(&[0, 100, 300, 900], 50.0, BOUNDS),
            Verdict::Sustained
        );
        // A drop at the end after a peak: not above the bound.
        assert_eq!(
            judge_step(&[0, 5000, 800], 50.0, BOUNDS),
            Verdict::Sustained
        );
    }

    #[test]
    fn latency_over_the_bound_fails_a_step_without_backlog() {
        assert_eq!(
            judge_step(&[0, 0, 0], 1500.0, BOUNDS),
            Verdict::LatencyExceeded { p99_ms: 1500.0 }
        );
        assert_eq!(judge_step(&[], 1.0, BOUNDS), Verdict::Unknown);
    }

    #[test]
    fn the_highest_sustained_rate_stops_at_the_first_failure() {
        let grew = Verdict::BacklogGrew {
            at_end: 5000,
            first_half_mean: 0.0,
            second_half_mean: 1.0,
        };
        let steps = [
            (1000.0, Verdict::Sustained),
            (1250.0, Verdict::Sustained),
            (1563.0, grew),
            (1954.0, Verdict::Sustained),
        ];
        assert_eq!(highest_sustained(&steps), Some(1250.0));
        assert_eq!(highest_sustained(&steps[2..]), None);
        assert_eq!(highest_sustained(&[]), None);
    }

    #[test]
    fn figures_format_for_people() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(160_000), "160,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(format_rate(27_912.4), "27,912/s");
        assert_eq!(format_rate(f64::NAN), "-");
        assert_eq!(format_ms(1.9), "1.90 ms");
        assert_eq!(format_ms(33.26), "33.3 ms");
        assert_eq!(format_ms(3922.4), "3,922 ms");
    }

    #[test]
    fn latency_summarises_a_histogram_of_microseconds() {
        let mut h = micros_histogram();
        assert_eq!(Latency::from_micros(&h), Latency::default());
        for us in 1..=1000u64 {
            h.record(us * 10).unwrap();
        }
        let l = Latency::from_micros(&h);
        assert_eq!(l.count, 1000);
        assert!((l.p50 - 5.0).abs() < 0.01, "{l:?}");
        assert!((l.p99 - 9.9).abs() < 0.01, "{l:?}");
        assert!((l.max - 10.0).abs() < 0.01, "{l:?}");
        assert_eq!(
            l.to_string(),
            format!(
                "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (n=1000)",
                format_ms(l.p50),
                format_ms(l.p90),
                format_ms(l.p99),
                format_ms(l.p999),
                format_ms(l.max)
            )
        );
    }
}
