//! What a `whistle load` run found, as JSON or as the lines it prints.

use serde::Serialize;
use whistle_cli::{
    ceiling,
    stats::{format_ms, format_rate, thousands, Latency, StepBounds, Verdict},
};

#[derive(Debug, Default, Serialize)]
pub(crate) struct Summary {
    pub(crate) offered_rate: f64,
    /// Reports sent per second (the generator keeping up with the offered rate).
    pub(crate) achieved_rate: f64,
    /// Outcomes (incident, attached, rejected) that came back per second while sending: what
    /// the platform got through.
    pub(crate) outcome_rate: f64,
    pub(crate) seconds: f64,
    pub(crate) sent: u64,
    pub(crate) acked: u64,
    pub(crate) publish_errors: u64,
    pub(crate) incidents: u64,
    /// Reports attached to an open incident as duplicates.
    pub(crate) attached: u64,
    pub(crate) rejected: u64,
    pub(crate) expected_invalid: u64,
    pub(crate) missing: u64,
    pub(crate) latency_ms: Latency,
    /// Report → its outcome event on a `WatchEvents` stream of the query service.
    pub(crate) watch_latency_ms: Option<Latency>,
    /// Outcomes the `WatchEvents` stream did not deliver.
    pub(crate) watch_missing: Option<u64>,
    pub(crate) watch_gaps: Option<u64>,
    /// Reports whose outcome the `WatchEvents` stream delivered more than once.
    pub(crate) watch_duplicates: Option<u64>,
    pub(crate) watch_resumes: Option<u64>,
    pub(crate) backlog_at_end_of_send: Option<u64>,
    /// Highest backlog sampled while sending (and at its end).
    pub(crate) backlog_max: Option<u64>,
    pub(crate) backlog_samples: Vec<BacklogSample>,
    pub(crate) consumer_pending: Option<u64>,
    pub(crate) consumer_ack_pending: Option<u64>,
    pub(crate) find_max: Option<FindMax>,
    pub(crate) ceiling: Option<ceiling::Figures>,
    /// The platform's throughput over the ceiling pipeline's: with --find-max the highest
    /// sustained open-loop rates of both (the same search), else the outcome rate over the
    /// pipeline's drain.
    pub(crate) ratio_to_ceiling: Option<f64>,
    /// `--cpu`: what a report cost each process group, sending and draining included.
    pub(crate) cpu: Option<whistle_cli::cpu::CpuPerReport>,
    /// Each dispatch replica's intake batch times since it started.
    pub(crate) dispatch_batches: Vec<BatchTimes>,
}

/// One dispatch replica's intake batch times, from its `$SRV.STATS`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct BatchTimes {
    pub(crate) replica: String,
    pub(crate) batches: u64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct BacklogSample {
    /// Seconds since sending started.
    pub(crate) at: f64,
    pub(crate) backlog: u64,
}

#[derive(Debug, Serialize)]
pub(crate) struct FindMax {
    pub(crate) bounds: StepBounds,
    pub(crate) step_seconds: f64,
    pub(crate) steps: Vec<Step>,
    pub(crate) highest_sustained_rate: Option<f64>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Step {
    pub(crate) offered_rate: f64,
    pub(crate) achieved_rate: f64,
    pub(crate) outcome_rate: f64,
    pub(crate) sent: u64,
    pub(crate) latency_ms: Latency,
    pub(crate) watch_latency_ms: Option<Latency>,
    pub(crate) backlog_samples: Vec<u64>,
    pub(crate) backlog_at_end: Option<u64>,
    #[serde(flatten)]
    pub(crate) verdict: Verdict,
}

pub(crate) fn step_line(step: &Step) -> String {
    format!(
        "offered {:>9}  sent {:>9}  outcomes {:>9}  p99 {:>10}  backlog at end {:>7}  → {}",
        format_rate(step.offered_rate),
        format_rate(step.achieved_rate),
        format_rate(step.outcome_rate),
        format_ms(step.latency_ms.p99),
        step.backlog_at_end.map_or("?".to_owned(), thousands),
        step.verdict
    )
}

pub(crate) fn print_summary(s: &Summary) {
    if let Some(found) = &s.find_max {
        println!(
            "find-max: steps of {:.0}s; a step falls behind when its backlog ends above {} and grew across it by more than {}, or p99 > {}",
            found.step_seconds,
            thousands(found.bounds.backlog),
            thousands(found.bounds.backlog / 2),
            format_ms(found.bounds.p99_ms)
        );
        for step in &found.steps {
            println!("  {}", step_line(step));
        }
        match found.highest_sustained_rate {
            Some(rate) => println!("highest sustained rate: {}", format_rate(rate)),
            None => println!("highest sustained rate: none (the first step fell behind)"),
        }
        println!(
            "sent {}  acked {}  publish errors {}  incidents {}  attached {}  rejected {}  no outcome {}",
            s.sent, s.acked, s.publish_errors, s.incidents, s.attached, s.rejected, s.missing
        );
    } else {
        println!(
            "offered {}, sent {}, outcomes {} over {:.1}s",
            format_rate(s.offered_rate),
            format_rate(s.achieved_rate),
            format_rate(s.outcome_rate),
            s.seconds
        );
        println!(
            "sent {}  acked {}  publish errors {}  incidents {}  attached as duplicates {} ({:.1} %)  rejected {} (expected ≈{})  no outcome {}",
            s.sent, s.acked, s.publish_errors, s.incidents, s.attached,
            100.0 * s.attached as f64 / (s.incidents + s.attached).max(1) as f64,
            s.rejected, s.expected_invalid, s.missing
        );
        println!("report → event latency: {}", s.latency_ms);
        if let Some(cpu) = &s.cpu {
            println!("CPU: {cpu}");
        }
        for b in &s.dispatch_batches {
            println!(
                "dispatch {} since its start: {} batches, p50 {}  p99 {}  longest {}",
                b.replica,
                b.batches,
                format_ms(b.p50_ms),
                format_ms(b.p99_ms),
                format_ms(b.max_ms)
            );
        }
    }
    if let Some(l) = &s.watch_latency_ms {
        println!(
            "report → WatchEvents delivery: {l}; not delivered {}, delivered twice {}, gaps {}, \
             stream resumed {} times",
            s.watch_missing.unwrap_or(0),
            s.watch_duplicates.unwrap_or(0),
            s.watch_gaps.unwrap_or(0),
            s.watch_resumes.unwrap_or(0)
        );
    }
    if s.find_max.is_none() {
        match (s.backlog_at_end_of_send, s.backlog_max) {
            (Some(at_end), max) => println!(
                "dispatch consumer backlog: max {} while sending, {} when sending stopped",
                max.map_or("?".to_owned(), thousands),
                thousands(at_end)
            ),
            _ => println!("dispatch consumer backlog: unknown (consumer not found)"),
        }
    }
    if let (Some(p), Some(a)) = (s.consumer_pending, s.consumer_ack_pending) {
        println!("after the drain: {p} pending, {a} awaiting ack");
    }
    if let (Some(figures), Some(ratio)) = (&s.ceiling, s.ratio_to_ceiling) {
        let ceiling = match &figures.pipeline_find_max {
            Some(found) => found.highest_sustained_rate.unwrap_or(0.0),
            None => figures.pipeline.map_or(0.0, |p| p.per_second),
        };
        let platform = s
            .find_max
            .as_ref()
            .map_or(s.outcome_rate, |f| f.highest_sustained_rate.unwrap_or(0.0));
        println!(
            "platform {} ({}) = {:.1} % of the ceiling pipeline's {} ({})",
            format_rate(platform),
            if s.find_max.is_some() {
                "highest sustained rate"
            } else {
                "outcomes while sending"
            },
            ratio * 100.0,
            format_rate(ceiling),
            if figures.pipeline_find_max.is_some() {
                "highest sustained open-loop rate, same search"
            } else {
                "drain"
            }
        );
    }
}
