use std::{collections::BTreeMap, fmt, str::FromStr, sync::OnceLock};

use chrono::{DateTime, Datelike, TimeDelta, Utc};
use proptest::{prelude::*, strategy::ValueTree, test_runner::TestRunner};

use super::*;
use crate::{
    calendar::Calendar, ordos, policy, policy::Policy, AreaCode, DepartmentCode, Level, OrgIndex,
};

struct Fixture {
    policy: Policy,
    org: OrgIndex,
    calendar: Calendar,
    /// The first grid of 东胜区 (150602), where every test incident is reported.
    grid: AreaCode,
    /// The first grid of 康巴什区 (150603).
    other_grid: AreaCode,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let org = OrgIndex::build(ordos::dataset()).expect("the Ordos dataset is consistent");
        let first_grid = |district: &str| {
            org.units()
                .map(|u| u.code.clone())
                .filter(|c| c.level() == Level::Grid && c.as_str().starts_with(district))
                .min()
                .expect("the district has grids")
        };
        Fixture {
            policy: policy::builtin("ordos").expect("ordos is builtin"),
            calendar: Calendar::builtin(),
            grid: first_grid("150602"),
            other_grid: first_grid("150603"),
            org,
        }
    })
}

fn ctx() -> Context<'static> {
    let f = fixture();
    Context::new(&f.policy, &f.org, &f.calendar)
}

fn t0() -> DateTime<Utc> {
    "2026-11-30T08:00:00Z".parse().unwrap()
}

fn mins(minutes: i64) -> DateTime<Utc> {
    t0() + TimeDelta::minutes(minutes)
}

fn hours(hours: i64) -> DateTime<Utc> {
    t0() + TimeDelta::hours(hours)
}

/// The 7-working-day deadline of an incident reported at `t0`: Monday 30 November 2026, 16:00 in
/// Ordos, so Wednesday 9 December at 16:00 (1, 2, 3, 4, 7, 8, 9 December).
fn seven_working_days() -> DateTime<Utc> {
    hours(9 * 24)
}

fn code<T: FromStr>(s: &str) -> T
where
    T::Err: fmt::Debug,
{
    s.parse().unwrap()
}

fn reporter() -> Actor {
    let grid = fixture().grid.clone();
    Actor::GridWorker {
        id: code(&format!("gw-{grid}")),
        grid,
    }
}

fn liaison(department: &str) -> Actor {
    Actor::Liaison {
        id: code(&format!("li-{department}")),
        department: code(department),
    }
}

fn operator(area: &str) -> Actor {
    Actor::Operator {
        id: code(&format!("op-{area}")),
        area: code(area),
    }
}

/// A leader paired with `areas` (dispatch reads them from `leader_pairings`).
fn leader(areas: &[AreaCode]) -> Actor {
    Actor::Leader {
        id: code("ld-150602-01"),
        paired: areas.to_vec(),
    }
}

fn handler_of(unit: AreaCode) -> Actor {
    Actor::Handler {
        id: code(&format!("staff-{unit}")),
        unit,
    }
}

/// The staff of the test grid's unit at `level`.
fn handler(level: Level) -> Actor {
    handler_of(fixture().grid.at_level(level).unwrap())
}

fn open_at(category: &str, now: DateTime<Utc>) -> (Incident, Vec<Effect>) {
    let f = fixture();
    let (incident, effects) = open(
        f.grid.clone(),
        f.policy.category(category).unwrap(),
        &f.policy,
        &f.calendar,
        now,
    );
    incident.check_invariants().unwrap();
    (incident, effects)
}

fn act(
    incident: &Incident,
    actor: Actor,
    command: Command,
    now: DateTime<Utc>,
) -> (Incident, Vec<Effect>) {
    let (next, effects) = apply(incident, Input::Command(actor, command), &ctx(), now)
        .unwrap_or_else(|rejection| panic!("{rejection}"));
    next.check_invariants().unwrap();
    (next, effects)
}

fn refused(incident: &Incident, actor: Actor, command: Command) -> Rejection {
    let now = incident.reported_at + TimeDelta::minutes(1);
    apply(incident, Input::Command(actor, command), &ctx(), now).unwrap_err()
}

fn fire(incident: &Incident, timer: Timer, now: DateTime<Utc>) -> (Incident, Vec<Effect>) {
    let (next, effects) = apply(incident, Input::Timer(timer), &ctx(), now).unwrap();
    next.check_invariants().unwrap();
    (next, effects)
}

fn kinds(effects: &[Effect]) -> Vec<&'static str> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Event { kind, .. } => Some(*kind),
            _ => None,
        })
        .collect()
}

fn timer_effects_of(effects: &[Effect]) -> Vec<Effect> {
    effects
        .iter()
        .filter(|e| !matches!(e, Effect::Event { .. }))
        .cloned()
        .collect()
}

fn schedule(timer: Timer, at: DateTime<Utc>) -> Effect {
    Effect::Schedule { timer, at }
}

fn cancel(timer: Timer) -> Effect {
    Effect::Cancel { timer }
}

fn escalate() -> Command {
    Command::Escalate {
        note: String::new(),
        departments: Vec::new(),
        assisting: Vec::new(),
    }
}

fn whistle_to(departments: &[&str]) -> Command {
    whistle_with(departments, &[])
}

fn whistle_with(departments: &[&str], assisting: &[&str]) -> Command {
    Command::Escalate {
        note: "beyond the street".into(),
        departments: departments.iter().map(|d| code(d)).collect(),
        assisting: assisting.iter().map(|d| code(d)).collect(),
    }
}

fn accept(task: u32) -> Command {
    Command::Accept {
        task,
        note: String::new(),
    }
}

fn resolve(task: Option<u32>) -> Command {
    Command::Resolve {
        task,
        note: "done".into(),
    }
}

fn verify(satisfaction: Satisfaction) -> Command {
    Command::Verify {
        satisfaction,
        note: String::new(),
    }
}

fn reassign(task: u32, to: &str) -> Command {
    Command::Reassign {
        task,
        to: code(to),
        note: String::new(),
    }
}

const HEATING: &str = "150602-heating";
const HOUSING: &str = "150602-housing_construction";

/// heating.no_heat (community 4h, street 8h, district 12h, SLA 24h) up to the street at 1h and
/// whistled there at 2h: task 1 heating, task 2 housing construction.
fn whistled_no_heat() -> Incident {
    let (incident, _) = open_at("heating.no_heat", t0());
    let (street, _) = act(&incident, handler(Level::Community), escalate(), hours(1));
    let (whistled, _) = act(&street, handler(Level::Street), escalate(), hours(2));
    let departments: Vec<&str> = whistled
        .tasks
        .iter()
        .map(|t| t.department.as_str())
        .collect();
    assert_eq!(departments, [HEATING, HOUSING]);
    whistled
}

#[test]
fn self_handled_at_community() {
    let (incident, effects) = open_at("heating.no_heat", t0());
    assert_eq!(
        (incident.status, incident.level, incident.version),
        (Status::Handling, Level::Community, 1)
    );
    assert_eq!(
        effects,
        [
            schedule(Timer::LevelWindow, hours(4)),
            schedule(Timer::ResolveDeadline, hours(24)),
        ]
    );

    let (resolved, effects) = act(
        &incident,
        handler(Level::Community),
        resolve(None),
        hours(1),
    );
    assert_eq!((resolved.status, resolved.version), (Status::Resolved, 2));
    assert_eq!(
        effects,
        [
            Effect::Event {
                kind: "incident.resolved",
                task: None,
                note: "done".into()
            },
            cancel(Timer::LevelWindow),
            cancel(Timer::ResolveDeadline),
            schedule(Timer::FollowUpDeadline, hours(1 + 72)),
        ]
    );

    let (late, effects) = fire(&resolved, Timer::LevelWindow, hours(5));
    assert_eq!(
        (late, effects),
        (resolved.clone(), vec![]),
        "a stale window is a no-op"
    );

    let (closed, effects) = act(
        &resolved,
        reporter(),
        verify(Satisfaction::Satisfied),
        hours(3),
    );
    assert_eq!(kinds(&effects), ["incident.verified", "incident.closed"]);
    assert_eq!(
        timer_effects_of(&effects),
        [cancel(Timer::FollowUpDeadline)]
    );
    assert_eq!((closed.status, closed.version), (Status::Closed, 3));
    assert_eq!(closed.satisfaction, Some(Satisfaction::Satisfied));
    assert!(closed.timers().is_empty());
}

#[test]
fn escalated_to_street_when_the_community_window_runs_out_or_by_hand() {
    let (incident, _) = open_at("heating.no_heat", t0());

    let (early, effects) = fire(&incident, Timer::LevelWindow, hours(3));
    assert_eq!(early, incident, "an early firing changes nothing");
    assert_eq!(
        effects,
        [schedule(Timer::LevelWindow, hours(4))],
        "and is scheduled again"
    );

    let (street, effects) = fire(&incident, Timer::LevelWindow, hours(4));
    assert_eq!(
        (
            street.status,
            street.level,
            street.level_due,
            street.resolve_due
        ),
        (
            Status::Handling,
            Level::Street,
            Some(hours(4 + 8)),
            hours(24)
        )
    );
    assert_eq!(kinds(&effects), ["incident.escalated"]);
    assert_eq!(
        timer_effects_of(&effects),
        [schedule(Timer::LevelWindow, hours(12))]
    );
    assert_eq!(street.version, 2);

    let (by_hand, _) = act(&incident, handler(Level::Community), escalate(), hours(1));
    assert_eq!(
        (by_hand.level, by_hand.level_due),
        (Level::Street, Some(hours(1 + 8)))
    );
    assert!(matches!(
        refused(&incident, handler(Level::Street), escalate()),
        Rejection::Forbidden(_)
    ));
}

#[test]
fn whistle_to_three_departments_two_accept_one_misses() {
    // environment.dust: first handled by the street (4d), district 3d, SLA 7d; summons three.
    let (incident, _) = open_at("environment.dust", t0());
    let (whistled, effects) = act(&incident, handler(Level::Street), escalate(), hours(1));
    let departments = [
        "150602-ecology_environment",
        "150602-housing_construction",
        "150602-transport",
    ];
    assert_eq!(
        (whistled.status, whistled.level, whistled.level_due),
        (Status::Whistled, Level::Street, Some(hours(1 + 4 * 24)))
    );
    assert_eq!(
        kinds(&effects),
        [
            "incident.whistled",
            "task.dispatched",
            "task.dispatched",
            "task.dispatched"
        ]
    );
    for (task, department) in whistled.tasks.iter().zip(departments) {
        assert_eq!(task.department.as_str(), department);
        assert_eq!(task.status, TaskStatus::Dispatched);
        assert_eq!(
            (task.accept_due, task.resolve_due),
            (mins(90), seven_working_days())
        );
        assert!(effects.contains(&schedule(Timer::AcceptDeadline { task: task.id }, mins(90))));
    }

    let (one, _) = act(&whistled, liaison(departments[0]), accept(1), mins(70));
    let (two, effects) = act(&one, liaison(departments[1]), accept(2), mins(80));
    assert_eq!(
        two.status,
        Status::Whistled,
        "one department has not reported in"
    );
    assert_eq!(
        timer_effects_of(&effects),
        [cancel(Timer::AcceptDeadline { task: 2 })]
    );

    let (missed, effects) = fire(&two, Timer::AcceptDeadline { task: 3 }, mins(90));
    let task = &missed.tasks[2];
    assert_eq!(
        (task.status, task.supervised),
        (TaskStatus::Supervised, true)
    );
    assert_eq!(
        kinds(&effects),
        ["task.supervised", "task.reminded", "incident.escalated"]
    );
    assert_eq!(
        (missed.status, missed.level, missed.level_due),
        (
            Status::Whistled,
            Level::District,
            Some(mins(90) + TimeDelta::days(3))
        )
    );
    assert_eq!(
        timer_effects_of(&effects),
        [schedule(Timer::LevelWindow, mins(90) + TimeDelta::days(3))],
        "the fired timer needs no cancel"
    );

    let (late, _) = act(&missed, liaison(departments[2]), accept(3), hours(2));
    assert_eq!(
        late.status,
        Status::Accepted,
        "a late report-in is still taken"
    );
    let task = &late.tasks[2];
    assert!(task.accepted_at.unwrap() > task.accept_due);
    assert_eq!(
        task.holder.as_ref().unwrap().as_str(),
        "li-150602-transport"
    );
}

#[test]
fn a_return_and_a_reassignment_keep_the_resolve_deadline() {
    let whistled = whistled_no_heat();
    let give_back = |note: &str| Command::Return {
        task: 2,
        reason: ReturnReason::NotOurDuty,
        note: note.into(),
    };
    assert!(matches!(
        refused(&whistled, liaison(HOUSING), give_back(" ")),
        Rejection::InvalidArgument(_)
    ));

    let (returned, effects) = act(
        &whistled,
        liaison(HOUSING),
        give_back("供热归热力公司"),
        mins(130),
    );
    assert_eq!(kinds(&effects), ["task.returned"]);
    assert_eq!(
        timer_effects_of(&effects),
        [cancel(Timer::AcceptDeadline { task: 2 })]
    );
    assert_eq!(
        returned.tasks[1].return_reason,
        Some(ReturnReason::NotOurDuty)
    );
    assert_eq!(returned.status, Status::Whistled);

    let (accepted, _) = act(&returned, liaison(HEATING), accept(1), mins(135));
    assert_eq!(
        accepted.status,
        Status::Accepted,
        "every live task reported in"
    );
    assert!(matches!(
        refused(
            &accepted,
            liaison(HEATING),
            Command::Return {
                task: 1,
                reason: ReturnReason::WrongArea,
                note: "x".into()
            }
        ),
        Rejection::InvalidTransition(_)
    ));
    assert!(matches!(
        refused(&accepted, handler(Level::Street), reassign(2, HOUSING)),
        Rejection::InvalidArgument(_)
    ));
    assert!(matches!(
        refused(
            &accepted,
            liaison(HEATING),
            reassign(2, "150602-urban_management")
        ),
        Rejection::Forbidden(_)
    ));

    let (reassigned, effects) = act(
        &accepted,
        handler(Level::Street),
        reassign(2, "150602-urban_management"),
        hours(3),
    );
    assert_eq!(kinds(&effects), ["task.reassigned", "task.dispatched"]);
    assert_eq!(reassigned.tasks[1].status, TaskStatus::Cancelled);
    let new = &reassigned.tasks[2];
    assert_eq!(
        (new.id, new.department.as_str(), new.status),
        (3, "150602-urban_management", TaskStatus::Dispatched)
    );
    assert_eq!(
        new.accept_due,
        mins(3 * 60 + 30),
        "a fresh report-in deadline"
    );
    assert_eq!(new.resolve_due, hours(24), "the SLA clock does not restart");
    assert_eq!(reassigned.resolve_due, hours(24));
    assert_eq!(reassigned.tasks[0].resolve_due, hours(24));
    assert_eq!(reassigned.status, Status::Whistled);
    assert!(matches!(
        refused(&reassigned, operator("150602"), reassign(3, HEATING)),
        Rejection::InvalidArgument(_)
    ));
}

#[test]
fn a_returned_task_holds_the_incident_open_until_the_street_decides() {
    let whistled = whistled_no_heat();
    let give_back = Command::Return {
        task: 2,
        reason: ReturnReason::UnclearOwnership,
        note: "权属不清".into(),
    };
    let (returned, _) = act(&whistled, liaison(HOUSING), give_back, mins(130));
    let (accepted, _) = act(&returned, liaison(HEATING), accept(1), mins(135));
    let (done, effects) = act(&accepted, liaison(HEATING), resolve(Some(1)), hours(5));
    assert_eq!(kinds(&effects), ["task.resolved"]);
    assert_eq!(
        done.status,
        Status::Accepted,
        "the return waits for the street"
    );

    let (resolved, effects) = act(&done, handler(Level::Street), resolve(None), hours(6));
    assert_eq!(kinds(&effects), ["incident.resolved"]);
    assert_eq!(resolved.status, Status::Resolved);
    assert_eq!(
        (resolved.tasks[1].status, resolved.tasks[1].return_reason),
        (TaskStatus::Returned, Some(ReturnReason::UnclearOwnership)),
        "the return stays on record"
    );
}

#[test]
fn resolved_unsatisfied_reopened_resolved_satisfied_closed() {
    let whistled = whistled_no_heat();
    let (one, _) = act(&whistled, liaison(HEATING), accept(1), mins(130));
    let (both, _) = act(&one, liaison(HOUSING), accept(2), mins(140));
    assert!(matches!(
        refused(&both, handler(Level::Street), resolve(None)),
        Rejection::InvalidTransition(_)
    ));
    let (half, effects) = act(&both, liaison(HEATING), resolve(Some(1)), hours(5));
    assert_eq!(
        (kinds(&effects), half.status),
        (vec!["task.resolved"], Status::Accepted)
    );
    let (resolved, effects) = act(&half, liaison(HOUSING), resolve(Some(2)), hours(6));
    assert_eq!(kinds(&effects), ["task.resolved", "incident.resolved"]);
    assert_eq!(
        (resolved.status, resolved.follow_up_due),
        (Status::Resolved, Some(hours(6 + 72)))
    );

    let (reopened, effects) = act(
        &resolved,
        reporter(),
        verify(Satisfaction::Unsatisfied),
        hours(10),
    );
    assert_eq!(
        kinds(&effects),
        [
            "incident.verified",
            "incident.reopened",
            "task.dispatched",
            "task.dispatched"
        ]
    );
    let new_due = hours(10) + TimeDelta::days(3);
    assert_eq!(
        (
            reopened.status,
            reopened.level,
            reopened.reopen_count,
            reopened.resolve_due
        ),
        (Status::Whistled, Level::Street, 1, new_due)
    );
    assert_eq!(reopened.level_due, Some(hours(10 + 8)));
    for effect in [
        cancel(Timer::FollowUpDeadline),
        schedule(Timer::ResolveDeadline, new_due),
        schedule(Timer::LevelWindow, hours(18)),
        schedule(Timer::AcceptDeadline { task: 3 }, mins(10 * 60 + 30)),
    ] {
        assert!(effects.contains(&effect), "{effect:?} in {effects:?}");
    }
    let redo: Vec<(u32, &str, u32)> = reopened.tasks[2..]
        .iter()
        .map(|t| (t.id, t.department.as_str(), t.round))
        .collect();
    assert_eq!(redo, [(3, HEATING, 1), (4, HOUSING, 1)]);
    assert!(matches!(
        refused(&reopened, liaison(HEATING), resolve(Some(1))),
        Rejection::InvalidTransition(_)
    ));

    let mut incident = reopened;
    for (task, department) in [(3, HEATING), (4, HOUSING)] {
        (incident, _) = act(&incident, liaison(department), accept(task), hours(11));
    }
    for (task, department) in [(3, HEATING), (4, HOUSING)] {
        (incident, _) = act(
            &incident,
            liaison(department),
            resolve(Some(task)),
            hours(20),
        );
    }
    assert_eq!(incident.status, Status::Resolved);
    let (closed, _) = act(
        &incident,
        reporter(),
        verify(Satisfaction::BasicallySatisfied),
        hours(21),
    );
    assert_eq!((closed.status, closed.reopen_count), (Status::Closed, 1));
}

#[test]
fn a_reopen_without_resolved_tasks_goes_back_to_the_level_and_never_shortens_the_sla() {
    // dispute.neighbour: the grid handles it first; SLA 7 working days; a reopen gives 3 days.
    let (incident, _) = open_at("dispute.neighbour", t0());
    let (resolved, _) = act(&incident, reporter(), resolve(None), hours(2));
    let (reopened, _) = act(
        &resolved,
        reporter(),
        verify(Satisfaction::Unsatisfied),
        hours(3),
    );
    assert_eq!(
        (reopened.status, reopened.level, reopened.level_due),
        (Status::Handling, Level::Grid, Some(hours(3 + 24)))
    );
    assert_eq!(
        reopened.resolve_due,
        seven_working_days(),
        "3 days from now is earlier than the SLA"
    );
}

/// A local (Ordos, UTC+8) moment.
fn ordos_time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&format!("{text}+08:00"))
        .unwrap()
        .with_timezone(&Utc)
}

#[test]
fn a_working_day_deadline_skips_spring_festival_and_counts_the_make_up_saturday() {
    // Thursday 12 February 2026, 10:00: Fri 13, Sat 14 (make-up), 15–23 off, Tue 24 … Sat 28
    // (make-up) is the seventh working day.
    let (incident, effects) = open_at("dispute.neighbour", ordos_time("2026-02-12T10:00:00"));
    assert_eq!(incident.resolve_due, ordos_time("2026-02-28T10:00:00"));
    assert_eq!(incident.provisional, None);
    assert!(effects.contains(&Effect::Schedule {
        timer: Timer::ResolveDeadline,
        at: ordos_time("2026-02-28T10:00:00")
    }));
    // The 24-hour class stays on the clock, through the holiday.
    let (heating, _) = open_at("heating.no_heat", ordos_time("2026-02-16T10:00:00"));
    assert_eq!(heating.resolve_due, ordos_time("2026-02-17T10:00:00"));
    // National Day 2026: petition.letters (15 working days) from Thursday 24 September 17:00;
    // Friday 25 (Mid-Autumn) off, 28, 29, 30 Sep, 1–7 Oct off, 8, 9, 10 (make-up), 12 … 22 Oct.
    let (petition, _) = open_at("petition.letters", ordos_time("2026-09-24T17:00:00"));
    assert_eq!(petition.resolve_due, ordos_time("2026-10-22T17:00:00"));
}

#[test]
fn a_provisional_deadline_is_recounted_when_its_year_is_loaded() {
    // Monday 21 December 2026: 15 working days reach into 2027, which is not loaded, so New
    // Year's Day counts as a working day for now.
    let reported = ordos_time("2026-12-21T10:00:00");
    let (incident, _) = open_at("petition.letters", reported);
    assert_eq!(incident.resolve_due, ordos_time("2027-01-11T10:00:00"));
    assert_eq!(
        incident.provisional,
        Some(Provisional {
            from: reported,
            working_days: 15,
            not_before: None
        })
    );
    let (whistled, _) = act(
        &incident,
        handler(Level::Street),
        escalate(),
        reported + TimeDelta::hours(1),
    );
    // A calendar still without 2027 changes nothing.
    let now = reported + TimeDelta::days(3);
    assert_eq!(
        apply(&whistled, Input::Recalendar, &ctx(), now).unwrap(),
        (whistled.clone(), vec![])
    );
    // 2027 loaded with 1 January off: the deadline moves one working day on, for the tasks too.
    let f = fixture();
    let y2027 = crate::calendar::tests::plain_year(2027, None).replacen("01 = \"W", "01 = \"H", 1);
    let files = crate::calendar::BUILTIN
        .into_iter()
        .chain([("cn-2027.toml", y2027.as_str())]);
    let calendar = Calendar::from_files(files).unwrap();
    let loaded = Context::new(&f.policy, &f.org, &calendar);
    let (recounted, effects) = apply(&whistled, Input::Recalendar, &loaded, now).unwrap();
    recounted.check_invariants().unwrap();
    let official = ordos_time("2027-01-12T10:00:00");
    assert_eq!(
        (recounted.resolve_due, recounted.provisional),
        (official, None)
    );
    assert!(recounted.tasks.iter().all(|t| t.resolve_due == official));
    assert_eq!(recounted.version, whistled.version + 1);
    assert_eq!(kinds(&effects), ["incident.rescheduled"]);
    assert!(effects.contains(&Effect::Schedule {
        timer: Timer::ResolveDeadline,
        at: official
    }));
    // Official now: a second recount is a no-op.
    assert_eq!(
        apply(&recounted, Input::Recalendar, &loaded, now).unwrap(),
        (recounted.clone(), vec![])
    );
}

#[test]
fn no_follow_up_closes_unverified() {
    let (incident, _) = open_at("heating.no_heat", t0());
    let (resolved, _) = act(&incident, operator("150602"), resolve(None), hours(1));
    let (early, _) = fire(&resolved, Timer::FollowUpDeadline, hours(72));
    assert_eq!(early, resolved);
    let (closed, effects) = fire(&resolved, Timer::FollowUpDeadline, hours(73));
    assert_eq!(closed.status, Status::ClosedUnverified);
    assert_eq!(kinds(&effects), ["incident.closed_unverified"]);
    assert!(timer_effects_of(&effects).is_empty());

    let terminal = [
        (operator("150600"), escalate()),
        (operator("150600"), resolve(None)),
        (reporter(), verify(Satisfaction::Satisfied)),
    ];
    for (actor, command) in terminal {
        assert!(matches!(
            refused(&closed, actor, command),
            Rejection::InvalidTransition(_)
        ));
    }
    let comment = Command::Comment {
        text: "居民已搬走".into(),
    };
    let (same, effects) = act(&closed, reporter(), comment, hours(80));
    assert_eq!(
        (kinds(&effects), same),
        (vec!["incident.commented"], closed.clone())
    );
    for timer in [
        Timer::LevelWindow,
        Timer::ResolveDeadline,
        Timer::FollowUpDeadline,
        Timer::AcceptDeadline { task: 1 },
    ] {
        assert_eq!(fire(&closed, timer, hours(500)), (closed.clone(), vec![]));
    }
}

#[test]
fn another_departments_liaison_may_not_accept() {
    let whistled = whistled_no_heat();
    for stranger in [
        liaison(HOUSING),
        liaison("150602-transport"),
        liaison("150603-heating"),
        reporter(),
        operator("150602"),
    ] {
        assert!(matches!(
            refused(&whistled, stranger, accept(1)),
            Rejection::Forbidden(_)
        ));
    }
    assert!(matches!(
        refused(&whistled, liaison(HEATING), accept(9)),
        Rejection::NotFound(_)
    ));
}

#[test]
fn an_operator_outside_the_area_is_forbidden() {
    let (incident, _) = open_at("heating.no_heat", t0());
    let other_community = fixture().other_grid.at_level(Level::Community).unwrap();
    let supervise = Command::Supervise {
        task: None,
        note: String::new(),
    };
    for outsider in [operator("150603"), handler_of(other_community)] {
        for command in [escalate(), resolve(None), supervise.clone()] {
            assert!(matches!(
                refused(&incident, outsider.clone(), command),
                Rejection::Forbidden(_)
            ));
        }
    }
    for insider in [operator("150602"), operator("150600"), Actor::System] {
        let (street, _) = act(&incident, insider.clone(), escalate(), hours(1));
        assert_eq!(street.level, Level::Street);
        let (same, effects) = act(&incident, insider, supervise.clone(), hours(1));
        assert_eq!(
            (same, kinds(&effects)),
            (incident.clone(), vec!["incident.supervised"])
        );
    }
}

#[test]
fn a_missed_sla_marks_overdue_and_escalates() {
    // gas.leak goes straight to the district: window 2h, SLA 2h.
    let (incident, _) = open_at("gas.leak", t0());
    assert_eq!(
        (incident.level, incident.level_due),
        (Level::District, Some(hours(2)))
    );
    let (city, effects) = fire(&incident, Timer::ResolveDeadline, hours(2));
    assert!(city.overdue);
    assert_eq!((city.level, city.level_due), (Level::City, None));
    assert_eq!(kinds(&effects), ["incident.overdue", "incident.escalated"]);
    assert_eq!(timer_effects_of(&effects), [cancel(Timer::LevelWindow)]);
    assert_eq!(
        fire(&city, Timer::LevelWindow, hours(2)),
        (city.clone(), vec![])
    );
    assert_eq!(
        fire(&city, Timer::ResolveDeadline, hours(3)),
        (city.clone(), vec![])
    );
    assert!(matches!(
        refused(&city, operator("150600"), escalate()),
        Rejection::InvalidTransition(_)
    ));

    // At the street without tasks, the missed SLA blows the whistle.
    let (street, _) = open_at("environment.dust", t0());
    let (whistled, effects) = fire(&street, Timer::ResolveDeadline, seven_working_days());
    assert!(whistled.overdue);
    assert_eq!(
        (whistled.status, whistled.tasks.len()),
        (Status::Whistled, 3)
    );
    assert_eq!(
        kinds(&effects)[..2],
        ["incident.overdue", "incident.whistled"]
    );
}

fn ask_extension(task: Option<u32>, until: DateTime<Utc>) -> Command {
    Command::RequestExtension {
        task,
        until,
        reason: "管线需更换，材料到货需要时间".into(),
    }
}

fn decide(approve: bool) -> Command {
    Command::DecideExtension {
        approve,
        note: if approve {
            String::new()
        } else {
            "理由不充分".into()
        },
    }
}

#[test]
fn the_community_asks_the_street_which_approves_a_later_deadline() {
    // heating.no_heat opens at the community with a 24 h SLA.
    let (incident, _) = open_at("heating.no_heat", t0());
    let until = hours(48);
    let (asked, effects) = act(
        &incident,
        handler(Level::Community),
        ask_extension(None, until),
        hours(1),
    );
    assert_eq!(kinds(&effects), ["incident.extension_requested"]);
    let request = asked.extension.clone().unwrap();
    assert_eq!(request.approver, Level::Street);
    assert_eq!(request.answer_due, hours(5));
    assert_eq!(
        timer_effects_of(&effects),
        [schedule(Timer::ExtensionAnswer, hours(5))]
    );
    // The community itself, a district handler and a grid worker do not answer for the street.
    for actor in [handler(Level::Community), reporter()] {
        assert!(matches!(
            refused(&asked, actor, decide(true)),
            Rejection::Forbidden(_)
        ));
    }
    let (approved, effects) = act(&asked, handler(Level::Street), decide(true), hours(2));
    assert_eq!(kinds(&effects), ["incident.extension_approved"]);
    assert_eq!(approved.resolve_due, until);
    assert_eq!(approved.extensions, 1);
    assert_eq!(approved.extension, None);
    assert_eq!(
        timer_effects_of(&effects),
        [
            cancel(Timer::ExtensionAnswer),
            schedule(Timer::ResolveDeadline, until)
        ]
    );
}

#[test]
fn an_extension_request_is_checked_before_it_waits() {
    let (incident, _) = open_at("heating.no_heat", t0());
    let community = handler(Level::Community);
    let refuse = |incident: &Incident, command: Command| {
        apply(
            incident,
            Input::Command(handler(Level::Community), command),
            &ctx(),
            hours(1),
        )
        .unwrap_err()
    };
    // Not later than the deadline, further than the policy's longest, no reason.
    assert!(matches!(
        refuse(&incident, ask_extension(None, hours(24))),
        Rejection::InvalidArgument(_)
    ));
    assert!(matches!(
        refuse(&incident, ask_extension(None, hours(24 + 7 * 24 + 1))),
        Rejection::InvalidArgument(_)
    ));
    let no_reason = Command::RequestExtension {
        task: None,
        until: hours(30),
        reason: " ".into(),
    };
    assert!(matches!(
        refuse(&incident, no_reason),
        Rejection::InvalidArgument(_)
    ));
    // Only the handling level asks for itself.
    assert!(matches!(
        refused(
            &incident,
            handler(Level::Street),
            ask_extension(None, hours(30))
        ),
        Rejection::Forbidden(_)
    ));
    // One request at a time, and none is answered when none waits.
    assert!(matches!(
        refused(&incident, handler(Level::Street), decide(true)),
        Rejection::InvalidTransition(_)
    ));
    let (asked, _) = act(
        &incident,
        community.clone(),
        ask_extension(None, hours(30)),
        hours(1),
    );
    assert!(matches!(
        refuse(&asked, ask_extension(None, hours(31))),
        Rejection::InvalidTransition(_)
    ));
    // A denial says why.
    let bare_denial = Command::DecideExtension {
        approve: false,
        note: String::new(),
    };
    assert!(matches!(
        refused(&asked, handler(Level::Street), bare_denial),
        Rejection::InvalidArgument(_)
    ));
    // After the deadline it is too late to ask.
    let (late, _) = fire(&incident, Timer::ResolveDeadline, hours(24));
    assert!(matches!(
        apply(
            &late,
            Input::Command(handler(late.level), ask_extension(None, hours(40))),
            &ctx(),
            hours(25)
        )
        .unwrap_err(),
        Rejection::InvalidTransition(_)
    ));
}

#[test]
fn the_cap_limits_approved_extensions_per_incident() {
    let (mut incident, _) = open_at("heating.no_heat", t0());
    let cap = ctx().policy.extensions().max_per_incident;
    for round in 0..cap {
        let asked_at = hours(1) + TimeDelta::minutes(i64::from(round));
        let until = incident.resolve_due + TimeDelta::hours(24);
        let (asked, _) = act(
            &incident,
            handler(Level::Community),
            ask_extension(None, until),
            asked_at,
        );
        (incident, _) = act(&asked, handler(Level::Street), decide(true), asked_at);
    }
    assert_eq!(incident.extensions, cap);
    let until = incident.resolve_due + TimeDelta::hours(1);
    assert!(matches!(
        refused(
            &incident,
            handler(Level::Community),
            ask_extension(None, until)
        ),
        Rejection::InvalidTransition(_)
    ));
}

#[test]
fn a_department_asks_the_district_and_an_unanswered_request_is_denied_and_sent_up() {
    let whistled = whistled_no_heat();
    let (accepted, _) = act(&whistled, liaison(HEATING), accept(1), hours(2));
    // Only a department that reported in asks, and only for its own task.
    assert!(matches!(
        refused(
            &whistled,
            liaison(HOUSING),
            ask_extension(Some(2), hours(30))
        ),
        Rejection::InvalidTransition(_)
    ));
    assert!(matches!(
        refused(
            &accepted,
            liaison(HOUSING),
            ask_extension(Some(1), hours(30))
        ),
        Rejection::Forbidden(_)
    ));
    let (asked, effects) = act(
        &accepted,
        liaison(HEATING),
        ask_extension(Some(1), hours(30)),
        hours(3),
    );
    assert_eq!(kinds(&effects), ["incident.extension_requested"]);
    assert_eq!(asked.extension.as_ref().unwrap().approver, Level::District);
    // The street supervises the departments but the district answers for them.
    assert!(matches!(
        refused(&asked, handler(Level::Street), decide(true)),
        Rejection::Forbidden(_)
    ));
    // Early firings do nothing; on time the request counts as denied and the incident goes up.
    let (early, effects) = fire(&asked, Timer::ExtensionAnswer, hours(4));
    assert_eq!(early, asked);
    assert!(kinds(&effects).is_empty());
    let (lapsed, effects) = fire(&asked, Timer::ExtensionAnswer, hours(7));
    assert_eq!(
        kinds(&effects),
        ["incident.extension_denied", "incident.escalated"]
    );
    assert_eq!(lapsed.extension, None);
    assert_eq!(lapsed.resolve_due, asked.resolve_due);
    assert_eq!(lapsed.level, Level::District);
}

#[test]
fn an_approved_department_extension_moves_every_current_task_and_a_resolution_withdraws() {
    let whistled = whistled_no_heat();
    let (accepted, _) = act(&whistled, liaison(HEATING), accept(1), hours(2));
    let (asked, _) = act(
        &accepted,
        liaison(HEATING),
        ask_extension(Some(1), hours(40)),
        hours(3),
    );
    let (approved, _) = act(&asked, operator("150602"), decide(true), hours(4));
    assert_eq!(approved.resolve_due, hours(40));
    assert!(approved.tasks.iter().all(|t| t.resolve_due == hours(40)));

    let (asked, _) = act(
        &approved,
        liaison(HEATING),
        ask_extension(Some(1), hours(50)),
        hours(5),
    );
    let (resolved, effects) = act(&asked, liaison(HEATING), resolve(Some(1)), hours(6));
    assert_eq!(
        kinds(&effects),
        ["task.resolved", "incident.extension_withdrawn"]
    );
    assert_eq!(resolved.extension, None);
    assert_eq!(resolved.resolve_due, hours(40));
}

#[test]
fn a_pending_request_lapses_when_the_deadline_passes_first() {
    let (incident, _) = open_at("heating.no_heat", t0());
    let (asked, _) = act(
        &incident,
        handler(Level::Community),
        ask_extension(None, hours(30)),
        hours(22),
    );
    let (overdue, effects) = fire(&asked, Timer::ResolveDeadline, hours(24));
    assert_eq!(
        kinds(&effects)[..2],
        ["incident.extension_denied", "incident.overdue"]
    );
    assert_eq!(overdue.extension, None);
    assert!(overdue.overdue);
    assert!(matches!(
        refused(&overdue, handler(Level::Street), decide(true)),
        Rejection::InvalidTransition(_)
    ));
}

#[test]
fn a_district_operator_does_not_answer_for_the_city() {
    // A gas leak is handled by the district first, which asks the city.
    let (gas, _) = open_at("gas.leak", t0());
    assert_eq!(gas.level, Level::District);
    let until = gas.resolve_due + TimeDelta::hours(1);
    let (asked, _) = act(
        &gas,
        handler(Level::District),
        ask_extension(None, until),
        mins(10),
    );
    assert_eq!(asked.extension.as_ref().unwrap().approver, Level::City);
    assert!(matches!(
        refused(&asked, operator("150602"), decide(true)),
        Rejection::Forbidden(_)
    ));
    let (approved, _) = act(&asked, operator("150600"), decide(true), mins(20));
    assert_eq!(approved.resolve_due, until);
}

fn dispute(task: u32, to: &str, reason: &str) -> Command {
    Command::Dispute {
        task,
        to: code(to),
        reason: reason.into(),
    }
}

fn arbitrate(task: u32, uphold: bool, note: &str) -> Command {
    Command::DecideDispute {
        task,
        uphold,
        note: note.into(),
    }
}

#[test]
fn an_upheld_dispute_reassigns_without_moving_the_citizens_deadline() {
    let whistled = whistled_no_heat();
    let due = whistled.resolve_due;
    let (disputed, effects) = act(
        &whistled,
        liaison(HOUSING),
        dispute(2, "150602-urban_management", "小区供热管网归城管"),
        mins(125),
    );
    assert_eq!(kinds(&effects), ["task.disputed"]);
    assert!(
        timer_effects_of(&effects).is_empty(),
        "the report-in clock runs on"
    );
    let pending = disputed.tasks[1].dispute.as_ref().unwrap();
    assert_eq!(pending.proposed.as_str(), "150602-urban_management");
    assert!(disputed.tasks[1].disputed);
    // One dispute per task: a second is refused, pending or decided.
    assert!(matches!(
        refused(
            &disputed,
            liaison(HOUSING),
            dispute(2, "150602-transport", "再议")
        ),
        Rejection::InvalidTransition(_)
    ));
    // Only the dispatching level arbitrates; the disputing department does not.
    assert!(matches!(
        refused(&disputed, liaison(HOUSING), arbitrate(2, true, "")),
        Rejection::Forbidden(_)
    ));
    assert!(matches!(
        refused(&disputed, handler(Level::Street), arbitrate(1, true, "")),
        Rejection::InvalidTransition(_)
    ));

    let (upheld, effects) = act(
        &disputed,
        handler(Level::Street),
        arbitrate(2, true, ""),
        hours(3),
    );
    assert_eq!(
        kinds(&effects),
        ["task.dispute_upheld", "task.reassigned", "task.dispatched"]
    );
    assert_eq!(upheld.tasks[1].status, TaskStatus::Cancelled);
    assert!(upheld.tasks[1].dispute.is_none() && upheld.tasks[1].disputed);
    let new = &upheld.tasks[2];
    assert_eq!(new.department.as_str(), "150602-urban_management");
    assert_eq!(new.accept_due, hours(3) + ctx().policy.accept_deadline());
    assert_eq!((upheld.resolve_due, new.resolve_due), (due, due));
    upheld.check_invariants().unwrap();
}

#[test]
fn a_rejected_dispute_stays_on_record_and_reporting_in_withdraws_one() {
    let whistled = whistled_no_heat();
    // The proposed department already has a task: proposing it is refused up front.
    assert!(matches!(
        refused(&whistled, liaison(HOUSING), dispute(2, HEATING, "归供热")),
        Rejection::InvalidArgument(_)
    ));
    let (one, _) = act(
        &whistled,
        liaison(HEATING),
        dispute(1, "150602-transport", "不是供热问题"),
        mins(125),
    );
    let (both, _) = act(
        &one,
        liaison(HOUSING),
        dispute(2, "150602-transport", "道路问题"),
        mins(126),
    );
    // A bare rejection is refused: the department is owed a reason.
    assert!(matches!(
        refused(&both, operator("150602"), arbitrate(1, false, " ")),
        Rejection::InvalidArgument(_)
    ));
    let (upheld, _) = act(&both, operator("150602"), arbitrate(2, true, ""), mins(127));
    // Upholding 1 too would give transport a second task: refused, nothing changes.
    assert!(matches!(
        refused(&upheld, operator("150602"), arbitrate(1, true, "")),
        Rejection::InvalidArgument(_)
    ));
    let (rejected, effects) = act(
        &upheld,
        operator("150602"),
        arbitrate(1, false, "暖气不热属供热职责"),
        mins(128),
    );
    assert_eq!(kinds(&effects), ["task.dispute_rejected"]);
    assert_eq!(rejected.tasks[0].status, TaskStatus::Dispatched);
    assert!(rejected.tasks[0].dispute.is_none() && rejected.tasks[0].disputed);
    assert_eq!(rejected.resolve_due, whistled.resolve_due);
    rejected.check_invariants().unwrap();

    let (accepted, effects) = act(&both, liaison(HOUSING), accept(2), mins(128));
    assert_eq!(kinds(&effects), ["task.accepted", "task.dispute_withdrawn"]);
    assert!(accepted.tasks[1].dispute.is_none());
    assert!(matches!(
        refused(
            &accepted,
            liaison(HOUSING),
            dispute(2, "150602-justice", "x")
        ),
        Rejection::InvalidTransition(_)
    ));
    // A missed report-in supervises a disputed task as any other: disputing buys no time.
    let (late, effects) = fire(
        &one,
        Timer::AcceptDeadline { task: 1 },
        one.tasks[0].accept_due,
    );
    assert!(kinds(&effects).contains(&"task.supervised"));
    assert!(late.tasks[0].dispute.is_some());
    late.check_invariants().unwrap();
}

#[test]
fn departments_named_in_a_whistle_are_checked() {
    let (street, _) = open_at("environment.dust", t0());
    let whistle =
        |departments: &[&str]| refused(&street, handler(Level::Street), whistle_to(departments));
    assert!(matches!(
        whistle(&["150602-nothing"]),
        Rejection::NotFound(_)
    ));
    assert!(matches!(
        whistle(&["150603-heating"]),
        Rejection::InvalidArgument(_)
    ));
    assert!(matches!(
        whistle(&[HEATING, HEATING]),
        Rejection::InvalidArgument(_)
    ));

    let (whistled, _) = act(
        &street,
        handler(Level::Street),
        whistle_to(&[HEATING, "150600-gas"]),
        hours(1),
    );
    let departments: Vec<&str> = whistled
        .tasks
        .iter()
        .map(|t| t.department.as_str())
        .collect();
    assert_eq!(
        departments,
        [HEATING, "150600-gas"],
        "a city department serves every district"
    );

    let (community, _) = open_at("heating.no_heat", t0());
    assert!(matches!(
        refused(
            &community,
            handler(Level::Community),
            whistle_to(&[HEATING])
        ),
        Rejection::InvalidArgument(_)
    ));
}

const URBAN: &str = "150602-urban_management";
const TRANSPORT: &str = "150602-transport";

fn submit(task: u32, note: &str) -> Command {
    Command::SubmitAssist {
        task,
        note: note.into(),
    }
}

fn release(task: u32, note: &str) -> Command {
    Command::ReleaseAssist {
        task,
        note: note.into(),
    }
}

/// heating.no_heat at the street at 1h, whistled at 2h to heating as the lead (task 1) with
/// housing construction (task 2) and urban management (task 3) assisting.
fn whistled_with_assistants() -> Incident {
    let (incident, _) = open_at("heating.no_heat", t0());
    let (street, _) = act(&incident, handler(Level::Community), escalate(), hours(1));
    let (whistled, effects) = act(
        &street,
        handler(Level::Street),
        whistle_with(&[HEATING], &[HOUSING, URBAN]),
        hours(2),
    );
    assert_eq!(
        kinds(&effects),
        [
            "incident.whistled",
            "task.dispatched",
            "task.dispatched",
            "task.dispatched"
        ]
    );
    let roles: Vec<(&str, TaskRole)> = whistled
        .tasks
        .iter()
        .map(|t| (t.department.as_str(), t.role))
        .collect();
    assert_eq!(
        roles,
        [
            (HEATING, TaskRole::Lead),
            (HOUSING, TaskRole::Assist),
            (URBAN, TaskRole::Assist)
        ]
    );
    whistled
}

#[test]
fn the_lead_resolves_only_after_every_assistant_submitted_or_was_released() {
    let whistled = whistled_with_assistants();
    // Each assistant has its own report-in clock, the department's 30 minutes.
    for task in &whistled.tasks {
        assert_eq!(task.accept_due, hours(2) + TimeDelta::minutes(30));
        assert!(whistled
            .timers()
            .contains_key(&Timer::AcceptDeadline { task: task.id }));
    }
    // The part is due 24 hours after the dispatch, but never after the 24-hour SLA deadline.
    assert_eq!(whistled.tasks[1].resolve_due, whistled.resolve_due);
    let mut incident = whistled;
    for (task, department) in [(1, HEATING), (2, HOUSING), (3, URBAN)] {
        incident = act(&incident, liaison(department), accept(task), hours(3)).0;
    }
    assert_eq!(incident.status, Status::Accepted);

    let why = refused(&incident, liaison(HEATING), resolve(Some(1)));
    assert!(
        matches!(&why, Rejection::InvalidTransition(m) if m.contains("task 2") && m.contains("task 3")),
        "{why}"
    );
    let why = refused(&incident, liaison(HOUSING), resolve(Some(2)));
    assert!(
        matches!(&why, Rejection::InvalidTransition(m) if m.contains("协办")),
        "{why}"
    );
    // Only the assistant's own liaison submits, with the part in the note.
    assert!(matches!(
        refused(&incident, liaison(URBAN), submit(2, "意见")),
        Rejection::Forbidden(_)
    ));
    assert!(matches!(
        refused(&incident, liaison(HOUSING), submit(2, " ")),
        Rejection::InvalidArgument(_)
    ));
    assert!(matches!(
        refused(&incident, liaison(HEATING), submit(1, "意见")),
        Rejection::InvalidTransition(_)
    ));
    let (submitted, effects) = act(
        &incident,
        liaison(HOUSING),
        submit(2, "已核实楼栋管网"),
        hours(4),
    );
    assert_eq!(kinds(&effects), ["task.assist_submitted"]);
    assert_eq!(submitted.tasks[1].status, TaskStatus::Resolved);
    assert_eq!(submitted.tasks[1].resolved_at, Some(hours(4)));
    assert_eq!(submitted.status, Status::Accepted);
    let why = refused(&submitted, liaison(HEATING), resolve(Some(1)));
    assert!(
        matches!(&why, Rejection::InvalidTransition(m) if m.contains("task 3") && !m.contains("task 2")),
        "{why}"
    );

    // The dispatching level releases an assistant that still owes, with a reason.
    assert!(matches!(
        refused(&submitted, liaison(HEATING), release(3, "不需要")),
        Rejection::Forbidden(_)
    ));
    assert!(matches!(
        refused(&submitted, operator("150603"), release(3, "不需要")),
        Rejection::Forbidden(_)
    ));
    assert!(matches!(
        refused(&submitted, handler(Level::Street), release(3, "")),
        Rejection::InvalidArgument(_)
    ));
    assert!(matches!(
        refused(&submitted, handler(Level::Street), release(2, "已提交")),
        Rejection::InvalidTransition(_)
    ));
    assert!(matches!(
        refused(&submitted, handler(Level::Street), release(1, "主办")),
        Rejection::InvalidTransition(_)
    ));
    let (released, effects) = act(
        &submitted,
        handler(Level::Street),
        release(3, "城管无需参与"),
        hours(5),
    );
    assert_eq!(kinds(&effects), ["task.assist_released"]);
    assert_eq!(released.tasks[2].status, TaskStatus::Released);
    assert!(!TaskStatus::Released.is_live());

    let (resolved, effects) = act(&released, liaison(HEATING), resolve(Some(1)), hours(6));
    assert_eq!(kinds(&effects)[..2], ["task.resolved", "incident.resolved"]);
    assert_eq!(resolved.status, Status::Resolved);
}

#[test]
fn a_whistle_with_assistants_is_checked() {
    let (incident, _) = open_at("heating.no_heat", t0());
    let (street, _) = act(&incident, handler(Level::Community), escalate(), hours(1));
    let at_street = |command| refused(&street, handler(Level::Street), command);
    let invalid = |why: Rejection, text: &str| {
        assert!(
            matches!(&why, Rejection::InvalidArgument(m) if m.contains(text)),
            "{why}"
        )
    };
    invalid(at_street(whistle_with(&[], &[HOUSING])), "exactly one lead");
    invalid(
        at_street(whistle_with(&[HEATING, URBAN], &[HOUSING])),
        "exactly one lead",
    );
    invalid(
        at_street(whistle_with(
            &[HEATING],
            &[HOUSING, URBAN, TRANSPORT, "150602-justice"],
        )),
        "allows 3",
    );
    invalid(
        at_street(whistle_with(&[HEATING], &[HOUSING, HEATING])),
        "named twice",
    );
    invalid(
        at_street(whistle_with(&[HEATING], &["150603-heating"])),
        "does not serve",
    );
    assert!(matches!(
        at_street(whistle_with(&[HEATING], &["150602-nothing"])),
        Rejection::NotFound(_)
    ));
    // Assistants come only with the whistle.
    invalid(
        refused(
            &incident,
            handler(Level::Community),
            whistle_with(&[HEATING], &[HOUSING]),
        ),
        "only by the whistle",
    );
    // A policy without [assisting] allows none.
    let f = fixture();
    let text = include_str!("../../../../policy/ordos.toml")
        .replace("[assisting]\nmax_per_whistle = 3\npart = \"24h\"\n", "");
    let policy = Policy::parse(&text, |_| None).unwrap();
    assert_eq!(policy.assisting(), policy::Assisting::NONE);
    let without = Context::new(&policy, &f.org, &f.calendar);
    let input = Input::Command(handler(Level::Street), whistle_with(&[HEATING], &[HOUSING]));
    let why = apply(&street, input, &without, hours(2)).unwrap_err();
    invalid(why, "allows 0");
}

#[test]
fn an_assistant_keeps_its_own_clocks_and_is_redone_with_its_lead() {
    // environment.dust: handled at the street, 7 working days; whistled at 1h.
    let (incident, _) = open_at("environment.dust", t0());
    let lead = "150602-ecology_environment";
    let (whistled, _) = act(
        &incident,
        handler(Level::Street),
        whistle_with(&[lead], &[TRANSPORT, URBAN]),
        hours(1),
    );
    assert_eq!(whistled.resolve_due, seven_working_days());
    assert_eq!(whistled.tasks[0].resolve_due, seven_working_days());
    assert_eq!(whistled.tasks[1].resolve_due, hours(25));
    assert_eq!(whistled.tasks[2].resolve_due, hours(25));

    // A missed report-in puts the assistant under supervision like any department, and the
    // incident goes to the district.
    let (late, effects) = fire(
        &whistled,
        Timer::AcceptDeadline { task: 3 },
        hours(1) + TimeDelta::minutes(30),
    );
    assert_eq!(
        kinds(&effects)[..3],
        ["task.supervised", "task.reminded", "incident.escalated"]
    );
    assert_eq!(late.tasks[2].status, TaskStatus::Supervised);
    assert_eq!(late.level, Level::District);

    let mut incident = late;
    for (task, department) in [(1, lead), (2, TRANSPORT), (3, URBAN)] {
        incident = act(&incident, liaison(department), accept(task), hours(2)).0;
    }
    // An assistant does not ask for more time: the lead does, and the parts keep their deadline.
    let until = seven_working_days() + TimeDelta::days(2);
    let ask = |task| Command::RequestExtension {
        task: Some(task),
        until,
        reason: "需要更多时间".into(),
    };
    assert!(matches!(
        refused(&incident, liaison(TRANSPORT), ask(2)),
        Rejection::InvalidTransition(_)
    ));
    let (asked, _) = act(&incident, liaison(lead), ask(1), hours(3));
    let (approved, _) = act(
        &asked,
        handler(Level::District),
        Command::DecideExtension {
            approve: true,
            note: String::new(),
        },
        hours(4),
    );
    assert_eq!(approved.tasks[0].resolve_due, until);
    assert_eq!(approved.tasks[1].resolve_due, hours(25));

    let (submitted, _) = act(
        &approved,
        liaison(TRANSPORT),
        submit(2, "已疏导"),
        hours(30),
    );
    let (released, _) = act(
        &submitted,
        operator("150602"),
        release(3, "无需城管"),
        hours(31),
    );
    let (resolved, _) = act(&released, liaison(lead), resolve(Some(1)), hours(32));
    assert_eq!(resolved.status, Status::Resolved);

    // Unsatisfied: the lead and the assistant that submitted do it again, in their roles; the
    // released one does not.
    let (reopened, _) = act(
        &resolved,
        reporter(),
        verify(Satisfaction::Unsatisfied),
        hours(33),
    );
    let again: Vec<(&str, TaskRole)> = reopened
        .current_tasks()
        .map(|t| (t.department.as_str(), t.role))
        .collect();
    assert_eq!(
        again,
        [(lead, TaskRole::Lead), (TRANSPORT, TaskRole::Assist)]
    );
    let part = reopened.current_tasks().nth(1).unwrap();
    assert_eq!(
        part.resolve_due,
        (hours(33) + TimeDelta::hours(24)).min(reopened.resolve_due)
    );
}

#[test]
fn a_returned_assistant_holds_the_lead_until_reassigned_or_released() {
    let whistled = whistled_with_assistants();
    let (returned, _) = act(
        &whistled,
        liaison(URBAN),
        Command::Return {
            task: 3,
            reason: ReturnReason::NotOurDuty,
            note: "非本部门职责".into(),
        },
        hours(2) + TimeDelta::minutes(10),
    );
    let (lead_in, _) = act(&returned, liaison(HEATING), accept(1), hours(3));
    let (housing_in, _) = act(&lead_in, liaison(HOUSING), accept(2), hours(3));
    let (part, _) = act(&housing_in, liaison(HOUSING), submit(2, "意见"), hours(4));
    let why = refused(&part, liaison(HEATING), resolve(Some(1)));
    assert!(
        matches!(&why, Rejection::InvalidTransition(m) if m.contains("task 3")),
        "{why}"
    );
    // Reassigned, the assistant's successor assists too, with a fresh part deadline.
    let (reassigned, _) = act(
        &part,
        handler(Level::Street),
        reassign(3, TRANSPORT),
        hours(5),
    );
    assert_eq!(reassigned.tasks[3].role, TaskRole::Assist);
    assert_eq!(reassigned.tasks[3].resolve_due, reassigned.resolve_due);
    // Released instead, it no longer holds the lead.
    let (released, _) = act(
        &part,
        handler(Level::Street),
        release(3, "无需参与"),
        hours(5),
    );
    assert_eq!(released.tasks[2].status, TaskStatus::Released);
    assert_eq!(
        released.tasks[2].return_reason,
        Some(ReturnReason::NotOurDuty)
    );
    let (resolved, _) = act(&released, liaison(HEATING), resolve(Some(1)), hours(6));
    assert_eq!(resolved.status, Status::Resolved);
}

fn propose(review_at: DateTime<Utc>) -> Command {
    Command::ProposeLedger {
        reason: LedgerReason::Planning,
        note: "需纳入老旧小区改造规划".into(),
        responsible: HOUSING.into(),
        review_at,
    }
}

fn decide_ledger(approve: bool) -> Command {
    Command::DecideLedger {
        approve,
        note: if approve {
            String::new()
        } else {
            "可在时限内解决".into()
        },
    }
}

fn review(extend_to: Option<DateTime<Utc>>) -> Command {
    Command::ReviewLedger {
        extend_to,
        note: String::new(),
    }
}

/// heating.no_heat whistled at 2h, both departments in by 3h, proposed by the street at 4h
/// and entered by the district at 5h, to be reviewed at 30 days.
fn ledgered_no_heat() -> Incident {
    let whistled = whistled_no_heat();
    let (one, _) = act(&whistled, liaison(HEATING), accept(1), hours(3));
    let (both, _) = act(&one, liaison(HOUSING), accept(2), hours(3));
    let (proposed, effects) = act(
        &both,
        handler(Level::Street),
        propose(hours(30 * 24)),
        hours(4),
    );
    assert_eq!(kinds(&effects), ["incident.ledger_proposed"]);
    // Proposed is not yet entered: the deadline and the window still run.
    assert!(timer_effects_of(&effects).is_empty());
    assert_eq!(proposed.ledger.as_ref().unwrap().approver, Level::District);
    let (entered, _) = act(
        &proposed,
        handler(Level::District),
        decide_ledger(true),
        hours(5),
    );
    entered
}

#[test]
fn a_ledger_case_leaves_every_deadline_and_comes_back_at_its_review() {
    let entered = ledgered_no_heat();
    assert!(entered.is_ledgered());
    assert_eq!(entered.level_due, None);
    // Only the review is pending: no window, no SLA deadline, no report-in.
    assert_eq!(
        entered.timers(),
        BTreeMap::from([(Timer::LedgerReview, hours(30 * 24))])
    );
    // A stale firing of the SLA deadline does nothing: a ledger case is never overdue.
    let (same, effects) = fire(&entered, Timer::ResolveDeadline, hours(25));
    assert_eq!(same, entered);
    assert!(effects.is_empty());
    for (actor, command) in [
        (handler(Level::Street), escalate()),
        (
            operator("150602"),
            Command::Supervise {
                task: None,
                note: String::new(),
            },
        ),
        (handler(Level::Street), reassign(1, "150602-transport")),
    ] {
        assert!(matches!(
            refused(&entered, actor, command),
            Rejection::InvalidTransition(_)
        ));
    }
    let (due, effects) = fire(&entered, Timer::LedgerReview, hours(30 * 24));
    assert_eq!(kinds(&effects), ["incident.ledger_review_due"]);
    assert!(due.ledger.as_ref().unwrap().review_due);
    assert!(due.timers().is_empty());
    // The street does not review; the district does, extending once, then returning it.
    assert!(matches!(
        refused(&due, handler(Level::Street), review(None)),
        Rejection::Forbidden(_)
    ));
    let later = hours(60 * 24);
    let (extended, effects) = act(
        &due,
        operator("150602"),
        review(Some(later)),
        hours(30 * 24 + 1),
    );
    assert_eq!(kinds(&effects), ["incident.ledger_extended"]);
    assert_eq!(
        timer_effects_of(&effects),
        [schedule(Timer::LedgerReview, later)]
    );
    let back_at = hours(40 * 24);
    let (back, effects) = act(&extended, handler(Level::District), review(None), back_at);
    assert_eq!(kinds(&effects), ["incident.ledger_returned"]);
    assert_eq!(back.ledger, None);
    assert!(!back.overdue);
    // A fresh deadline of the policy's 15 working days, shared by the round's tasks, and the
    // level's window again.
    let fresh = ctx().calendar.add_working_days(back_at, 15).at;
    assert_eq!(back.resolve_due, fresh);
    assert!(back.tasks.iter().all(|t| t.resolve_due == fresh));
    assert_eq!(back.level_due, Some(back_at + TimeDelta::hours(8)));
    assert_eq!(back.timers().get(&Timer::ResolveDeadline), Some(&fresh));
}

#[test]
fn an_overdue_case_leaves_the_overdue_list_when_entered_and_resolves_from_the_ledger() {
    let (incident, _) = open_at("heating.no_heat", t0());
    let (overdue, _) = fire(&incident, Timer::ResolveDeadline, hours(24));
    assert!(overdue.overdue);
    // The incident went up to the street; the street proposes the unit the district approves.
    let (proposed, _) = act(
        &overdue,
        handler(Level::Street),
        propose(hours(100)),
        hours(25),
    );
    let (entered, effects) = act(
        &proposed,
        handler(Level::District),
        decide_ledger(true),
        hours(26),
    );
    assert_eq!(kinds(&effects), ["incident.ledger_approved"]);
    assert!(!entered.overdue);
    let (resolved, effects) = act(&entered, handler(Level::Street), resolve(None), hours(27));
    assert_eq!(
        kinds(&effects),
        ["incident.resolved", "incident.ledger_withdrawn"]
    );
    assert_eq!(resolved.status, Status::Resolved);
    assert_eq!(resolved.ledger, None);
    assert_eq!(
        timer_effects_of(&effects),
        [
            cancel(Timer::LedgerReview),
            schedule(Timer::FollowUpDeadline, hours(27 + 72))
        ]
    );
}

#[test]
fn a_ledger_proposal_is_checked_and_may_be_denied() {
    let whistled = whistled_no_heat();
    let (one, _) = act(&whistled, liaison(HEATING), accept(1), hours(3));
    let now = one.reported_at + TimeDelta::minutes(1);
    let review_at = now + TimeDelta::days(30);
    // Who proposes: the street or a department that reported in; not one still to report in,
    // not the district's operator, not the reporter.
    for actor in [liaison(HOUSING), operator("150602"), reporter()] {
        assert!(matches!(
            refused(&one, actor, propose(review_at)),
            Rejection::Forbidden(_)
        ));
    }
    let with = |responsible: &str, review_at: DateTime<Utc>, note: &str| Command::ProposeLedger {
        reason: LedgerReason::Funding,
        note: note.into(),
        responsible: responsible.into(),
        review_at,
    };
    let street = handler(Level::Street);
    assert!(matches!(
        refused(
            &one,
            street.clone(),
            with("150602-nothing", review_at, "资金")
        ),
        Rejection::NotFound(_)
    ));
    for bad in [
        with("150603-heating", review_at, "资金"),
        with(fixture().other_grid.as_str(), review_at, "资金"),
        with(HEATING, review_at, " "),
        with(HEATING, now, "资金"),
        with(HEATING, now + TimeDelta::days(91), "资金"),
    ] {
        assert!(
            matches!(
                refused(&one, street.clone(), bad.clone()),
                Rejection::InvalidArgument(_)
            ),
            "{bad:?}"
        );
    }
    // The department that reported in proposes, with the street office as the responsible unit.
    let street_office = fixture().grid.at_level(Level::Street).unwrap();
    let (proposed, _) = act(
        &one,
        liaison(HEATING),
        with(street_office.as_str(), review_at, "资金未到位"),
        hours(3),
    );
    assert!(matches!(
        refused(&proposed, street.clone(), propose(review_at)),
        Rejection::InvalidTransition(_)
    ));
    // The district decides, not the street; a denial needs a note and leaves everything running.
    assert!(matches!(
        refused(&proposed, street, decide_ledger(true)),
        Rejection::Forbidden(_)
    ));
    assert!(matches!(
        refused(
            &proposed,
            handler(Level::District),
            Command::DecideLedger {
                approve: false,
                note: String::new()
            }
        ),
        Rejection::InvalidArgument(_)
    ));
    let (denied, effects) = act(
        &proposed,
        operator("150602"),
        decide_ledger(false),
        hours(4),
    );
    assert_eq!(kinds(&effects), ["incident.ledger_denied"]);
    assert_eq!(denied.ledger, None);
    assert_eq!(denied.timers(), one.timers());
    assert!(matches!(
        refused(&denied, handler(Level::District), review(None)),
        Rejection::InvalidTransition(_)
    ));
}

#[test]
fn district_work_is_entered_by_the_city() {
    // gas.leak opens at the district.
    let (incident, _) = open_at("gas.leak", t0());
    assert_eq!(incident.level, Level::District);
    let (proposed, _) = act(
        &incident,
        handler(Level::District),
        propose(hours(100)),
        mins(10),
    );
    assert_eq!(proposed.ledger.as_ref().unwrap().approver, Level::City);
    assert!(matches!(
        refused(&proposed, operator("150602"), decide_ledger(true)),
        Rejection::Forbidden(_)
    ));
    let (entered, _) = act(&proposed, operator("150600"), decide_ledger(true), mins(20));
    assert!(entered.is_ledgered());
}

#[test]
fn names_and_timer_keys_round_trip() {
    for timer in [
        Timer::LevelWindow,
        Timer::AcceptDeadline { task: 1 },
        Timer::AcceptDeadline { task: 12 },
        Timer::ResolveDeadline,
        Timer::FollowUpDeadline,
        Timer::ExtensionAnswer,
        Timer::LedgerReview,
    ] {
        assert_eq!(Timer::from_key(&timer.key()), Some(timer));
    }
    for bad in [
        "",
        "accept_deadline:",
        "accept_deadline:01",
        "accept_deadline:+1",
        "level",
    ] {
        assert_eq!(Timer::from_key(bad), None, "{bad:?}");
    }
    for status in Status::ALL {
        assert_eq!(status.as_str().parse(), Ok(*status));
    }
    assert_eq!(Status::ClosedUnverified.as_str(), "closed_unverified");
    assert_eq!(TaskStatus::ALL.len(), 7);
    assert_eq!(TaskStatus::Released.as_str(), "released");
    assert_eq!("assist".parse(), Ok(TaskRole::Assist));
    assert_eq!(TaskRole::default(), TaskRole::Lead);
    assert_eq!(
        ReturnReason::InsufficientInformation.as_str(),
        "insufficient_information"
    );
    assert_eq!(
        "basically_satisfied".parse(),
        Ok(Satisfaction::BasicallySatisfied)
    );
    assert!("reported".parse::<Status>().is_err());
    assert_eq!(
        Rejection::InvalidTransition(String::new()).code(),
        "invalid_transition"
    );
    let f = fixture();
    let person = f.org.person(&code("op-150602")).unwrap();
    assert_eq!(Actor::from(person), operator("150602"));
}

// Property tests: random walks of commands by random actors and timer firings.

const CATEGORIES: [&str; 6] = [
    "heating.no_heat",
    "dispute.neighbour",
    "environment.dust",
    "gas.leak",
    "fire.blocked_access",
    "petition.letters",
];

/// Departments commands may name: summoned ones, others, the city's, another district's and
/// one that does not exist.
fn departments() -> &'static [DepartmentCode] {
    static DEPARTMENTS: OnceLock<Vec<DepartmentCode>> = OnceLock::new();
    DEPARTMENTS.get_or_init(|| {
        [
            HEATING,
            HOUSING,
            "150602-ecology_environment",
            "150602-transport",
            "150602-urban_management",
            "150602-justice",
            "150602-public_security",
            "150602-fire_rescue",
            "150600-heating",
            "150603-heating",
            "150602-nothing",
        ]
        .map(code)
        .to_vec()
    })
}

fn actors() -> &'static [Actor] {
    static ACTORS: OnceLock<Vec<Actor>> = OnceLock::new();
    ACTORS.get_or_init(|| {
        let f = fixture();
        let mut actors = vec![
            reporter(),
            Actor::GridWorker {
                id: code(&format!("gw-{}", f.other_grid)),
                grid: f.other_grid.clone(),
            },
            operator("150602"),
            operator("150600"),
            operator("150603"),
            handler_of(f.other_grid.at_level(Level::Street).unwrap()),
            Actor::System,
        ];
        actors.extend(
            [
                Level::Community,
                Level::Street,
                Level::District,
                Level::City,
            ]
            .map(handler),
        );
        actors.extend(departments()[..10].iter().map(|d| liaison(d.as_str())));
        actors
    })
}

#[derive(Debug, Clone)]
enum Who {
    /// One of [`actors`], entitled or not.
    Anyone(usize),
    /// Whoever the rules entitle to the command in the current state.
    Entitled,
}

#[derive(Debug, Clone)]
enum Op {
    Wait(TimeDelta),
    Act(Who, Command),
    /// A firing whether or not anything is due.
    Fire(Timer),
    /// The department of the first task in progress takes its next step: report in, or resolve.
    Cooperate,
    /// Dispatch loads the whole shipped calendar and recounts provisional deadlines.
    LoadCalendar,
    /// An extension request for the current deadline plus this (zero or less is refused).
    AskExtension(Who, Option<u32>, TimeDelta),
    /// The arbitration of the first pending dispute, upheld or not (random tasks seldom have one).
    Arbitrate(Who, bool),
    /// A ledger proposal with its review this far from now (zero or less, or past the policy's
    /// 90 days, is refused).
    ProposeLedger(Who, TimeDelta),
    /// A ledger review: extended this far from now, or returned to handling.
    ReviewLedger(Who, Option<TimeDelta>),
}

/// The Ordos policy with the reopen deadline in working days too, so every deadline of its
/// 7- and 15-day classes is a working-day deadline.
fn walk_policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| {
        let text = include_str!("../../../../policy/ordos.toml");
        assert!(text.contains("reopen_resolve = \"3d\""));
        let text = text.replacen("reopen_resolve = \"3d\"", "reopen_resolve = \"3wd\"", 1);
        Policy::parse(&text, |_| None).expect("the variant is valid")
    })
}

/// The shipped calendar cut to 2025, as a dispatch built before 2026 was loaded would hold.
fn calendar_2025() -> &'static Calendar {
    static CALENDAR: OnceLock<Calendar> = OnceLock::new();
    CALENDAR.get_or_init(|| Calendar::from_files([crate::calendar::BUILTIN[0]]).unwrap())
}

fn full_calendar() -> &'static Calendar {
    &fixture().calendar
}

/// A working-day deadline never lands on a holiday: an official one is on a working day of the
/// shipped calendar, a provisional one (counted past the loaded years) on a weekday.
fn check_working_day_due(incident: &Incident) -> Result<(), TestCaseError> {
    let local = incident
        .resolve_due
        .with_timezone(&crate::calendar::local_offset());
    let (kind, guessed) = full_calendar().day(local.date_naive());
    if incident.provisional.is_some() {
        let weekday = !matches!(local.weekday(), chrono::Weekday::Sat | chrono::Weekday::Sun);
        prop_assert!(weekday, "provisional deadline {local} on a weekend");
    } else {
        prop_assert!(
            kind.is_working() && !guessed,
            "working-day deadline {local} lands on {kind:?} (guessed: {guessed})"
        );
    }
    Ok(())
}

fn note() -> impl Strategy<Value = String> {
    prop_oneof![3 => Just("说明".to_owned()), 1 => Just(String::new())]
}

/// Mostly a task of a first whistle; sometimes none, or one of a reopen or a reassignment.
fn task_id() -> impl Strategy<Value = u32> {
    prop_oneof![4 => 1u32..4, 1 => 0u32..9]
}

fn department() -> impl Strategy<Value = DepartmentCode> {
    prop::sample::select(departments())
}

fn command() -> impl Strategy<Value = Command> {
    let named = prop_oneof![
        3 => Just(Vec::new()),
        1 => prop::collection::vec(department(), 1..3),
    ];
    prop_oneof![
        3 => (task_id(), note()).prop_map(|(task, note)| Command::Accept { task, note }),
        2 => (task_id(), prop::sample::select(ReturnReason::ALL), note())
            .prop_map(|(task, reason, note)| Command::Return { task, reason, note }),
        3 => (prop::option::of(task_id()), note())
            .prop_map(|(task, note)| Command::Resolve { task, note }),
        2 => (note(), named).prop_map(|(note, departments)| Command::Escalate {
            note,
            departments,
            assisting: Vec::new(),
        }),
        // A lead and assistants: mostly within the policy's three of the district's departments,
        // sometimes too many, clashing or out of the area.
        3 => (
            note(),
            prop::sample::select(&departments()[..2]),
            prop_oneof![
                3 => prop::sample::subsequence(&departments()[2..8], 1..3),
                1 => prop::collection::vec(department(), 1..5),
            ]
        )
            .prop_map(|(note, lead, assisting)| Command::Escalate {
                note,
                departments: vec![lead.clone()],
                assisting,
            }),
        3 => (task_id(), note()).prop_map(|(task, note)| Command::SubmitAssist { task, note }),
        2 => (task_id(), note()).prop_map(|(task, note)| Command::ReleaseAssist { task, note }),
        2 => (prop::sample::select(Satisfaction::ALL), note())
            .prop_map(|(satisfaction, note)| Command::Verify { satisfaction, note }),
        2 => (prop::option::of(task_id()), note())
            .prop_map(|(task, note)| Command::Supervise { task, note }),
        2 => (task_id(), department(), note())
            .prop_map(|(task, to, note)| Command::Reassign { task, to, note }),
        1 => note().prop_map(|text| Command::Comment { text }),
        3 => (any::<bool>(), note())
            .prop_map(|(approve, note)| Command::DecideExtension { approve, note }),
        2 => (task_id(), department(), note())
            .prop_map(|(task, to, reason)| Command::Dispute { task, to, reason }),
        3 => (task_id(), any::<bool>(), note())
            .prop_map(|(task, uphold, note)| Command::DecideDispute { task, uphold, note }),
        3 => (any::<bool>(), note())
            .prop_map(|(approve, note)| Command::DecideLedger { approve, note }),
    ]
}

fn who() -> impl Strategy<Value = Who> {
    prop_oneof![
        1 => (0..actors().len()).prop_map(Who::Anyone),
        3 => Just(Who::Entitled),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let timer = prop_oneof![
        Just(Timer::LevelWindow),
        task_id().prop_map(|task| Timer::AcceptDeadline { task }),
        Just(Timer::ResolveDeadline),
        Just(Timer::FollowUpDeadline),
        Just(Timer::ExtensionAnswer),
        Just(Timer::LedgerReview),
    ];
    // Mostly within the policy's longest extension (7 days), sometimes not later or too far.
    let past = prop_oneof![
        6 => (1i64..7 * 24).prop_map(TimeDelta::hours),
        1 => (-2i64..1).prop_map(TimeDelta::hours),
        1 => (7 * 24 + 1..9 * 24i64).prop_map(TimeDelta::hours),
    ];
    let extension = (who(), prop::option::of(task_id()), past)
        .prop_map(|(who, task, past)| Op::AskExtension(who, task, past));
    // Mostly within the policy's 90 days, sometimes now or too far.
    let review = || {
        prop_oneof![
            6 => (1i64..20 * 24).prop_map(TimeDelta::hours),
            1 => (-2i64..1).prop_map(TimeDelta::hours),
            1 => (90 * 24 + 1..95 * 24i64).prop_map(TimeDelta::hours),
        ]
    };
    let ledger = prop_oneof![
        2 => (who(), review()).prop_map(|(who, ahead)| Op::ProposeLedger(who, ahead)),
        2 => (who(), prop::option::of(review()))
            .prop_map(|(who, ahead)| Op::ReviewLedger(who, ahead)),
    ];
    // Report-in takes 30 minutes and the shortest SLA 2 hours: mostly short waits.
    prop_oneof![
        3 => (0i64..20).prop_map(|m| Op::Wait(TimeDelta::minutes(m))),
        1 => (0i64..6).prop_map(|h| Op::Wait(TimeDelta::hours(h))),
        1 => (0i64..4).prop_map(|d| Op::Wait(TimeDelta::days(d))),
        12 => (who(), command()).prop_map(|(who, command)| Op::Act(who, command)),
        1 => timer.prop_map(Op::Fire),
        1 => Just(Op::Cooperate),
        1 => Just(Op::LoadCalendar),
        3 => extension,
        4 => (who(), any::<bool>()).prop_map(|(who, uphold)| Op::Arbitrate(who, uphold)),
        2 => ledger,
    ]
}

/// An incident, the durable timers a store would hold for it, the clock, and the transitions
/// seen: `{event kind} from {prior status of its task or incident}` and `{status} -> {status}`.
struct World {
    calendar: &'static Calendar,
    /// Whether the category's deadlines all run in working days.
    working_days: bool,
    incident: Incident,
    store: BTreeMap<Timer, DateTime<Utc>>,
    now: DateTime<Utc>,
    seen: BTreeMap<String, usize>,
}

impl World {
    fn actor(&self, who: &Who, command: &Command) -> Actor {
        let index = match who {
            Who::Anyone(index) => return actors()[*index].clone(),
            Who::Entitled => command,
        };
        match index {
            Command::Accept { task, .. }
            | Command::Return { task, .. }
            | Command::Resolve {
                task: Some(task), ..
            } => match self.incident.task(*task) {
                Some(task) => liaison(task.department.as_str()),
                None => liaison(HEATING),
            },
            Command::RequestExtension {
                task: Some(task), ..
            }
            | Command::SubmitAssist { task, .. }
            | Command::Dispute { task, .. } => match self.incident.task(*task) {
                Some(task) => liaison(task.department.as_str()),
                None => liaison(HEATING),
            },
            Command::DecideExtension { .. } => match &self.incident.extension {
                Some(request) => handler(request.approver),
                None => operator("150602"),
            },
            Command::Resolve { task: None, .. }
            | Command::Escalate { .. }
            | Command::RequestExtension { task: None, .. } => match self.incident.level {
                Level::Grid => reporter(),
                level => handler(level),
            },
            Command::Reassign { .. }
            | Command::DecideDispute { .. }
            | Command::ReleaseAssist { .. } => handler(Level::Street),
            Command::ProposeLedger { .. } => match self.incident.level {
                Level::Grid => reporter(),
                Level::Community => handler(Level::Community),
                _ => handler(Level::Street),
            },
            Command::DecideLedger { .. } | Command::ReviewLedger { .. } => {
                match &self.incident.ledger {
                    Some(ledger) => handler(ledger.approver),
                    None => operator("150602"),
                }
            }
            Command::Supervise { .. } | Command::CompleteMilestone { .. } => operator("150602"),
            Command::Endorse { .. } => leader(&[fixture().grid.at_level(Level::Street).unwrap()]),
            Command::Verify { .. } | Command::Comment { .. } => reporter(),
        }
    }

    /// Applies `input` now, as dispatch would, and checks everything that must hold.
    fn step(&mut self, input: Input) -> Result<(), TestCaseError> {
        let before = self.incident.clone();
        let due = match &input {
            Input::Timer(timer) => {
                // The store hands the timer over and forgets it.
                self.store.remove(timer);
                before.timers().get(timer).is_some_and(|at| *at <= self.now)
            }
            Input::Command(..) | Input::Recalendar => false,
        };
        // What the query service offers for a task (`TaskVerb::for_task`) is what apply accepts:
        // a verb not offered is refused, an offered one is never refused as a wrong transition.
        // A lead waiting for its assistants' parts is the incident's condition, not the task's: the
        // verb is offered and the refusal says what is still owed.
        let owing = before.current_tasks().any(Task::owes_part);
        let offered = match &input {
            Input::Command(_, command) => task_verb(command).and_then(|(verb, id)| {
                let task = before.task(id)?;
                let current = task.round == before.reopen_count;
                let waits = verb == TaskVerb::Resolve && owing;
                Some((
                    verb,
                    !waits
                        && TaskVerb::for_task(
                            task.status,
                            current,
                            before.status.is_open(),
                            task.role,
                            before.is_ledgered(),
                        )
                        .any(|v| v == verb),
                ))
            }),
            Input::Timer(_) | Input::Recalendar => None,
        };
        let ctx = Context::new(walk_policy(), &fixture().org, self.calendar);
        let outcome = apply(&before, input.clone(), &ctx, self.now);
        if let Some((verb, offered)) = offered {
            match &outcome {
                Ok(_) => prop_assert!(offered, "{verb} applied although not offered"),
                Err(rejection) => prop_assert!(
                    !offered || !matches!(rejection, Rejection::InvalidTransition(_)),
                    "{verb} offered but refused: {rejection}"
                ),
            }
        }
        if let (Some((TaskVerb::Resolve, _)), Err(Rejection::InvalidTransition(why))) =
            (&offered, &outcome)
        {
            if why.contains("still owed") {
                *self
                    .seen
                    .entry("lead refused before its assistants".into())
                    .or_default() += 1;
            }
        }
        let (next, effects) = match outcome {
            Ok(applied) => applied,
            Err(rejection) => {
                prop_assert!(
                    matches!(input, Input::Command(..)),
                    "a timer was refused: {rejection}"
                );
                return Ok(());
            }
        };
        next.check_invariants().map_err(TestCaseError::fail)?;

        let changed = Incident {
            version: before.version,
            ..next.clone()
        } != before;
        prop_assert_eq!(next.version, before.version + u64::from(changed));
        if let Input::Timer(_) = input {
            prop_assert_eq!(changed, due, "a timer applies exactly when it is due");
        }
        if before.status.is_terminal() {
            prop_assert!(!changed, "a terminal incident changed");
        }
        prop_assert!(next.level >= before.level, "the level went down");
        let recount = input == Input::Recalendar;
        let events = kinds(&effects);
        let approved = events.contains(&"incident.extension_approved");
        let returned = events.contains(&"incident.ledger_returned");
        // A ledger case is never overdue, and no timer but its review fires for it.
        if before.is_ledgered() {
            prop_assert!(
                !events.contains(&"incident.overdue"),
                "a ledger case went overdue"
            );
            if let Input::Timer(timer) = &input {
                prop_assert!(
                    !changed || *timer == Timer::LedgerReview,
                    "{timer:?} fired for a ledger case"
                );
            }
        }
        if next.is_ledgered() {
            prop_assert!(!next.overdue, "a ledger case is overdue");
            prop_assert!(next
                .timers()
                .keys()
                .all(|timer| *timer == Timer::LedgerReview));
        }
        if !recount {
            prop_assert!(
                next.resolve_due >= before.resolve_due,
                "the deadline came earlier"
            );
        }
        if recount {
            prop_assert!(
                before.provisional.is_some() || !changed,
                "a recount changed an official deadline"
            );
            if let Some(p) = before
                .provisional
                .filter(|_| before.status.is_open() && !before.overdue && !before.is_ledgered())
            {
                let due = self.calendar.add_working_days(p.from, p.working_days);
                let floor = p.not_before.unwrap_or(due.at);
                prop_assert_eq!(next.resolve_due, due.at.max(floor));
                prop_assert_eq!(next.provisional.is_some(), due.provisional);
            }
        } else if next.reopen_count == before.reopen_count {
            if approved {
                prop_assert!(
                    next.resolve_due > before.resolve_due,
                    "an extension that extends nothing"
                );
                prop_assert_eq!(next.extensions, before.extensions + 1);
            } else if returned {
                // A case back from the ledger gets a fresh deadline, never an earlier one.
                prop_assert!(next.resolve_due >= before.resolve_due);
                prop_assert!(next.resolve_due >= self.now);
                prop_assert_eq!(next.extensions, before.extensions);
            } else {
                prop_assert_eq!(next.resolve_due, before.resolve_due);
                prop_assert_eq!(next.extensions, before.extensions);
            }
        } else {
            prop_assert_eq!(next.reopen_count, before.reopen_count + 1);
        }
        prop_assert!(next.extensions <= walk_policy().extensions().max_per_incident);
        // An upheld dispute is a reassignment: the citizen-facing deadline stays where it was.
        if events.contains(&"task.dispute_upheld") {
            prop_assert_eq!(next.resolve_due, before.resolve_due);
            prop_assert!(events.contains(&"task.reassigned"));
        }
        // At most one dispute per task: only a task never disputed is disputed, and a pending one
        // is always on record.
        if let Input::Command(_, Command::Dispute { task, .. }) = &input {
            if events.contains(&"task.disputed") {
                prop_assert!(before.task(*task).is_some_and(|t| !t.disputed));
            }
        }
        for task in &next.tasks {
            prop_assert!(task.dispute.is_none() || task.disputed);
        }
        // The lead never resolves before its assistants: when a lead's task resolves, no assistant
        // of the round owes its part, before or after.
        for effect in &effects {
            if let Effect::Event {
                kind: "task.resolved",
                task: Some(id),
                ..
            } = effect
            {
                let task = next.task(*id).expect("the resolved task exists");
                prop_assert!(!task.assists(), "an assistant resolved");
                prop_assert!(!owing, "the lead resolved while a part was owed");
                let parts_in = next.current_tasks().filter(|t| t.assists()).all(|t| {
                    matches!(
                        t.status,
                        TaskStatus::Resolved | TaskStatus::Released | TaskStatus::Cancelled
                    ) && t.resolved_at.is_none_or(|at| at <= self.now)
                });
                prop_assert!(parts_in, "an assistant left owing when the lead resolved");
            }
        }
        for (old, new) in before.tasks.iter().zip(&next.tasks) {
            prop_assert_eq!(old.role, new.role, "a task changed its role");
            if new.status == TaskStatus::Released {
                prop_assert!(new.assists(), "a lead was released");
            }
        }
        for (old, new) in before.tasks.iter().zip(&next.tasks) {
            prop_assert!(!old.disputed || new.disputed, "a dispute left the record");
        }
        if let Some(request) = &next.extension {
            prop_assert!(
                request.answer_due >= self.now,
                "a request outlived its answer window"
            );
        }
        if input == Input::Timer(Timer::ExtensionAnswer) && due {
            prop_assert!(next.extension.is_none());
            prop_assert!(
                events.contains(&"incident.extension_denied"),
                "an unanswered request was not denied"
            );
        }
        prop_assert!(next.tasks.len() >= before.tasks.len());
        for (old, new) in before.tasks.iter().zip(&next.tasks) {
            let fixed = |t: &Task| (t.department.clone(), t.round, t.dispatched_at);
            prop_assert_eq!(fixed(old), fixed(new), "a task's record moved");
            // Only a return from the ledger gives a department still to report in a fresh
            // report-in deadline, a later one.
            prop_assert!(
                new.accept_due == old.accept_due || returned && new.accept_due > old.accept_due,
                "task {}'s report-in deadline moved",
                new.id
            );
            // Only an approved extension (later) or a recount (with the incident's) moves a task's
            // resolve deadline.
            // An assistant's part keeps its deadline through an extension, and a recount brings it
            // no later than the incident's.
            let moved = if new.assists() {
                recount && new.resolve_due == old.resolve_due.min(next.resolve_due)
                    || returned
                        && new.resolve_due >= old.resolve_due
                        && new.resolve_due <= next.resolve_due
            } else {
                approved && new.resolve_due > old.resolve_due
                    || (recount || returned) && new.resolve_due == next.resolve_due
            };
            prop_assert!(
                new.resolve_due == old.resolve_due || moved,
                "task {}'s resolve deadline moved without an extension",
                new.id
            );
        }
        for new in &next.tasks[before.tasks.len()..] {
            let due = if new.assists() {
                (self.now + walk_policy().assisting().part).min(next.resolve_due)
            } else {
                next.resolve_due
            };
            prop_assert_eq!(new.resolve_due, due);
            prop_assert_eq!(new.dispatched_at, self.now);
        }
        prop_assert!(events.iter().all(|kind| EVENT_KINDS.contains(kind)));
        for effect in &effects {
            if let Effect::Event { kind, task, .. } = effect {
                let from = match task {
                    Some(id) => before.task(*id).map_or("nothing", |t| t.status.as_str()),
                    None => before.status.as_str(),
                };
                *self.seen.entry(format!("{kind} from {from}")).or_default() += 1;
            }
        }
        if next.status != before.status {
            *self
                .seen
                .entry(format!("{} -> {}", before.status, next.status))
                .or_default() += 1;
        }
        prop_assert!(!changed || !events.is_empty(), "a change without an event");

        for effect in effects {
            match effect {
                Effect::Schedule { timer, at } => {
                    self.store.insert(timer, at);
                }
                Effect::Cancel { timer } => {
                    self.store.remove(&timer);
                }
                Effect::Event { .. } => {}
            }
        }
        // An approved extension sets the date asked for, not a count of working days.
        if self.working_days && next.extensions == 0 {
            check_working_day_due(&next)?;
        }
        self.incident = next;
        prop_assert_eq!(&self.store, &self.incident.timers(), "the store drifted");
        Ok(())
    }

    /// Moves the clock to `until`, firing each timer of the store at its time.
    fn run_until(&mut self, until: DateTime<Utc>) -> Result<(), TestCaseError> {
        for _ in 0..1_000 {
            let next = self
                .store
                .iter()
                .filter(|(_, at)| **at <= until)
                .min_by_key(|(_, at)| **at)
                .map(|(timer, at)| (*timer, *at));
            let Some((timer, at)) = next else {
                self.now = self.now.max(until);
                return Ok(());
            };
            self.now = self.now.max(at);
            self.step(Input::Timer(timer))?;
        }
        Err(TestCaseError::fail("timers keep firing"))
    }
}

/// Runs `ops` on a new incident of `category`, then lets every timer fire until long after.
/// The task verb of a command aimed at one task, and the task.
fn task_verb(command: &Command) -> Option<(TaskVerb, u32)> {
    match command {
        Command::Accept { task, .. } => Some((TaskVerb::Accept, *task)),
        Command::Return { task, .. } => Some((TaskVerb::Return, *task)),
        Command::Resolve {
            task: Some(task), ..
        } => Some((TaskVerb::Resolve, *task)),
        Command::Supervise {
            task: Some(task), ..
        } => Some((TaskVerb::Supervise, *task)),
        Command::Reassign { task, .. } => Some((TaskVerb::Reassign, *task)),
        Command::SubmitAssist { task, .. } => Some((TaskVerb::SubmitAssist, *task)),
        Command::ReleaseAssist { task, .. } => Some((TaskVerb::ReleaseAssist, *task)),
        _ => None,
    }
}

fn walk(
    category: &str,
    start: DateTime<Utc>,
    calendar: &'static Calendar,
    ops: Vec<Op>,
) -> Result<World, TestCaseError> {
    let f = fixture();
    let policy = walk_policy();
    let category = policy.category(category).unwrap();
    let (incident, effects) = open(f.grid.clone(), category, policy, calendar, start);
    incident.check_invariants().map_err(TestCaseError::fail)?;
    let working_days = matches!(
        (
            policy.resolve_deadline(category),
            policy.reopen_deadline(category)
        ),
        (policy::Term::WorkingDays(_), policy::Term::WorkingDays(_))
    );
    if working_days {
        check_working_day_due(&incident)?;
    }
    let mut world = World {
        calendar,
        working_days,
        store: incident.timers(),
        incident,
        now: start,
        seen: BTreeMap::new(),
    };
    prop_assert_eq!(effects.len(), world.store.len());
    for op in ops {
        match op {
            Op::Wait(delta) => world.run_until(world.now + delta)?,
            Op::Act(who, command) => {
                let actor = world.actor(&who, &command);
                world.step(Input::Command(actor, command))?;
            }
            Op::Fire(timer) => world.step(Input::Timer(timer))?,
            Op::LoadCalendar => {
                world.calendar = full_calendar();
                world.step(Input::Recalendar)?;
            }
            Op::AskExtension(who, task, past) => {
                let command = Command::RequestExtension {
                    task,
                    until: world.incident.resolve_due + past,
                    reason: "需要更多时间".into(),
                };
                let actor = world.actor(&who, &command);
                world.step(Input::Command(actor, command))?;
            }
            Op::Arbitrate(who, uphold) => {
                let disputed = world.incident.tasks.iter().find(|t| t.dispute.is_some());
                if let Some(task) = disputed {
                    let note = if uphold {
                        ""
                    } else {
                        "职责明确，维持派单"
                    };
                    let command = Command::DecideDispute {
                        task: task.id,
                        uphold,
                        note: note.into(),
                    };
                    let actor = world.actor(&who, &command);
                    world.step(Input::Command(actor, command))?;
                }
            }
            Op::ProposeLedger(who, ahead) => {
                let command = Command::ProposeLedger {
                    reason: LedgerReason::Legal,
                    note: "产权纠纷待法院判决".into(),
                    responsible: HOUSING.into(),
                    review_at: world.now + ahead,
                };
                let actor = world.actor(&who, &command);
                world.step(Input::Command(actor, command))?;
            }
            Op::ReviewLedger(who, ahead) => {
                let command = Command::ReviewLedger {
                    extend_to: ahead.map(|ahead| world.now + ahead),
                    note: String::new(),
                };
                let actor = world.actor(&who, &command);
                world.step(Input::Command(actor, command))?;
            }
            Op::Cooperate => {
                // Assistants first: the lead cannot resolve before their parts.
                let mut tasks: Vec<&Task> = world.incident.current_tasks().collect();
                tasks.sort_by_key(|t| !t.assists());
                let next_step = tasks.into_iter().find_map(|task| {
                    let command = match task.status {
                        TaskStatus::Dispatched | TaskStatus::Supervised => accept(task.id),
                        TaskStatus::Accepted if task.assists() => Command::SubmitAssist {
                            task: task.id,
                            note: "协办意见".into(),
                        },
                        TaskStatus::Accepted => resolve(Some(task.id)),
                        _ => return None,
                    };
                    Some((liaison(task.department.as_str()), command))
                });
                if let Some((actor, command)) = next_step {
                    world.step(Input::Command(actor, command))?;
                }
            }
        }
    }
    let late = world.now + TimeDelta::days(60);
    world.run_until(late)?;
    let incident = &world.incident;
    prop_assert!(
        incident.timers().values().all(|at| *at > late),
        "a due timer is left"
    );
    // A ledger case waits for its reviewers, who the walk no longer plays.
    for task in incident.tasks.iter().filter(|_| !incident.is_ledgered()) {
        prop_assert!(
            task.status != TaskStatus::Dispatched || task.accept_due > late,
            "task {} is still dispatched past its report-in deadline",
            task.id
        );
    }
    Ok(world)
}

type Walk = (&'static str, DateTime<Utc>, &'static Calendar, Vec<Op>);

/// A walk starts at a random minute from 2025 to early 2027 (Spring Festivals, National Days,
/// make-up Saturdays and the provisional weeks past the calendar), with the whole shipped
/// calendar or, until a `LoadCalendar`, 2025 alone.
fn walks() -> impl Strategy<Value = Walk> {
    let first: DateTime<Utc> = "2024-12-31T16:00:00Z".parse().unwrap();
    let start = (0i64..(800 * 24 * 60)).prop_map(move |m| first + TimeDelta::minutes(m));
    let calendar = prop_oneof![Just(full_calendar()), Just(calendar_2025())];
    (
        prop::sample::select(&CATEGORIES[..]),
        start,
        calendar,
        prop::collection::vec(op(), 1..120),
    )
}

proptest! {
    #[test]
    fn random_walks_keep_every_invariant((category, start, calendar, ops) in walks()) {
        walk(category, start, calendar, ops)?;
    }
}

/// Guards the generator: the walks must reach every transition, or the property above
/// proves little.
#[test]
fn random_walks_reach_every_transition() {
    let mut runner = TestRunner::deterministic();
    let mut seen = BTreeMap::<String, usize>::new();
    for _ in 0..1_000 {
        let (category, start, calendar, ops) = walks().new_tree(&mut runner).unwrap().current();
        for (transition, count) in walk(category, start, calendar, ops).unwrap().seen {
            *seen.entry(transition).or_default() += count;
        }
    }
    let missing: Vec<&str> = REACHED
        .into_iter()
        .filter(|t| !seen.contains_key(*t))
        .collect();
    assert!(
        missing.is_empty(),
        "never reached: {missing:?}; reached: {seen:#?}"
    );
}

/// Every transition of the machine, as [`World`] names them.
const REACHED: [&str; 78] = [
    "handling -> whistled",
    "handling -> resolved",
    "whistled -> accepted",
    "whistled -> resolved",
    "accepted -> whistled",
    "accepted -> resolved",
    "resolved -> closed",
    "resolved -> closed_unverified",
    "resolved -> handling",
    "resolved -> whistled",
    "incident.escalated from handling",
    "incident.escalated from whistled",
    "incident.escalated from accepted",
    "incident.whistled from handling",
    "incident.overdue from handling",
    "incident.overdue from whistled",
    "incident.overdue from accepted",
    "incident.resolved from handling",
    "incident.resolved from whistled",
    "incident.resolved from accepted",
    "incident.verified from resolved",
    "incident.reopened from resolved",
    "incident.closed from resolved",
    "incident.closed_unverified from resolved",
    "incident.supervised from handling",
    "incident.supervised from whistled",
    "incident.supervised from accepted",
    "incident.commented from handling",
    "incident.commented from whistled",
    "incident.commented from resolved",
    "incident.commented from closed",
    "incident.commented from closed_unverified",
    "task.dispatched from nothing",
    "task.accepted from dispatched",
    "task.accepted from supervised",
    "task.returned from dispatched",
    "task.returned from supervised",
    "task.reassigned from dispatched",
    "task.reassigned from supervised",
    "task.reassigned from returned",
    "task.resolved from accepted",
    "task.supervised from dispatched",
    "task.supervised from supervised",
    "task.supervised from accepted",
    "task.reminded from dispatched",
    "incident.commented from accepted",
    "incident.rescheduled from handling",
    "incident.extension_requested from handling",
    "incident.extension_requested from accepted",
    "incident.extension_approved from handling",
    "incident.extension_approved from accepted",
    "incident.extension_denied from handling",
    "incident.extension_denied from accepted",
    "incident.extension_withdrawn from accepted",
    "task.disputed from dispatched",
    "task.disputed from supervised",
    "task.dispute_upheld from dispatched",
    "task.dispute_upheld from supervised",
    "task.dispute_rejected from dispatched",
    "task.dispute_rejected from supervised",
    "task.dispute_withdrawn from dispatched",
    "task.assist_submitted from accepted",
    "task.assist_released from dispatched",
    "task.assist_released from supervised",
    "task.assist_released from accepted",
    "task.assist_released from returned",
    "lead refused before its assistants",
    "incident.ledger_proposed from handling",
    "incident.ledger_proposed from whistled",
    "incident.ledger_proposed from accepted",
    "incident.ledger_approved from handling",
    "incident.ledger_approved from accepted",
    "incident.ledger_denied from handling",
    "incident.ledger_review_due from handling",
    "incident.ledger_extended from handling",
    "incident.ledger_returned from handling",
    "incident.ledger_returned from accepted",
    "incident.ledger_withdrawn from handling",
];

fn resident(report: &str) -> Actor {
    Actor::Resident {
        report: report.parse().unwrap(),
    }
}

#[test]
fn a_residents_answer_is_the_follow_up_while_one_is_due_and_only_kept_on_the_timeline_after() {
    let (incident, _) = open_at("heating.no_heat", t0());
    // Before the resolution there is nothing to answer on.
    assert!(matches!(
        refused(
            &incident,
            resident("r-1"),
            verify(Satisfaction::Unsatisfied)
        ),
        Rejection::InvalidTransition(_)
    ));
    let (resolved, _) = act(
        &incident,
        handler(Level::Community),
        resolve(None),
        hours(2),
    );

    // The first answer of the round is the follow-up, as a grid worker's would be.
    let (closed, effects) = act(
        &resolved,
        resident("r-1"),
        verify(Satisfaction::BasicallySatisfied),
        hours(3),
    );
    assert_eq!(kinds(&effects), ["incident.verified", "incident.closed"]);
    assert_eq!(
        timer_effects_of(&effects),
        [cancel(Timer::FollowUpDeadline)]
    );
    assert_eq!(
        (closed.status, closed.satisfaction),
        (Status::Closed, Some(Satisfaction::BasicallySatisfied))
    );
    let Effect::Event { note, .. } = &effects[0] else {
        panic!("{effects:?}")
    };
    assert_eq!(note, "居民回访：已解决，基本满意");
    assert!(closed.resident_answers.last().unwrap().counted);

    // The same report answers once a round; the grid worker's call comes too late to count.
    assert!(matches!(
        refused(&closed, resident("r-1"), verify(Satisfaction::Satisfied)),
        Rejection::InvalidTransition(_)
    ));
    assert!(matches!(
        refused(&closed, reporter(), verify(Satisfaction::Satisfied)),
        Rejection::InvalidTransition(_)
    ));
    // Another report's resident is kept on the timeline; the verdict stands.
    let (kept, effects) = act(
        &closed,
        resident("r-2"),
        verify(Satisfaction::Unsatisfied),
        hours(4),
    );
    assert_eq!(kinds(&effects), ["incident.commented"]);
    assert_eq!(
        (kept.status, kept.satisfaction),
        (Status::Closed, Some(Satisfaction::BasicallySatisfied))
    );
    assert!(!kept.resident_answers.last().unwrap().counted);
}

#[test]
fn a_grid_workers_follow_up_first_leaves_the_residents_answer_on_the_timeline_and_unsatisfied_reopens(
) {
    let (incident, _) = open_at("heating.no_heat", t0());
    let (resolved, _) = act(
        &incident,
        handler(Level::Community),
        resolve(None),
        hours(1),
    );
    let (closed, _) = act(
        &resolved,
        reporter(),
        verify(Satisfaction::Satisfied),
        hours(2),
    );
    let (kept, effects) = act(
        &closed,
        resident("r-1"),
        verify(Satisfaction::Unsatisfied),
        hours(3),
    );
    assert_eq!(kinds(&effects), ["incident.commented"]);
    assert_eq!(kept.satisfaction, Some(Satisfaction::Satisfied));

    // A resident's 未解决 while the follow-up is due reopens, like a worker's.
    let (reopened, effects) = act(
        &resolved,
        resident("r-1"),
        verify(Satisfaction::Unsatisfied),
        hours(2),
    );
    assert_eq!(
        kinds(&effects)[..2],
        ["incident.verified", "incident.reopened"]
    );
    assert_eq!(reopened.reopen_count, 1);
    // … and may answer again in the new round once it is resolved again.
    let (again, _) = act(
        &reopened,
        handler(Level::Community),
        resolve(None),
        hours(5),
    );
    let (closed, _) = act(
        &again,
        resident("r-1"),
        verify(Satisfaction::Satisfied),
        hours(6),
    );
    assert_eq!(closed.status, Status::Closed);
    // A resident commands nothing else.
    assert!(matches!(
        refused(
            &incident,
            resident("r-1"),
            Command::Comment {
                text: "hello".into()
            }
        ),
        Rejection::Forbidden(_)
    ));
}

mod proactive {
    //! 主动治理: adopting a hotspot topic as a proactive case, and its milestones.

    use super::*;

    const LEAD: &str = "150602-urban_management";
    const ASSIST: &str = "150602-housing_construction";

    fn adoption() -> Adoption {
        Adoption {
            topic_key: format!("{}/property@39.8100,109.9900", fixture().grid),
            month: "2026-12".into(),
            grid: fixture().grid.clone(),
            category: code("property.service"),
            solvable_at: Level::Community,
            summary: "【常发】近12个月有9个月上报，共23件".into(),
            lead: code(LEAD),
            assisting: vec![code(ASSIST)],
            milestones: vec![
                ("排查小区物业服务问题".into(), hours(24 * 7)),
                ("召开居民协商会".into(), hours(24 * 30)),
            ],
            deadline: hours(24 * 60),
            note: "每月一题".into(),
        }
    }

    fn adopted() -> Incident {
        let (incident, _) = adopt(adoption(), &operator("150602"), &ctx(), t0()).unwrap();
        incident.check_invariants().unwrap();
        incident
    }

    #[test]
    fn an_adopted_topic_is_an_incident_whistled_to_its_lead_and_assistants() {
        let (incident, effects) = adopt(adoption(), &operator("150602"), &ctx(), t0()).unwrap();
        incident.check_invariants().unwrap();
        assert_eq!(
            kinds(&effects),
            ["incident.adopted", "task.dispatched", "task.dispatched"]
        );
        // Supervised at the street (departments are summoned there), to the adopted deadline,
        // with no level window: the deadline and the report-ins are its only clocks.
        assert_eq!(
            (incident.status, incident.level, incident.level_due),
            (Status::Whistled, Level::Street, None)
        );
        assert_eq!(incident.resolve_due, hours(24 * 60));
        let timers: Vec<Timer> = incident.timers().into_keys().collect();
        assert_eq!(
            timers,
            [
                Timer::AcceptDeadline { task: 1 },
                Timer::ResolveDeadline,
                Timer::AcceptDeadline { task: 2 },
            ]
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
        );
        let roles: Vec<(&str, TaskRole)> = incident
            .tasks
            .iter()
            .map(|t| (t.department.as_str(), t.role))
            .collect();
        assert_eq!(roles, [(LEAD, TaskRole::Lead), (ASSIST, TaskRole::Assist)]);
        let proactive = incident.proactive.as_ref().unwrap();
        assert_eq!(proactive.adopted_by.as_str(), "op-150602");
        assert_eq!(proactive.milestones.len(), 2);
        let Effect::Event { note, .. } = &effects[0] else {
            panic!("{effects:?}")
        };
        assert!(
            note.contains("主动治理") && note.contains("/property@"),
            "{note}"
        );
    }

    #[test]
    fn a_topic_solvable_higher_up_is_supervised_there() {
        let mut adoption = adoption();
        adoption.solvable_at = Level::District;
        let (incident, _) = adopt(adoption, &operator("150602"), &ctx(), t0()).unwrap();
        incident.check_invariants().unwrap();
        assert_eq!(incident.level, Level::District);
    }

    #[test]
    fn only_operators_of_the_topics_area_adopt_it() {
        let refuse = |actor: Actor| adopt(adoption(), &actor, &ctx(), t0()).unwrap_err();
        assert!(matches!(
            refuse(operator("150603")),
            Rejection::Forbidden(_)
        ));
        assert!(matches!(refuse(liaison(LEAD)), Rejection::Forbidden(_)));
        assert!(matches!(refuse(reporter()), Rejection::Forbidden(_)));
        assert!(matches!(
            refuse(handler(Level::Street)),
            Rejection::Forbidden(_)
        ));
        assert!(adopt(adoption(), &operator("150600"), &ctx(), t0()).is_ok());
        assert!(adopt(adoption(), &Actor::System, &ctx(), t0()).is_ok());
    }

    #[test]
    fn a_bad_adoption_is_refused_with_its_reason() {
        let refuse = |change: &dyn Fn(&mut Adoption)| {
            let mut adoption = adoption();
            change(&mut adoption);
            adopt(adoption, &operator("150602"), &ctx(), t0()).unwrap_err()
        };
        let not_found = |r: Rejection| matches!(r, Rejection::NotFound(_));
        let invalid = |r: Rejection| matches!(r, Rejection::InvalidArgument(_));
        assert!(not_found(refuse(&|a| a.lead = code("150602-nothing"))));
        assert!(not_found(refuse(&|a| a.category = code("no.such"))));
        // A department of another district does not serve the topic's grid.
        assert!(invalid(refuse(
            &|a| a.lead = code("150603-urban_management")
        )));
        assert!(invalid(refuse(&|a| a.assisting = vec![code(LEAD)])));
        assert!(invalid(refuse(&|a| a.deadline = t0())));
        assert!(invalid(refuse(&|a| a.deadline = hours(24 * 400))));
        assert!(invalid(refuse(&|a| a.milestones[1].1 = hours(24 * 61))));
        assert!(invalid(refuse(&|a| a.milestones[0].1 = t0())));
        assert!(invalid(refuse(&|a| a.milestones[0].0 = "  ".into())));
        assert!(invalid(refuse(&|a| {
            a.assisting = ["transport", "justice", "heating", "ecology_environment"]
                .iter()
                .map(|k| code(&format!("150602-{k}")))
                .collect()
        })));
    }

    #[test]
    fn it_lives_on_the_normal_lifecycle_to_its_close() {
        let incident = adopted();
        let (incident, _) = act(&incident, liaison(LEAD), accept(1), hours(1));
        let (incident, _) = act(&incident, liaison(ASSIST), accept(2), hours(1));
        assert_eq!(incident.status, Status::Accepted);
        // The lead waits for its assistant's part (主办/协办) as in any incident.
        let early = apply(
            &incident,
            Input::Command(liaison(LEAD), resolve(Some(1))),
            &ctx(),
            hours(2),
        );
        assert!(early.is_err());
        let (incident, _) = act(
            &incident,
            liaison(ASSIST),
            Command::SubmitAssist {
                task: 2,
                note: "已排查".into(),
            },
            hours(3),
        );
        let (incident, effects) = act(&incident, liaison(LEAD), resolve(Some(1)), hours(4));
        assert!(kinds(&effects).contains(&"incident.resolved"));
        // The grid's worker follows it up at the place, as for a report.
        let (closed, _) = act(
            &incident,
            reporter(),
            verify(Satisfaction::Satisfied),
            hours(5),
        );
        assert_eq!(closed.status, Status::Closed);
        assert!(closed.proactive.is_some());
    }

    #[test]
    fn a_missed_report_in_is_supervised_and_the_deadline_makes_it_overdue() {
        let incident = adopted();
        let due = incident.tasks[0].accept_due;
        let (incident, effects) = fire(&incident, Timer::AcceptDeadline { task: 1 }, due);
        assert!(kinds(&effects).contains(&"task.supervised"), "{effects:?}");
        // Escalated to the district, still without a level window.
        assert_eq!(
            (incident.level, incident.level_due),
            (Level::District, None)
        );
        let (late, effects) = fire(&incident, Timer::ResolveDeadline, hours(24 * 60));
        assert!(late.overdue);
        assert!(kinds(&effects).contains(&"incident.overdue"));
    }

    #[test]
    fn milestones_are_done_by_the_lead_or_an_operator_once() {
        let incident = adopted();
        let complete = |number: u32| Command::CompleteMilestone {
            milestone: number,
            note: "已完成排查".into(),
        };
        let (next, effects) = act(&incident, liaison(LEAD), complete(1), hours(2));
        assert_eq!(kinds(&effects), ["incident.milestone_done"]);
        assert_eq!(next.version, incident.version + 1);
        let first = &next.proactive.as_ref().unwrap().milestones[0];
        assert_eq!(
            (first.done_at, first.done_by.as_ref().map(|p| p.as_str())),
            (Some(hours(2)), Some("li-150602-urban_management"))
        );
        assert!(!first.is_overdue(hours(24 * 100)));
        // Late, and by an operator: the timeline says it was late.
        let second = &next.proactive.as_ref().unwrap().milestones[1];
        assert!(second.is_overdue(hours(24 * 31)));
        let (late, effects) = act(&next, operator("150602"), complete(2), hours(24 * 31));
        let Effect::Event { note, .. } = &effects[0] else {
            panic!()
        };
        assert!(note.contains("逾期"), "{note}");
        assert!(!late.proactive.as_ref().unwrap().milestones[1].is_overdue(hours(24 * 31)));
        // Done once; unknown numbers, assistants, other areas and other incidents are refused.
        assert!(matches!(
            refused(&next, liaison(LEAD), complete(1)),
            Rejection::InvalidTransition(_)
        ));
        assert!(matches!(
            refused(&next, liaison(LEAD), complete(3)),
            Rejection::NotFound(_)
        ));
        assert!(matches!(
            refused(&next, liaison(LEAD), complete(0)),
            Rejection::NotFound(_)
        ));
        assert!(matches!(
            refused(&next, liaison(ASSIST), complete(2)),
            Rejection::Forbidden(_)
        ));
        assert!(matches!(
            refused(&next, operator("150603"), complete(2)),
            Rejection::Forbidden(_)
        ));
        assert!(matches!(
            refused(&next, reporter(), complete(2)),
            Rejection::Forbidden(_)
        ));
        let (reported, _) = open_at("property.service", t0());
        assert!(matches!(
            refused(&reported, operator("150602"), complete(1)),
            Rejection::NotFound(_)
        ));
    }
}

#[test]
fn a_leader_endorses_a_supervision_only_of_an_open_incident_in_its_paired_areas() {
    let f = fixture();
    let (incident, _) = open_at("municipal.street_light", t0());
    let community = f.grid.at_level(Level::Community).unwrap();
    let street = f.grid.at_level(Level::Street).unwrap();
    for paired in [vec![community.clone()], vec![street.clone()]] {
        let (next, effects) = act(
            &incident,
            leader(&paired),
            Command::Endorse {
                note: "请本周内解决".into(),
            },
            mins(5),
        );
        assert_eq!(kinds(&effects), ["incident.endorsed"]);
        // It records the instruction and changes nothing else: no deadline, level or status.
        assert_eq!(timer_effects_of(&effects), []);
        assert_eq!(
            (next.status, next.level, next.resolve_due, next.level_due),
            (
                incident.status,
                incident.level,
                incident.resolve_due,
                incident.level_due
            )
        );
    }
    let endorse = |note: &str| Command::Endorse { note: note.into() };
    // Its post (the district) is no pairing; another community is not this one.
    let elsewhere = f.other_grid.at_level(Level::Community).unwrap();
    for actor in [
        leader(&[]),
        leader(&[elsewhere]),
        operator("150602"),
        Actor::System,
    ] {
        assert!(
            matches!(
                refused(&incident, actor.clone(), endorse("x")),
                Rejection::Forbidden(_)
            ),
            "{actor:?}"
        );
    }
    assert!(matches!(
        refused(
            &incident,
            leader(std::slice::from_ref(&community)),
            endorse("  ")
        ),
        Rejection::InvalidArgument(_)
    ));
    // A paired leader may comment on the timeline too, as anyone with a part in it.
    let (_, effects) = act(
        &incident,
        leader(std::slice::from_ref(&community)),
        Command::Comment {
            text: "已了解".into(),
        },
        mins(6),
    );
    assert_eq!(kinds(&effects), ["incident.commented"]);
    // A closed incident is endorsed no more.
    let mut closed = incident.clone();
    closed.status = Status::Closed;
    assert!(matches!(
        refused(&closed, leader(&[community]), endorse("x")),
        Rejection::InvalidTransition(_)
    ));
}
