//! The Jepsen-style checker: a pure function from a final read of PostgreSQL and the streams (a
//! [`History`]) to a [`Verdict`]. No I/O; the runner collects the history, the unit tests below
//! hand-make them.
//!
//! - Every published report id is classified: `ok` (exactly one outcome — an incident, an
//!   attachment or a rejection row — and exactly one announcing event, and for an invalid report
//!   exactly one copy in `WHISTLE_REJECTED`), `lost` (acknowledged by JetStream, no outcome or no
//!   event), `duplicated` (more than one of any), or `indeterminate` (the publish was never
//!   acknowledged and nothing of it is anywhere: the client cannot know whether the server has it).
//! - Every event is in `WHISTLE_EVENTS` once (by event id and `Nats-Msg-Id`), nothing is left in the
//!   outbox, every event's incident exists, and per incident the versions are 1, 2, … up to the
//!   incident's version, non-decreasing in stream order, starting with `incident.reported`.
//! - Every timer firing on the timeline (`data.timer`, `data.due_at`) is counted per (incident,
//!   timer key, deadline): 1 is right, more is a double firing, a firing before its deadline is
//!   early; a timer still in `timers` whose deadline passed before the system settled fired 0 times.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

/// One report the load generator published.
#[derive(Debug, Clone)]
pub struct Published {
    pub report_id: String,
    /// A valid report (expected to open or join an incident) or a deliberately invalid one
    /// (expected to be rejected).
    pub valid: bool,
    /// JetStream acknowledged the publish.
    pub acked: bool,
}

/// One message of `WHISTLE_EVENTS`, reduced to what the checker needs.
#[derive(Debug, Clone, Default)]
pub struct EventSeen {
    pub msg_id: Option<String>,
    pub event_id: String,
    pub kind: String,
    /// Empty for events about no incident (`report.rejected`, `cluster.alert`).
    pub incident_id: String,
    /// The incident's version after the change, when the event carries it.
    pub version: Option<u64>,
    /// The report announced by `incident.reported`, `report.attached` or `report.rejected`.
    pub report_id: Option<String>,
}

/// A timer firing as the timeline records it: one per (incident, transition), i.e. the entries
/// of one firing share `at`.
#[derive(Debug, Clone)]
pub struct Firing {
    pub incident_id: String,
    pub timer: String,
    pub due_at: DateTime<Utc>,
    pub at: DateTime<Utc>,
}

/// A row left in `timers`.
#[derive(Debug, Clone)]
pub struct PendingTimer {
    pub incident_id: String,
    pub timer: String,
    pub due_at: DateTime<Utc>,
}

/// How dispatch finally answered a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandAnswer {
    Ok,
    /// A definitive refusal (not `unavailable` or `rate_limited`, which are retried): its code
    /// and message.
    Refused(String),
}

/// One command the load sent (retried with the same id until answered).
#[derive(Debug, Clone)]
pub struct CommandSent {
    pub command_id: String,
    /// None: never answered before the load gave up.
    pub answer: Option<CommandAnswer>,
}

/// The comment text a load's command carries: the command id, so its timeline entry names it.
pub fn comment_text(command_id: &str) -> String {
    format!("{COMMENT_PREFIX}{command_id}")
}

const COMMENT_PREFIX: &str = "chaos command ";

/// The final read.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub published: Vec<Published>,
    pub commands: Vec<CommandSent>,
    /// The notes of every `incident.commented` timeline entry.
    pub comments: Vec<String>,
    /// `reports.report_id`, one per row.
    pub reports: Vec<String>,
    /// `rejected_reports.report_id`, one per row (None when the report id was unreadable).
    pub rejections: Vec<Option<String>>,
    /// Report ids of the messages in `WHISTLE_REJECTED` (decoded from the original bytes).
    pub rejected_copies: Vec<Option<String>>,
    /// `incidents.id` and `incidents.version`.
    pub incidents: Vec<(String, u64)>,
    /// Rows left in `outbox`.
    pub outbox_left: u64,
    /// `WHISTLE_EVENTS` in stream order.
    pub events: Vec<EventSeen>,
    /// Timeline entries of timer firings.
    pub firings: Vec<Firing>,
    /// Rows left in `timers`.
    pub timers_left: Vec<PendingTimer>,
    /// Incidents whose `timers` rows differ from the timers their state needs.
    pub timer_table_mismatches: Vec<String>,
    /// When the system had settled (nothing pending, nothing due): a timer due before this (less
    /// a grace) and still pending was missed.
    pub settled_at: DateTime<Utc>,
    /// Windows during which something was down (NATS, PostgreSQL, every dispatch replica).
    pub outages: Vec<(DateTime<Utc>, DateTime<Utc>)>,
}

/// How late a due timer may still be pending at `settled_at` (the timer loop's poll and a round).
pub const TIMER_GRACE: TimeDelta = TimeDelta::seconds(3);

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ReportCounts {
    pub published: u64,
    pub acked: u64,
    pub unacked: u64,
    pub ok: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub indeterminate: u64,
    /// Of `ok`: reports whose publish was never acknowledged but which landed anyway.
    pub ok_unacked: u64,
    pub valid_ok: u64,
    pub invalid_ok: u64,
    /// Outcomes or events for report ids that were never published.
    pub unknown: u64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct EventCounts {
    pub total: u64,
    pub duplicate_ids: u64,
    pub msg_id_mismatches: u64,
    pub orphans: u64,
    pub version_errors: u64,
    pub outbox_left: u64,
    pub incidents: u64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct TimerCounts {
    /// Deadlines that fired exactly once.
    pub fired_once: u64,
    /// Deadlines that fired more than once.
    pub fired_more: u64,
    /// Deadlines that passed and never fired.
    pub missed: u64,
    /// Deadlines still in the future when the system settled.
    pub pending: u64,
    /// Firings before their deadline.
    pub early: u64,
    /// Of `fired_once`: deadlines that fell inside an outage window.
    pub due_during_outage: u64,
    /// Incidents whose `timers` rows differ from their state's timers.
    pub table_mismatches: u64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct CommandCounts {
    pub sent: u64,
    /// Answered `ok` and on the timeline exactly once.
    pub ok: u64,
    /// Refused (and not on the timeline).
    pub refused: u64,
    /// Never answered (on the timeline at most once).
    pub unanswered: u64,
    /// Answered `ok`, not on the timeline.
    pub lost: u64,
    /// On the timeline more than once, or refused yet applied.
    pub duplicated: u64,
}

/// The checker's answer.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verdict {
    pub reports: ReportCounts,
    pub events: EventCounts,
    pub timers: TimerCounts,
    pub commands: CommandCounts,
    /// Up to 10 examples of each problem.
    pub lost: Vec<String>,
    pub duplicated: Vec<String>,
    pub problems: Vec<String>,
    pub pass: bool,
}

const EXAMPLES: usize = 10;

fn note(list: &mut Vec<String>, what: impl FnOnce() -> String) {
    if list.len() < EXAMPLES {
        list.push(what());
    }
}

/// Milliseconds: PostgreSQL keeps microseconds, the state JSON nanoseconds, the timeline the
/// deadline as written by dispatch; deadlines are compared to the millisecond.
fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub fn check(history: &History) -> Verdict {
    let mut verdict = Verdict::default();
    check_reports(history, &mut verdict);
    check_events(history, &mut verdict);
    check_timers(history, &mut verdict);
    check_commands(history, &mut verdict);
    let r = &verdict.reports;
    let e = &verdict.events;
    let t = &verdict.timers;
    let c = &verdict.commands;
    verdict.pass = r.lost == 0
        && c.lost == 0
        && c.duplicated == 0
        && r.duplicated == 0
        && r.unknown == 0
        && e.duplicate_ids == 0
        && e.msg_id_mismatches == 0
        && e.orphans == 0
        && e.version_errors == 0
        && e.outbox_left == 0
        && t.fired_more == 0
        && t.missed == 0
        && t.early == 0
        && t.table_mismatches == 0;
    verdict
}

fn check_commands(history: &History, verdict: &mut Verdict) {
    // Notes may carry more around the comment's text: counted per text found in them.
    let mut applied: HashMap<String, u64> = HashMap::new();
    for note in &history.comments {
        if let Some(at) = note.find(COMMENT_PREFIX) {
            let text: String = note[at..]
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ");
            *applied.entry(text).or_default() += 1;
        }
    }
    let counts = &mut verdict.commands;
    for command in &history.commands {
        counts.sent += 1;
        let times = applied
            .get(&comment_text(&command.command_id))
            .copied()
            .unwrap_or(0);
        let id = &command.command_id;
        match (&command.answer, times) {
            (_, 2..) | (Some(CommandAnswer::Refused(_)), 1) => {
                counts.duplicated += 1;
                note(&mut verdict.duplicated, || {
                    format!(
                        "command {id}: answered {:?}, applied {times} times",
                        command.answer
                    )
                });
            }
            (Some(CommandAnswer::Ok), 0) => {
                counts.lost += 1;
                note(&mut verdict.lost, || {
                    format!("command {id}: answered ok, not on the timeline")
                });
            }
            (Some(CommandAnswer::Ok), _) => counts.ok += 1,
            (Some(CommandAnswer::Refused(why)), _) => {
                counts.refused += 1;
                note(&mut verdict.problems, || {
                    format!("command {id} refused: {why}")
                });
            }
            (None, _) => counts.unanswered += 1,
        }
    }
}

fn check_reports(history: &History, verdict: &mut Verdict) {
    let mut outcomes: HashMap<&str, u64> = HashMap::new();
    for id in &history.reports {
        *outcomes.entry(id).or_default() += 1;
    }
    for id in history.rejections.iter().flatten() {
        *outcomes.entry(id).or_default() += 1;
    }
    let mut announced: HashMap<&str, u64> = HashMap::new();
    for event in &history.events {
        if let Some(id) = &event.report_id {
            *announced.entry(id).or_default() += 1;
        }
    }
    let mut copies: HashMap<&str, u64> = HashMap::new();
    for id in history.rejected_copies.iter().flatten() {
        *copies.entry(id).or_default() += 1;
    }
    let counts = &mut verdict.reports;
    let mut known = HashSet::new();
    for published in &history.published {
        known.insert(published.report_id.as_str());
        counts.published += 1;
        if published.acked {
            counts.acked += 1;
        } else {
            counts.unacked += 1;
        }
        let id = published.report_id.as_str();
        let outcome = outcomes.get(id).copied().unwrap_or(0);
        let events = announced.get(id).copied().unwrap_or(0);
        let copy = copies.get(id).copied().unwrap_or(0);
        let expected_copies = u64::from(!published.valid);
        if !published.acked && outcome == 0 && events == 0 && copy == 0 {
            counts.indeterminate += 1;
        } else if outcome > 1 || events > 1 || copy > expected_copies {
            counts.duplicated += 1;
            note(&mut verdict.duplicated, || {
                format!("{id}: {outcome} outcomes, {events} events, {copy} rejected copies")
            });
        } else if outcome == 0 || events == 0 || copy < expected_copies {
            counts.lost += 1;
            note(&mut verdict.lost, || {
                format!("{id}: {outcome} outcomes, {events} events, {copy} rejected copies")
            });
        } else {
            counts.ok += 1;
            if !published.acked {
                counts.ok_unacked += 1;
            }
            if published.valid {
                counts.valid_ok += 1;
            } else {
                counts.invalid_ok += 1;
            }
        }
    }
    let unknown: HashSet<&str> = outcomes
        .keys()
        .chain(announced.keys())
        .chain(copies.keys())
        .copied()
        .filter(|id| !known.contains(id))
        .collect();
    counts.unknown = unknown.len() as u64;
    if counts.unknown > 0 {
        let mut unknown: Vec<&str> = unknown.into_iter().collect();
        unknown.sort_unstable();
        verdict.problems.push(format!(
            "{} report ids recorded that were never published, e.g. {:?}",
            counts.unknown,
            &unknown[..unknown.len().min(EXAMPLES)]
        ));
    }
}

fn check_events(history: &History, verdict: &mut Verdict) {
    let counts = &mut verdict.events;
    counts.total = history.events.len() as u64;
    counts.outbox_left = history.outbox_left;
    counts.incidents = history.incidents.len() as u64;
    if history.outbox_left > 0 {
        verdict.problems.push(format!(
            "{} events left in the outbox after the drain",
            history.outbox_left
        ));
    }
    let incidents: HashMap<&str, u64> = history
        .incidents
        .iter()
        .map(|(id, version)| (id.as_str(), *version))
        .collect();
    let mut ids = HashSet::new();
    let mut msg_ids = HashSet::new();
    // Per incident: versions in stream order.
    let mut versions: BTreeMap<&str, Vec<(u64, &str)>> = BTreeMap::new();
    for event in &history.events {
        if !ids.insert(event.event_id.as_str()) {
            counts.duplicate_ids += 1;
            note(&mut verdict.problems, || {
                format!(
                    "event {} is in WHISTLE_EVENTS more than once",
                    event.event_id
                )
            });
        }
        match &event.msg_id {
            Some(msg_id) if msg_id == &event.event_id => {
                msg_ids.insert(msg_id.as_str());
            }
            _ => {
                counts.msg_id_mismatches += 1;
                note(&mut verdict.problems, || {
                    format!(
                        "event {} has Nats-Msg-Id {:?}",
                        event.event_id, event.msg_id
                    )
                });
            }
        }
        if event.incident_id.is_empty() {
            continue;
        }
        if !incidents.contains_key(event.incident_id.as_str()) {
            counts.orphans += 1;
            note(&mut verdict.problems, || {
                format!(
                    "event {} names incident {} which does not exist",
                    event.event_id, event.incident_id
                )
            });
            continue;
        }
        if let Some(version) = event.version {
            versions
                .entry(event.incident_id.as_str())
                .or_default()
                .push((version, event.kind.as_str()));
        }
    }
    for (id, stored) in &incidents {
        let Some(seen) = versions.get(id) else {
            counts.version_errors += 1;
            note(&mut verdict.problems, || {
                format!("incident {id} has no event with a version")
            });
            continue;
        };
        let mut problem = None;
        if seen[0] != (1, "incident.reported") {
            problem = Some(format!("first event is {:?}", seen[0]));
        } else if seen.windows(2).any(|w| w[1].0 < w[0].0) {
            problem = Some("versions go down in stream order".to_owned());
        } else if seen.last().map(|v| v.0) != Some(*stored) {
            problem = Some(format!(
                "last event version {:?}, incident version {stored}",
                seen.last().map(|v| v.0)
            ));
        } else {
            let distinct: HashSet<u64> = seen.iter().map(|v| v.0).collect();
            if distinct.len() as u64 != *stored {
                problem = Some(format!(
                    "{} distinct versions for version {stored}: a transition without an event",
                    distinct.len()
                ));
            }
        }
        if let Some(problem) = problem {
            counts.version_errors += 1;
            note(&mut verdict.problems, || {
                format!("incident {id}: {problem}")
            });
        }
    }
}

fn check_timers(history: &History, verdict: &mut Verdict) {
    let counts = &mut verdict.timers;
    // (incident, timer, deadline) → distinct firing times.
    let mut fired: BTreeMap<(&str, &str, i64), HashSet<i64>> = BTreeMap::new();
    for firing in &history.firings {
        if firing.at < firing.due_at {
            counts.early += 1;
            note(&mut verdict.problems, || {
                format!(
                    "timer {} of {} fired at {} before its deadline {}",
                    firing.timer, firing.incident_id, firing.at, firing.due_at
                )
            });
        }
        fired
            .entry((
                firing.incident_id.as_str(),
                firing.timer.as_str(),
                ms(firing.due_at),
            ))
            .or_default()
            .insert(firing.at.timestamp_micros());
    }
    let in_outage = |due: i64| {
        history
            .outages
            .iter()
            .any(|(from, to)| ms(*from) <= due && due <= ms(*to))
    };
    for ((incident, timer, due), times) in &fired {
        if times.len() == 1 {
            counts.fired_once += 1;
            if in_outage(*due) {
                counts.due_during_outage += 1;
            }
        } else {
            counts.fired_more += 1;
            note(&mut verdict.problems, || {
                format!(
                    "timer {timer} of {incident} due {} fired {} times",
                    DateTime::<Utc>::from_timestamp_millis(*due).unwrap_or_default(),
                    times.len()
                )
            });
        }
    }
    let cutoff = history.settled_at - TIMER_GRACE;
    for pending in &history.timers_left {
        if pending.due_at <= cutoff {
            counts.missed += 1;
            note(&mut verdict.problems, || {
                format!(
                    "timer {} of {} due {} never fired (settled at {})",
                    pending.timer, pending.incident_id, pending.due_at, history.settled_at
                )
            });
        } else {
            counts.pending += 1;
        }
        if fired.contains_key(&(
            pending.incident_id.as_str(),
            pending.timer.as_str(),
            ms(pending.due_at),
        )) {
            counts.fired_more += 1;
            note(&mut verdict.problems, || {
                format!(
                    "timer {} of {} due {} fired and is still pending",
                    pending.timer, pending.incident_id, pending.due_at
                )
            });
        }
    }
    counts.table_mismatches = history.timer_table_mismatches.len() as u64;
    for id in history.timer_table_mismatches.iter().take(EXAMPLES) {
        verdict
            .problems
            .push(format!("incident {id}: timers rows differ from its state"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn published(id: &str, valid: bool, acked: bool) -> Published {
        Published {
            report_id: id.into(),
            valid,
            acked,
        }
    }

    fn event(id: &str, kind: &str, incident: &str, version: Option<u64>) -> EventSeen {
        EventSeen {
            msg_id: Some(id.into()),
            event_id: id.into(),
            kind: kind.into(),
            incident_id: incident.into(),
            version,
            report_id: None,
        }
    }

    fn reported(id: &str, incident: &str, report: &str) -> EventSeen {
        EventSeen {
            report_id: Some(report.into()),
            ..event(id, "incident.reported", incident, Some(1))
        }
    }

    /// r1 opens i1 (then escalated by a timer), r2 attaches to i1, bad is rejected.
    fn clean() -> History {
        History {
            published: vec![
                published("r1", true, true),
                published("r2", true, true),
                published("bad", false, true),
            ],
            reports: vec!["r1".into(), "r2".into()],
            rejections: vec![Some("bad".into())],
            rejected_copies: vec![Some("bad".into())],
            incidents: vec![("i1".into(), 2)],
            outbox_left: 0,
            events: vec![
                reported("e1", "i1", "r1"),
                EventSeen {
                    report_id: Some("r2".into()),
                    ..event("e2", "report.attached", "i1", None)
                },
                EventSeen {
                    report_id: Some("bad".into()),
                    ..event("e3", "report.rejected", "", None)
                },
                event("e4", "incident.escalated", "i1", Some(2)),
            ],
            firings: vec![Firing {
                incident_id: "i1".into(),
                timer: "level_window".into(),
                due_at: t(10),
                at: t(11),
            }],
            timers_left: vec![PendingTimer {
                incident_id: "i1".into(),
                timer: "level_window".into(),
                due_at: t(100),
            }],
            timer_table_mismatches: vec![],
            settled_at: t(50),
            outages: vec![(t(5), t(10))],
            ..History::default()
        }
    }

    #[test]
    fn a_clean_history_passes() {
        let verdict = check(&clean());
        assert!(verdict.pass, "{verdict:#?}");
        assert_eq!(verdict.reports.ok, 3);
        assert_eq!(verdict.reports.valid_ok, 2);
        assert_eq!(verdict.reports.invalid_ok, 1);
        assert_eq!(verdict.timers.fired_once, 1);
        assert_eq!(verdict.timers.pending, 1);
        assert_eq!(verdict.timers.due_during_outage, 1);
    }

    #[test]
    fn an_acked_report_with_no_outcome_is_lost_and_an_unacked_one_is_indeterminate() {
        let mut history = clean();
        history.published.push(published("r3", true, true));
        history.published.push(published("r4", true, false));
        let verdict = check(&history);
        assert!(!verdict.pass);
        assert_eq!(verdict.reports.lost, 1);
        assert_eq!(verdict.reports.indeterminate, 1);
        assert!(verdict.lost[0].starts_with("r3"));
    }

    #[test]
    fn an_unacked_report_that_landed_is_ok() {
        let mut history = clean();
        history.published[1].acked = false;
        let verdict = check(&history);
        assert!(verdict.pass, "{verdict:#?}");
        assert_eq!(verdict.reports.ok_unacked, 1);
    }

    #[test]
    fn a_recorded_report_whose_event_never_came_is_lost() {
        let mut history = clean();
        history.events.remove(1);
        let verdict = check(&history);
        assert_eq!(verdict.reports.lost, 1);
        assert!(!verdict.pass);
    }

    #[test]
    fn a_report_announced_twice_or_rejected_twice_is_duplicated() {
        let mut history = clean();
        history.events.push(EventSeen {
            report_id: Some("r2".into()),
            ..event("e5", "report.attached", "i1", None)
        });
        history.rejections.push(Some("bad".into()));
        let verdict = check(&history);
        assert_eq!(verdict.reports.duplicated, 2);
        assert!(!verdict.pass);
    }

    #[test]
    fn a_valid_report_both_recorded_and_rejected_is_duplicated() {
        let mut history = clean();
        history.rejections.push(Some("r1".into()));
        assert_eq!(check(&history).reports.duplicated, 1);
    }

    #[test]
    fn an_invalid_report_missing_from_whistle_rejected_is_lost() {
        let mut history = clean();
        history.rejected_copies.clear();
        assert_eq!(check(&history).reports.lost, 1);
    }

    #[test]
    fn outcomes_of_unpublished_ids_are_flagged() {
        let mut history = clean();
        history.reports.push("ghost".into());
        let verdict = check(&history);
        assert_eq!(verdict.reports.unknown, 1);
        assert!(!verdict.pass);
    }

    #[test]
    fn an_event_twice_in_the_stream_or_left_in_the_outbox_fails() {
        let mut history = clean();
        history
            .events
            .push(event("e4", "incident.escalated", "i1", Some(2)));
        history.outbox_left = 2;
        let verdict = check(&history);
        assert_eq!(verdict.events.duplicate_ids, 1);
        assert_eq!(verdict.events.outbox_left, 2);
        assert!(!verdict.pass);
    }

    #[test]
    fn an_event_of_a_missing_incident_is_an_orphan() {
        let mut history = clean();
        history
            .events
            .push(event("e9", "incident.escalated", "nope", Some(2)));
        assert_eq!(check(&history).events.orphans, 1);
    }

    #[test]
    fn versions_must_run_from_one_to_the_incidents_version_in_order() {
        // A gap: version 2 never announced.
        let mut gap = clean();
        gap.incidents[0].1 = 3;
        gap.events[3].version = Some(3);
        assert_eq!(check(&gap).events.version_errors, 1);
        // Out of order.
        let mut backwards = clean();
        backwards.incidents[0].1 = 3;
        backwards
            .events
            .push(event("e5", "incident.overdue", "i1", Some(3)));
        backwards.events.swap(3, 4);
        assert_eq!(check(&backwards).events.version_errors, 1);
        // The stored version is ahead of every event.
        let mut ahead = clean();
        ahead.incidents[0].1 = 5;
        assert_eq!(check(&ahead).events.version_errors, 1);
    }

    #[test]
    fn several_events_of_one_transition_share_a_version() {
        let mut history = clean();
        history
            .events
            .push(event("e5", "incident.overdue", "i1", Some(2)));
        assert!(check(&history).pass);
    }

    #[test]
    fn a_timer_fired_twice_early_or_never_fails() {
        let mut twice = clean();
        twice.firings.push(Firing {
            at: t(12),
            ..twice.firings[0].clone()
        });
        let verdict = check(&twice);
        assert_eq!(verdict.timers.fired_more, 1);
        assert!(!verdict.pass);

        let mut early = clean();
        early.firings[0].at = t(9);
        assert_eq!(check(&early).timers.early, 1);

        let mut missed = clean();
        missed.timers_left.push(PendingTimer {
            incident_id: "i1".into(),
            timer: "resolve_deadline".into(),
            due_at: t(40),
        });
        let verdict = check(&missed);
        assert_eq!(verdict.timers.missed, 1);
        assert!(!verdict.pass);
        // Due within the grace before settling: still pending, not missed.
        let mut late = clean();
        late.timers_left.push(PendingTimer {
            incident_id: "i1".into(),
            timer: "resolve_deadline".into(),
            due_at: t(49),
        });
        assert!(check(&late).pass);
    }

    #[test]
    fn two_entries_of_one_firing_count_once() {
        let mut history = clean();
        // One firing writes e.g. incident.escalated and incident.overdue: same `at`.
        history.firings.push(history.firings[0].clone());
        assert_eq!(check(&history).timers.fired_once, 1);
    }

    #[test]
    fn a_timer_fired_and_still_pending_with_the_same_deadline_is_a_double() {
        let mut history = clean();
        history.timers_left[0].due_at = t(10);
        history.settled_at = t(5);
        assert_eq!(check(&history).timers.fired_more, 1);
    }

    #[test]
    fn a_timers_table_out_of_step_with_the_state_fails() {
        let mut history = clean();
        history.timer_table_mismatches.push("i1".into());
        assert!(!check(&history).pass);
    }

    fn command(id: &str, answer: Option<CommandAnswer>) -> CommandSent {
        CommandSent {
            command_id: id.into(),
            answer,
        }
    }

    #[test]
    fn every_command_answered_ok_is_on_the_timeline_once() {
        let mut history = clean();
        history.commands = vec![
            command("c1", Some(CommandAnswer::Ok)),
            command("c2", Some(CommandAnswer::Refused("NotFound: gone".into()))),
            command("c3", None),
            command("c4", None),
        ];
        // The state machine's note may put more around the text.
        history.comments = vec![comment_text("c1"), format!("{} (张三)", comment_text("c3"))];
        let verdict = check(&history);
        assert!(verdict.pass, "{verdict:#?}");
        assert_eq!(
            verdict.commands,
            CommandCounts {
                sent: 4,
                ok: 1,
                refused: 1,
                unanswered: 2,
                lost: 0,
                duplicated: 0,
            }
        );
    }

    #[test]
    fn a_command_applied_twice_or_answered_ok_and_not_applied_fails() {
        let mut history = clean();
        history.commands = vec![
            command("c1", Some(CommandAnswer::Ok)),
            command("c2", Some(CommandAnswer::Ok)),
            command("c3", Some(CommandAnswer::Refused("Forbidden".into()))),
        ];
        history.comments = vec![comment_text("c1"), comment_text("c1"), comment_text("c3")];
        let verdict = check(&history);
        assert!(!verdict.pass);
        assert_eq!(verdict.commands.duplicated, 2, "{verdict:#?}");
        assert_eq!(verdict.commands.lost, 1, "{verdict:#?}");
        assert!(verdict.lost[0].contains("c2"), "{:?}", verdict.lost);
    }
}
