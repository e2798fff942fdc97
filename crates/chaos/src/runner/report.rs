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

/// One replica replaced in a rolling upgrade.
#[derive(Debug, Clone, Serialize)]
pub struct Replacement {
    /// The old replica's slot and the new one's (their logs are `dispatch-{slot}.log`).
    pub old_slot: usize,
    pub new_slot: usize,
    /// From starting the new replica until it served (stood by for, or took, the intake lease).
    pub ready_secs: f64,
    /// From SIGTERM to the old replica's exit (its drain).
    pub stop_secs: f64,
    /// The old replica exited 0 on its own within the timeout (else it was killed).
    pub stopped_cleanly: bool,
    /// The whole replacement.
    pub secs: f64,
    /// The longest time during it in which no report was recorded or rejected, to 0.1 s.
    pub intake_pause_secs: f64,
}

/// How a rolling upgrade went.
#[derive(Debug, Clone, Serialize, Default)]
pub struct UpgradeRecord {
    /// The new migrations applied while the old replicas served.
    pub migrations_applied: Vec<i64>,
    pub migrate_secs: f64,
    pub replacements: Vec<Replacement>,
    /// From the migration's start to the last old replica's exit.
    pub secs: f64,
    /// The longest time in the whole upgrade in which no report was recorded or rejected.
    pub intake_pause_secs: f64,
    /// The same, over as long a time just before the upgrade: what the load alone shows.
    pub baseline_pause_secs: f64,
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
    /// With a rolling upgrade: how it went.
    pub upgrade: Option<UpgradeRecord>,
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
        if let Some(u) = &self.upgrade {
            let _ = writeln!(
                out,
                "\nrolling upgrade: {:.1} s; migrations {:?} applied in {:.2} s while the old replicas served",
                u.secs, u.migrations_applied, u.migrate_secs
            );
            for r in &u.replacements {
                let _ = writeln!(
                    out,
                    "  replica {} -> {}: new one serving after {:.1} s, old one stopped (SIGTERM) in {:.1} s{}; {:.1} s in all, longest intake pause {:.1} s",
                    r.old_slot,
                    r.new_slot,
                    r.ready_secs,
                    r.stop_secs,
                    if r.stopped_cleanly { ", exit 0" } else { ", NOT cleanly (killed or non-zero exit)" },
                    r.secs,
                    r.intake_pause_secs
                );
            }
            let _ = writeln!(
                out,
                "  longest intake pause: {:.1} s during the upgrade, {:.1} s in as long a time before it",
                u.intake_pause_secs, u.baseline_pause_secs
            );
        }
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
        let c = &v.commands;
        let _ = writeln!(
            out,
            "commands: sent {}, ok and applied once {}, refused {}, unanswered {}, lost {}, applied twice {}",
            c.sent, c.ok, c.refused, c.unanswered, c.lost, c.duplicated
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
