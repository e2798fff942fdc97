//! What a run found, and how it reads for people.

use serde::Serialize;

use super::Fault;
use crate::checker::Verdict;

/// A fault as it happened.
#[derive(Debug, Clone, Serialize)]
pub struct FaultRecord {
    /// Seconds since the load started.
    pub at: f64,
    pub fault: Fault,
    pub detail: String,
    /// How long it was down or stopped, if it was.
    pub down: Option<f64>,
}

/// What a run found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub seed: u64,
    pub duration_secs: f64,
    pub rate: f64,
    pub time_divisor: u32,
    pub ack_wait_secs: f64,
    pub nats_server: String,
    pub faults: Vec<FaultRecord>,
    pub replica_starts: u32,
    /// Replicas that exited on their own (e.g. could not start while PostgreSQL was down), restarted.
    pub unexpected_exits: u32,
    /// Whether everything settled (nothing pending, nothing due, outbox empty) before the timeout.
    pub settled: bool,
    pub settle_secs: f64,
    pub incidents: u64,
    pub timer_firings: u64,
    pub verdict: Verdict,
    pub work_dir: String,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.settled && self.verdict.pass
    }

    /// The report for people.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let v = &self.verdict;
        let _ = writeln!(
            out,
            "whistle chaos: seed {}, {:.0} s at {} reports/s, policy durations / {}, ack wait {:.0} s, {}",
            self.seed, self.duration_secs, self.rate, self.time_divisor, self.ack_wait_secs, self.nats_server
        );
        let _ = writeln!(out, "\nfaults ({}):", self.faults.len());
        for f in &self.faults {
            let down = f
                .down
                .map(|d| format!(" (down {d:.1} s)"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {:>7.1} s  {:<20} {}{}",
                f.at,
                serde_json::to_value(f.fault)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                f.detail,
                down
            );
        }
        let _ = writeln!(
            out,
            "  replica starts {}, exits on their own {}",
            self.replica_starts, self.unexpected_exits
        );
        let r = &v.reports;
        let _ = writeln!(
            out,
            "\nreports: published {}, acked {}, not acked {}",
            r.published, r.acked, r.unacked
        );
        let _ = writeln!(
            out,
            "  ok {} (valid {}, invalid {}; landed without an ack {}), lost {}, duplicated {}, indeterminate {}, unknown ids {}",
            r.ok, r.valid_ok, r.invalid_ok, r.ok_unacked, r.lost, r.duplicated, r.indeterminate, r.unknown
        );
        let e = &v.events;
        let _ = writeln!(
            out,
            "events: {} in WHISTLE_EVENTS for {} incidents; duplicate ids {}, Nats-Msg-Id mismatches {}, orphans {}, version errors {}, left in outbox {}",
            e.total, e.incidents, e.duplicate_ids, e.msg_id_mismatches, e.orphans, e.version_errors, e.outbox_left
        );
        let t = &v.timers;
        let _ = writeln!(
            out,
            "timers: fired once {} (of which due during an outage {}), fired more than once {}, missed (0) {}, early {}, still pending {}, table/state mismatches {}",
            t.fired_once, t.due_during_outage, t.fired_more, t.missed, t.early, t.pending, t.table_mismatches
        );
        let _ = writeln!(
            out,
            "settled: {} after {:.1} s",
            if self.settled { "yes" } else { "NO" },
            self.settle_secs
        );
        for problem in &v.problems {
            let _ = writeln!(out, "  problem: {problem}");
        }
        for lost in &v.lost {
            let _ = writeln!(out, "  lost: {lost}");
        }
        for dup in &v.duplicated {
            let _ = writeln!(out, "  duplicated: {dup}");
        }
        let _ = writeln!(
            out,
            "\nverdict: {}   (work dir {})",
            if self.passed() { "PASS" } else { "FAIL" },
            self.work_dir
        );
        out
    }
}
