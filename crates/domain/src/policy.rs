//! The dispatch policy: the category catalogue and every figure that drives dispatch, as data.
//!
//! A policy file (TOML, `policy/*.toml`) says, per category, which SLA class bounds its resolution,
//! at which level of grid → community → street → district → city it is first handled, how long each
//! level may work on it before it goes one level up, and which kinds of functional department the
//! street summons when it blows the whistle (吹哨). It also holds the report-in (报到) and follow-up
//! (回访) deadlines, the duplicate and cluster rules, and the weights of the composite score of the
//! three rates. Each incident stores the `version` of the policy it was dispatched under.
//!
//! A file may name a `base` file: its top-level keys replace the base's, and `time_divisor`
//! divides every duration, which is how the demo policy reuses the Ordos catalogue on a faster
//! clock. Parsing is pure; the caller reads files and resolves the base by name.
//!
//! **Invariant:** a [`Policy`] is fully validated: all four SLA classes are defined, durations are
//! positive, and every category has a window for each level from its first level up to the
//! district, adding up to no more than its SLA resolve deadline.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    calendar::{Calendar, Due},
    CategoryCode, DepartmentKind, Level,
};

mod source;

pub use source::{diff, Change, Source};

/// The names of the policies compiled in, for [`builtin`].
pub const BUILTIN: [&str; 2] = ["ordos", "ordos-demo"];

const ORDOS: &str = include_str!("../../../policy/ordos.toml");
const ORDOS_DEMO: &str = include_str!("../../../policy/ordos-demo.toml");

/// The largest `time_divisor`: a day becomes a second.
const MAX_TIME_DIVISOR: i64 = 86_400;

/// The longest working-day term, about a year and a half.
const MAX_WORKING_DAYS: u32 = 366;

/// A policy shipped with the repository, by name: `"ordos"` or `"ordos-demo"`.
pub fn builtin(name: &str) -> Option<Policy> {
    let text = match name {
        "ordos" => ORDOS,
        "ordos-demo" => ORDOS_DEMO,
        _ => return None,
    };
    let resolve_base = |base: &str| (base == "ordos.toml").then(|| ORDOS.to_owned());
    Some(
        Policy::parse(text, resolve_base)
            .unwrap_or_else(|e| panic!("builtin policy {name} is invalid: {e}")),
    )
}

/// An SLA class: how soon an incident must be resolved, counted from the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlaClass {
    /// 紧急: risk to life or property.
    Emergency,
    /// 水电气热: water, power, gas and heating.
    Utilities,
    /// 一般.
    General,
    /// 疑难: enforcement and disputes that take weeks.
    Complex,
}

impl SlaClass {
    pub const ALL: [SlaClass; 4] = [
        SlaClass::Emergency,
        SlaClass::Utilities,
        SlaClass::General,
        SlaClass::Complex,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SlaClass::Emergency => "emergency",
            SlaClass::Utilities => "utilities",
            SlaClass::General => "general",
            SlaClass::Complex => "complex",
        }
    }

    fn from_name(name: &str) -> Option<SlaClass> {
        SlaClass::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

/// How long a resolve deadline runs: on the clock, or in working days on the official calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Term {
    /// Elapsed time, through nights, weekends and holidays (`"2h"`, `"3d"`).
    Elapsed(TimeDelta),
    /// Working days on the official calendar (`"7wd"`), counted as
    /// [`Calendar::add_working_days`] states.
    WorkingDays(u32),
}

impl Term {
    /// The deadline counted from `from`; only a working-day term can be provisional.
    pub fn due(self, from: DateTime<Utc>, calendar: &Calendar) -> Due {
        match self {
            Term::Elapsed(length) => Due {
                at: from + length,
                provisional: false,
            },
            Term::WorkingDays(days) => calendar.add_working_days(from, days),
        }
    }

    /// The shortest time the term can take: `n` working days take at least `n` days.
    pub fn at_least(self) -> TimeDelta {
        match self {
            Term::Elapsed(length) => length,
            Term::WorkingDays(days) => TimeDelta::days(i64::from(days)),
        }
    }

    /// As written in a policy file: `"24h"`, `"7wd"`.
    pub fn describe(self) -> String {
        match self {
            Term::Elapsed(length) => format_duration(length),
            Term::WorkingDays(days) => format!("{days}wd"),
        }
    }
}

/// The resolve deadline of an SLA class.
#[derive(Debug, Clone, PartialEq)]
pub struct Sla {
    pub name_zh: String,
    pub resolve: Term,
}

/// Weights of the composite score of the three rates (三率); they sum to 1.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Weights {
    pub response: f64,
    pub resolution: f64,
    pub satisfaction: f64,
}

impl Weights {
    /// The composite score of three rates, each between 0 and 1.
    pub fn composite(
        &self,
        response_rate: f64,
        resolution_rate: f64,
        satisfaction_rate: f64,
    ) -> f64 {
        self.response * response_rate
            + self.resolution * resolution_rate
            + self.satisfaction * satisfaction_rate
    }
}

/// How the monthly scoreboard scores and ranks: the composite's weights, and the sample below
/// which a row's rates mean too little to rank it among the rest (`[rankings] min_sample`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scoring {
    pub weights: Weights,
    /// A department with fewer tasks dispatched in the month, or a street with fewer incidents
    /// reported in it, is marked and ranked after every row with a full sample.
    pub min_sample: u32,
    /// How cases of the long-term ledger (挂账) count in the resolution rate (`[ledger] rates`;
    /// unresolved without a ledger, where there are none).
    pub ledger: LedgerRates,
}

/// The default `[rankings] min_sample`.
pub const DEFAULT_MIN_SAMPLE: u32 = 20;

/// A report of the same category within `radius_m` metres (the same grid where there are no
/// coordinates) and `window` of an open incident joins that incident.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Duplicates {
    pub radius_m: u32,
    pub window: TimeDelta,
}

/// `threshold` or more reports of one category in one community within `window` raise one
/// cluster alert.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clusters {
    pub threshold: u32,
    pub window: TimeDelta,
}

/// A group of categories, the first part of a category code.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub code: String,
    pub name_zh: String,
    pub name_en: String,
}

/// A dispatch category (`{group}.{item}`) and how it is routed.
#[derive(Debug, Clone, PartialEq)]
pub struct Category {
    pub code: CategoryCode,
    pub group: String,
    pub name_zh: String,
    pub name_en: String,
    pub sla: SlaClass,
    /// The level that first handles it.
    pub first_level: Level,
    /// How long each level from `first_level` up to the district may work on it alone.
    pub windows: BTreeMap<Level, TimeDelta>,
    /// The department kinds whistled at street level, never empty.
    pub summon: Vec<DepartmentKind>,
    /// A report must carry at least one photo (intake rejects it `photo_required`).
    pub photo_required: bool,
    /// Every resolution (办结) must carry at least one "after" photo.
    pub after_photo_required: bool,
}

/// Deadline extensions (延期申请): how long the level above has to answer, how many an incident may
/// get, how far one may move the deadline, and what an unanswered request does. A policy without
/// an `[extensions]` table allows none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extensions {
    /// How long the approving level has to answer; then the request counts as denied.
    pub answer: TimeDelta,
    /// Approved extensions per incident (工单), over all its rounds and departments.
    pub max_per_incident: u32,
    /// The furthest one extension may move the deadline.
    pub longest: TimeDelta,
    /// An unanswered request also sends the incident one level up.
    pub escalate_unanswered: bool,
}

impl Extensions {
    /// No extension is ever granted.
    pub const NONE: Extensions = Extensions {
        answer: TimeDelta::zero(),
        max_per_incident: 0,
        longest: TimeDelta::zero(),
        escalate_unanswered: false,
    };
}

/// How long personal data is kept; then dispatch erases it (docs/privacy.md). A policy without a
/// `[retention]` table, or a period the table leaves out, keeps [`Retention::DEFAULT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Residents' call-back contacts, sealed apart from their reports, once their incident
    /// settled (closed, closed unverified, or merged as a duplicate).
    pub contacts: TimeDelta,
    /// Photos of reports and resolutions, once every incident showing the photo settled.
    pub photos: TimeDelta,
    /// Rejected reports (their contacts masked), from when they were received.
    pub rejected: TimeDelta,
    /// Residents' tracking codes (查询码) open their report's page until this long after the
    /// incident closed; then they answer as a code that never existed.
    pub tracking_codes: TimeDelta,
}

impl Retention {
    pub const DEFAULT: Retention = Retention {
        contacts: TimeDelta::days(180),
        photos: TimeDelta::days(365),
        rejected: TimeDelta::days(90),
        tracking_codes: TimeDelta::days(30),
    };
}

/// Assisting departments (协办): how many a whistle may name besides its lead, and the deadline of
/// an assistant's part. A policy without an `[assisting]` table allows none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assisting {
    /// Assisting departments one whistle may name (0: none).
    pub max_per_whistle: u32,
    /// An assistant submits its part this long after it is dispatched, and never after the
    /// incident's SLA deadline: the lead needs the parts before it can resolve.
    pub part: TimeDelta,
}

impl Assisting {
    /// No whistle names an assisting department.
    pub const NONE: Assisting = Assisting {
        max_per_whistle: 0,
        part: TimeDelta::zero(),
    };
}

/// The most assisting departments one whistle may name, whatever the policy says: a whistle
/// summoning half the district's departments is a mistake, not a plan.
pub const MAX_ASSISTING: u32 = 10;

/// How ledger cases (挂账) count in the three rates (三率): a policy setting, since a city chooses
/// whether a case it has agreed cannot be solved in time still weighs on a unit's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerRates {
    /// Out of the resolution rate's denominators while in the ledger (the incident, and its
    /// department tasks of the round): approval is the district agreeing no deadline can be met.
    Excluded,
    /// Counted as any open case: due at the deadline it had and unresolved until resolved.
    Unresolved,
}

impl LedgerRates {
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerRates::Excluded => "excluded",
            LedgerRates::Unresolved => "unresolved",
        }
    }
}

/// The long-term ledger (挂账): who approves and reviews, how far a review date may lie, the fresh
/// deadline of a case returned to handling, and how ledger cases count in the rates. A policy
/// without a `[ledger]` table has no ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerRules {
    /// The lowest level that approves and reviews: the district, or the city. Work already at
    /// that level or above goes to the level above it (the city at the top).
    pub approver: Level,
    /// The furthest a review date may lie from the proposal or the review that sets it.
    pub longest_review: TimeDelta,
    /// The resolve deadline of a case returned from the ledger to handling, counted from then.
    pub return_resolve: Term,
    pub rates: LedgerRates,
}

impl LedgerRules {
    /// The level that approves the ledger entry of an incident handled at `level`.
    pub fn approver_for(&self, level: Level) -> Level {
        self.approver.max(level.up().unwrap_or(Level::City))
    }
}

/// What volunteers may take (群众点单、社区派单、党员接单, docs/party.md): the categories a community
/// may offer to its registered Party members and volunteer teams — never one a department holds by
/// law, so no emergency and none first handled above the community —, how long a claim holds,
/// and what confirmed time earns. A policy without a `[volunteers]` table lets volunteers take no
/// incident (small wishes only) with [`VolunteerRules::DEFAULT`]'s figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolunteerRules {
    pub categories: BTreeSet<String>,
    /// A claim not marked done within this returns the offer to the community.
    pub claim_window: TimeDelta,
    pub points_per_hour: u32,
    /// The most time one piece of work may count, in minutes.
    pub max_minutes: u32,
    /// The yearly evaluation of units (双报到 考评).
    pub evaluation: EvaluationRules,
}

/// What a unit's year must reach for each grade of the yearly evaluation: the first grade whose
/// bar it clears, from excellent down; poor is what is left. Whole percents and hours, so that a
/// grade never hangs on a rounding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvaluationRules {
    pub excellent: GradeBar,
    pub good: GradeBar,
    pub fair: GradeBar,
}

/// One grade's bar: every figure must be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GradeBar {
    /// Members who served, per hundred registered.
    pub participation_pct: u32,
    /// Confirmed hours per registered member.
    pub hours_per_member: u32,
    /// Ratings satisfied or basically satisfied, per hundred rated; `None` asks nothing, and a
    /// unit with nothing rated meets any bar.
    pub satisfaction_pct: Option<u32>,
}

impl EvaluationRules {
    /// Excellent: four in five members served, 12 hours a member and nine in ten ratings
    /// satisfied; good: half served and 4 hours a member; fair: one in five served.
    pub const DEFAULT: EvaluationRules = EvaluationRules {
        excellent: GradeBar {
            participation_pct: 80,
            hours_per_member: 12,
            satisfaction_pct: Some(90),
        },
        good: GradeBar {
            participation_pct: 50,
            hours_per_member: 4,
            satisfaction_pct: None,
        },
        fair: GradeBar {
            participation_pct: 20,
            hours_per_member: 0,
            satisfaction_pct: None,
        },
    };
}

impl VolunteerRules {
    pub const DEFAULT: VolunteerRules = VolunteerRules {
        categories: BTreeSet::new(),
        claim_window: TimeDelta::hours(24),
        points_per_hour: 10,
        max_minutes: 8 * 60,
        evaluation: EvaluationRules::DEFAULT,
    };

    /// Whether volunteers may take an incident of `category`.
    pub fn allows(&self, category: &CategoryCode) -> bool {
        self.categories.contains(category.as_str())
    }
}

/// A validated dispatch policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    version: String,
    name: String,
    time_divisor: u32,
    weights: Weights,
    min_sample: u32,
    accept: TimeDelta,
    follow_up: TimeDelta,
    reopen_resolve: Option<Term>,
    extensions: Extensions,
    retention: Retention,
    assisting: Assisting,
    ledger: Option<LedgerRules>,
    volunteers: VolunteerRules,
    duplicates: Duplicates,
    clusters: Clusters,
    sla: BTreeMap<SlaClass, Sla>,
    groups: Vec<Group>,
    categories: Vec<Category>,
    by_code: HashMap<String, usize>,
}

impl Policy {
    /// Parses a policy; `resolve_base` returns the text of a `base = "…"` file by name.
    pub fn parse(
        text: &str,
        resolve_base: impl Fn(&str) -> Option<String>,
    ) -> Result<Policy, Error> {
        let mut raw = RawPolicy::from_toml(text, "policy")?;
        if let Some(base_name) = raw.base.take() {
            let base_text =
                resolve_base(&base_name).ok_or_else(|| Error::MissingBase(base_name.clone()))?;
            let base = RawPolicy::from_toml(&base_text, &base_name)?;
            if let Some(nested) = base.base {
                return Err(Error::NestedBase {
                    base: base_name,
                    nested,
                });
            }
            raw = raw.over(base);
        }
        raw.build()
    }

    /// The version stored on each incident dispatched under this policy.
    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// What every duration of the file was divided by (1 unless a demo).
    pub fn time_divisor(&self) -> u32 {
        self.time_divisor
    }

    pub fn weights(&self) -> Weights {
        self.weights
    }

    /// The scoreboard's weights and minimum sample.
    pub fn scoring(&self) -> Scoring {
        Scoring {
            weights: self.weights,
            min_sample: self.min_sample,
            ledger: self
                .ledger
                .map_or(LedgerRates::Unresolved, |ledger| ledger.rates),
        }
    }

    /// How long a department has to report in (报到) after a whistle.
    pub fn accept_deadline(&self) -> TimeDelta {
        self.accept
    }

    /// How long the follow-up (回访) may take after resolution before the incident closes unverified.
    pub fn follow_up_window(&self) -> TimeDelta {
        self.follow_up
    }

    /// The deadline extension (延期申请) rules.
    pub fn extensions(&self) -> Extensions {
        self.extensions
    }

    pub fn retention(&self) -> Retention {
        self.retention
    }

    /// The assisting department (协办) rules.
    pub fn assisting(&self) -> Assisting {
        self.assisting
    }

    /// The long-term ledger (挂账) rules; `None` when the policy has no ledger.
    pub fn volunteers(&self) -> &VolunteerRules {
        &self.volunteers
    }

    pub fn ledger(&self) -> Option<LedgerRules> {
        self.ledger
    }

    pub fn duplicates(&self) -> Duplicates {
        self.duplicates
    }

    pub fn clusters(&self) -> Clusters {
        self.clusters
    }

    pub fn sla(&self, class: SlaClass) -> &Sla {
        &self.sla[&class]
    }

    /// The groups, in file order.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    pub fn group(&self, code: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.code == code)
    }

    pub fn category(&self, code: &str) -> Option<&Category> {
        self.by_code.get(code).map(|&i| &self.categories[i])
    }

    /// The categories, in file order.
    pub fn categories(&self) -> impl Iterator<Item = &Category> {
        self.categories.iter()
    }

    /// The resolve deadline of a category, counted from the report: its SLA class's.
    pub fn resolve_deadline(&self, category: &Category) -> Term {
        self.sla(category.sla).resolve
    }

    /// The new resolve deadline after an unsatisfied follow-up reopens (重办) an incident.
    pub fn reopen_deadline(&self, category: &Category) -> Term {
        self.reopen_resolve
            .unwrap_or_else(|| self.resolve_deadline(category))
    }

    /// How long `level` may work on an incident of `category` before it goes one level up; `None`
    /// below the first level and at the city.
    pub fn window(&self, category: &Category, level: Level) -> Option<TimeDelta> {
        category.windows.get(&level).copied()
    }
}

/// Why a policy was refused; each message names the part of the file at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// TOML syntax, an unknown key, a missing required key or a value of the wrong type, with the
    /// line and column.
    #[error("{file}: {message}")]
    Toml { file: String, message: String },
    #[error("base {0:?} not found")]
    MissingBase(String),
    #[error("base {base:?} itself has a base {nested:?}; a base must be a complete policy")]
    NestedBase { base: String, nested: String },
    #[error("missing {0}")]
    Missing(String),
    #[error("time_divisor {0}: must be between 1 and {MAX_TIME_DIVISOR}")]
    TimeDivisor(i64),
    #[error("{at}: invalid duration {value:?}: {why}")]
    Duration {
        at: String,
        value: String,
        why: &'static str,
    },
    #[error(
        "weights: response {} + resolution {} + satisfaction {} must each lie between 0 and 1 and sum to 1",
        .0.response, .0.resolution, .0.satisfaction
    )]
    Weights(Weights),
    #[error("{at}: must be at least {min}")]
    TooSmall { at: &'static str, min: u32 },
    #[error("{at}: must be at most {max}")]
    TooLarge { at: &'static str, max: u32 },
    #[error(
        "assisting.part {}: must be longer than the report-in deadline {}; an assistant reports in before it submits",
        format_duration(*.part), format_duration(*.accept)
    )]
    AssistingPartTooShort { part: TimeDelta, accept: TimeDelta },
    #[error("ledger.approver: {0:?}; expected district or city (the levels that approve 挂账)")]
    LedgerApprover(String),
    #[error("ledger.rates: {0:?}; expected excluded or unresolved")]
    LedgerRates(String),
    #[error("volunteers.evaluation: {0}")]
    Evaluation(String),
    #[error("volunteers.categories: {category}: {why}")]
    VolunteerCategory { category: String, why: String },
    #[error(
        "{at}: unknown SLA class {class:?}; expected emergency, utilities, general or complex"
    )]
    UnknownSla { at: String, class: String },
    #[error("group {0:?}: code must be lowercase letters, digits and _")]
    GroupCode(String),
    #[error("group {0}: code appears twice")]
    DuplicateGroup(String),
    #[error("category {code}: {why}")]
    CategoryCode { code: String, why: String },
    #[error("category {0}: code appears twice")]
    DuplicateCategory(String),
    #[error("category {category}: unknown level {level:?}; expected grid, community, street, district or city")]
    UnknownLevel { category: String, level: String },
    #[error("category {category}: no window for level {}; every level from first_level up to district needs one", .level.as_str())]
    MissingWindow { category: String, level: Level },
    #[error("category {category}: window for level {}, which is not between first_level and district", .level.as_str())]
    StrayWindow { category: String, level: Level },
    #[error(
        "category {category}: windows add up to {}, more than the {} resolve deadline {}",
        format_duration(*.total), .class.as_str(), .resolve.describe()
    )]
    WindowsExceedSla {
        category: String,
        total: TimeDelta,
        class: SlaClass,
        resolve: Term,
    },
    #[error(
        "category {category}: the street window {} must be longer than the report-in deadline {}",
        format_duration(*.window), format_duration(*.accept)
    )]
    StreetWindowTooShort {
        category: String,
        window: TimeDelta,
        accept: TimeDelta,
    },
    #[error("category {category}: unknown department kind {kind:?}")]
    UnknownDepartment { category: String, kind: String },
    #[error("category {category}: department kind {:?} summoned twice", .kind.slug())]
    RepeatedSummon {
        category: String,
        kind: DepartmentKind,
    },
    #[error(
        "category {0}: summon is empty; a category needs at least one department kind to summon"
    )]
    EmptySummon(String),
}

/// One file as written; every key but `version` may come from the base instead.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    base: Option<String>,
    version: String,
    name: Option<String>,
    time_divisor: Option<i64>,
    weights: Option<Weights>,
    rankings: Option<RawRankings>,
    deadlines: Option<RawDeadlines>,
    extensions: Option<RawExtensions>,
    retention: Option<RawRetention>,
    assisting: Option<RawAssisting>,
    ledger: Option<RawLedger>,
    volunteers: Option<RawVolunteers>,
    duplicates: Option<RawDuplicates>,
    clusters: Option<RawClusters>,
    sla: Option<BTreeMap<String, RawSla>>,
    group: Option<Vec<Group>>,
    category: Option<Vec<RawCategory>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRankings {
    min_sample: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeadlines {
    accept: String,
    follow_up: String,
    reopen_resolve: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExtensions {
    answer: String,
    max_per_incident: u32,
    longest: String,
    escalate_unanswered: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    contacts: String,
    photos: Option<String>,
    rejected: Option<String>,
    tracking_codes: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAssisting {
    max_per_whistle: u32,
    part: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLedger {
    approver: String,
    longest_review: String,
    return_resolve: String,
    rates: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVolunteers {
    categories: Vec<String>,
    claim_window: String,
    points_per_hour: u32,
    max_hours: u32,
    evaluation: Option<RawEvaluation>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvaluation {
    excellent: RawGradeBar,
    good: RawGradeBar,
    fair: RawGradeBar,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGradeBar {
    participation: u32,
    #[serde(default)]
    hours_per_member: u32,
    satisfaction: Option<u32>,
}

impl RawEvaluation {
    /// Percents at most 100, and each grade asking at least what the one below it asks.
    fn check(self) -> Result<EvaluationRules, Error> {
        let bar = |name: &str, raw: RawGradeBar| {
            for (what, pct) in [
                ("participation", Some(raw.participation)),
                ("satisfaction", raw.satisfaction),
            ] {
                if let Some(pct) = pct.filter(|&p| p > 100) {
                    return Err(Error::Evaluation(format!(
                        "{name}.{what} {pct}: a percent, at most 100"
                    )));
                }
            }
            if raw.hours_per_member > 8_760 {
                return Err(Error::Evaluation(format!(
                    "{name}.hours_per_member {}: more than a year has",
                    raw.hours_per_member
                )));
            }
            Ok(GradeBar {
                participation_pct: raw.participation,
                hours_per_member: raw.hours_per_member,
                satisfaction_pct: raw.satisfaction,
            })
        };
        let rules = EvaluationRules {
            excellent: bar("excellent", self.excellent)?,
            good: bar("good", self.good)?,
            fair: bar("fair", self.fair)?,
        };
        for (higher, lower, names) in [
            (&rules.excellent, &rules.good, "excellent than good"),
            (&rules.good, &rules.fair, "good than fair"),
        ] {
            let asks_less = higher.participation_pct < lower.participation_pct
                || higher.hours_per_member < lower.hours_per_member
                || higher.satisfaction_pct.unwrap_or(0) < lower.satisfaction_pct.unwrap_or(0);
            if asks_less {
                return Err(Error::Evaluation(format!(
                    "{names}: a higher grade must ask at least as much as a lower one of each figure"
                )));
            }
        }
        Ok(rules)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDuplicates {
    radius_m: u32,
    window: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClusters {
    threshold: u32,
    window: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSla {
    name_zh: String,
    resolve: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCategory {
    code: String,
    name_zh: String,
    name_en: String,
    sla: String,
    first_level: String,
    #[serde(default)]
    windows: BTreeMap<String, String>,
    summon: Vec<String>,
    #[serde(default)]
    photo_required: bool,
    #[serde(default)]
    after_photo_required: bool,
}

impl RawPolicy {
    fn from_toml(text: &str, file: &str) -> Result<RawPolicy, Error> {
        toml::from_str(text).map_err(|e| Error::Toml {
            file: file.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })
    }

    /// This file's keys over those of `base`.
    fn over(self, base: RawPolicy) -> RawPolicy {
        RawPolicy {
            base: None,
            version: self.version,
            name: self.name.or(base.name),
            time_divisor: self.time_divisor.or(base.time_divisor),
            weights: self.weights.or(base.weights),
            rankings: self.rankings.or(base.rankings),
            deadlines: self.deadlines.or(base.deadlines),
            extensions: self.extensions.or(base.extensions),
            retention: self.retention.or(base.retention),
            assisting: self.assisting.or(base.assisting),
            ledger: self.ledger.or(base.ledger),
            volunteers: self.volunteers.or(base.volunteers),
            duplicates: self.duplicates.or(base.duplicates),
            clusters: self.clusters.or(base.clusters),
            sla: self.sla.or(base.sla),
            group: self.group.or(base.group),
            category: self.category.or(base.category),
        }
    }

    fn build(self) -> Result<Policy, Error> {
        let missing = |what: &str| Error::Missing(what.to_owned());
        if self.version.trim().is_empty() {
            return Err(missing("version"));
        }
        let name = self.name.ok_or_else(|| missing("name"))?;
        let divisor = match self.time_divisor.unwrap_or(1) {
            d @ 1..=MAX_TIME_DIVISOR => d as i32,
            d => return Err(Error::TimeDivisor(d)),
        };
        let duration = |at: &str, text: &str| {
            parse_duration(text)
                .map(|d| d / divisor)
                .map_err(|why| Error::Duration {
                    at: at.to_owned(),
                    value: text.to_owned(),
                    why,
                })
        };
        // A resolve deadline may run in working days ("7wd"). A demo's divided clock has no
        // calendar to follow, so there it becomes the same number of days, divided.
        let term = |at: &str, text: &str| match text.strip_suffix("wd") {
            Some(number) => {
                let days = match number.parse::<u32>() {
                    Ok(0) => Err("must be positive"),
                    Ok(days) if days <= MAX_WORKING_DAYS => Ok(days),
                    Ok(_) => Err("too long; at most 366 working days"),
                    Err(_) => Err("expected an integer and a unit s, m, h, d or wd, e.g. \"7wd\""),
                }
                .map_err(|why| Error::Duration {
                    at: at.to_owned(),
                    value: text.to_owned(),
                    why,
                })?;
                Ok(if divisor == 1 {
                    Term::WorkingDays(days)
                } else {
                    Term::Elapsed(TimeDelta::days(i64::from(days)) / divisor)
                })
            }
            None => duration(at, text).map(Term::Elapsed),
        };

        let weights = self.weights.ok_or_else(|| missing("[weights]"))?;
        let parts = [weights.response, weights.resolution, weights.satisfaction];
        if parts.iter().any(|w| !(0.0..=1.0).contains(w))
            || (parts.iter().sum::<f64>() - 1.0).abs() > 1e-9
        {
            return Err(Error::Weights(weights));
        }

        let min_sample = self
            .rankings
            .map_or(DEFAULT_MIN_SAMPLE, |rankings| rankings.min_sample);
        if min_sample < 1 {
            return Err(Error::TooSmall {
                at: "rankings.min_sample",
                min: 1,
            });
        }

        let deadlines = self.deadlines.ok_or_else(|| missing("[deadlines]"))?;
        let accept = duration("deadlines.accept", &deadlines.accept)?;
        let follow_up = duration("deadlines.follow_up", &deadlines.follow_up)?;
        let reopen_resolve = deadlines
            .reopen_resolve
            .map(|text| term("deadlines.reopen_resolve", &text))
            .transpose()?;

        let extensions = match self.extensions {
            None => Extensions::NONE,
            Some(raw) => Extensions {
                answer: duration("extensions.answer", &raw.answer)?,
                max_per_incident: raw.max_per_incident,
                longest: duration("extensions.longest", &raw.longest)?,
                escalate_unanswered: raw.escalate_unanswered,
            },
        };

        let retention = match self.retention {
            None => Retention::DEFAULT,
            Some(raw) => {
                let or_default = |at: &str, text: &Option<String>, default: TimeDelta| {
                    text.as_deref()
                        .map_or(Ok(default), |text| duration(at, text))
                };
                Retention {
                    contacts: duration("retention.contacts", &raw.contacts)?,
                    photos: or_default("retention.photos", &raw.photos, Retention::DEFAULT.photos)?,
                    rejected: or_default(
                        "retention.rejected",
                        &raw.rejected,
                        Retention::DEFAULT.rejected,
                    )?,
                    tracking_codes: or_default(
                        "retention.tracking_codes",
                        &raw.tracking_codes,
                        Retention::DEFAULT.tracking_codes,
                    )?,
                }
            }
        };

        let assisting = match self.assisting {
            None => Assisting::NONE,
            Some(raw) => {
                if raw.max_per_whistle > MAX_ASSISTING {
                    return Err(Error::TooLarge {
                        at: "assisting.max_per_whistle",
                        max: MAX_ASSISTING,
                    });
                }
                let part = duration("assisting.part", &raw.part)?;
                if part <= accept {
                    return Err(Error::AssistingPartTooShort { part, accept });
                }
                Assisting {
                    max_per_whistle: raw.max_per_whistle,
                    part,
                }
            }
        };

        let ledger = match self.ledger {
            None => None,
            Some(raw) => Some(LedgerRules {
                approver: match raw.approver.as_str() {
                    "district" => Level::District,
                    "city" => Level::City,
                    other => return Err(Error::LedgerApprover(other.to_owned())),
                },
                longest_review: duration("ledger.longest_review", &raw.longest_review)?,
                return_resolve: term("ledger.return_resolve", &raw.return_resolve)?,
                rates: match raw.rates.as_str() {
                    "excluded" => LedgerRates::Excluded,
                    "unresolved" => LedgerRates::Unresolved,
                    other => return Err(Error::LedgerRates(other.to_owned())),
                },
            }),
        };

        let duplicates = self.duplicates.ok_or_else(|| missing("[duplicates]"))?;
        if duplicates.radius_m < 1 {
            return Err(Error::TooSmall {
                at: "duplicates.radius_m",
                min: 1,
            });
        }
        let duplicates = Duplicates {
            radius_m: duplicates.radius_m,
            window: duration("duplicates.window", &duplicates.window)?,
        };

        let clusters = self.clusters.ok_or_else(|| missing("[clusters]"))?;
        if clusters.threshold < 2 {
            return Err(Error::TooSmall {
                at: "clusters.threshold",
                min: 2,
            });
        }
        let clusters = Clusters {
            threshold: clusters.threshold,
            window: duration("clusters.window", &clusters.window)?,
        };

        let mut sla = BTreeMap::new();
        for (name, raw) in self.sla.unwrap_or_default() {
            let class = SlaClass::from_name(&name).ok_or_else(|| Error::UnknownSla {
                at: format!("[sla.{name}]"),
                class: name.clone(),
            })?;
            let resolve = term(&format!("sla.{name}.resolve"), &raw.resolve)?;
            sla.insert(
                class,
                Sla {
                    name_zh: raw.name_zh,
                    resolve,
                },
            );
        }
        if let Some(class) = SlaClass::ALL.into_iter().find(|c| !sla.contains_key(c)) {
            return Err(Error::Missing(format!("[sla.{}]", class.as_str())));
        }

        let groups = self.group.unwrap_or_default();
        let mut group_codes = HashSet::new();
        for group in &groups {
            if !is_slug(&group.code) {
                return Err(Error::GroupCode(group.code.clone()));
            }
            if !group_codes.insert(group.code.as_str()) {
                return Err(Error::DuplicateGroup(group.code.clone()));
            }
        }

        let raw_categories = self.category.unwrap_or_default();
        if raw_categories.is_empty() {
            return Err(missing("[[category]]"));
        }
        let mut categories = Vec::with_capacity(raw_categories.len());
        let mut by_code = HashMap::with_capacity(raw_categories.len());
        for raw in raw_categories {
            let category = raw.build(&group_codes, &sla, duration)?;
            // A whistle starts a fresh street window; if it is not longer than the report-in
            // deadline, the incident leaves the street just as the departments are due.
            if let Some(&street) = category.windows.get(&Level::Street) {
                if street <= accept {
                    return Err(Error::StreetWindowTooShort {
                        category: category.code.to_string(),
                        window: street,
                        accept,
                    });
                }
            }
            if by_code
                .insert(category.code.to_string(), categories.len())
                .is_some()
            {
                return Err(Error::DuplicateCategory(category.code.to_string()));
            }
            categories.push(category);
        }

        let volunteers = match self.volunteers {
            None => VolunteerRules::DEFAULT,
            Some(raw) => {
                let mut allowed = BTreeSet::new();
                for code in raw.categories {
                    let refuse = |why: &str| Error::VolunteerCategory {
                        category: code.clone(),
                        why: why.to_owned(),
                    };
                    let Some(&index) = by_code.get(&code) else {
                        return Err(refuse("not a category of this policy"));
                    };
                    let category = &categories[index];
                    if category.sla == SlaClass::Emergency {
                        return Err(refuse("an emergency is the departments' to handle"));
                    }
                    if category.first_level > Level::Community {
                        return Err(refuse(
                            "first handled above the community, so a department's duty",
                        ));
                    }
                    if !allowed.insert(code.clone()) {
                        return Err(refuse("listed twice"));
                    }
                }
                if raw.points_per_hour < 1 {
                    return Err(Error::TooSmall {
                        at: "volunteers.points_per_hour",
                        min: 1,
                    });
                }
                if !(1..=24).contains(&raw.max_hours) {
                    return Err(Error::TooSmall {
                        at: "volunteers.max_hours (1 to 24)",
                        min: 1,
                    });
                }
                VolunteerRules {
                    categories: allowed,
                    claim_window: duration("volunteers.claim_window", &raw.claim_window)?,
                    points_per_hour: raw.points_per_hour,
                    max_minutes: raw.max_hours * 60,
                    evaluation: match raw.evaluation {
                        None => EvaluationRules::DEFAULT,
                        Some(raw) => raw.check()?,
                    },
                }
            }
        };

        Ok(Policy {
            version: self.version,
            name,
            time_divisor: divisor.unsigned_abs(),
            weights,
            min_sample,
            accept,
            follow_up,
            reopen_resolve,
            extensions,
            retention,
            assisting,
            ledger,
            volunteers,
            duplicates,
            clusters,
            sla,
            groups,
            categories,
            by_code,
        })
    }
}

impl RawCategory {
    fn build(
        self,
        groups: &HashSet<&str>,
        sla: &BTreeMap<SlaClass, Sla>,
        duration: impl Fn(&str, &str) -> Result<TimeDelta, Error>,
    ) -> Result<Category, Error> {
        let name = self.code;
        let group = match name.split_once('.') {
            Some((group, item)) if is_slug(group) && is_slug(item) => group,
            _ => {
                let why =
                    "code must be {group}.{item} in lowercase letters, digits and _".to_owned();
                return Err(Error::CategoryCode { code: name, why });
            }
        };
        if !groups.contains(group) {
            let why = format!("group {group:?} is not declared");
            return Err(Error::CategoryCode { code: name, why });
        }
        let code: CategoryCode = match name.parse() {
            Ok(code) => code,
            Err(e) => {
                return Err(Error::CategoryCode {
                    why: e.to_string(),
                    code: name,
                })
            }
        };

        let class = SlaClass::from_name(&self.sla).ok_or_else(|| Error::UnknownSla {
            at: format!("category {name}"),
            class: self.sla.clone(),
        })?;
        let parse_level = |level: &str| {
            level.parse::<Level>().map_err(|_| Error::UnknownLevel {
                category: name.clone(),
                level: level.to_owned(),
            })
        };
        let first_level = parse_level(&self.first_level)?;

        let required = first_level..=Level::District;
        let mut windows = BTreeMap::new();
        for (key, text) in &self.windows {
            let level = parse_level(key)?;
            if !required.contains(&level) {
                return Err(Error::StrayWindow {
                    category: name,
                    level,
                });
            }
            windows.insert(
                level,
                duration(&format!("category {name}: windows.{key}"), text)?,
            );
        }
        if let Some(level) = Level::ALL
            .into_iter()
            .find(|l| required.contains(l) && !windows.contains_key(l))
        {
            return Err(Error::MissingWindow {
                category: name,
                level,
            });
        }
        let total: TimeDelta = windows.values().sum();
        let resolve = sla[&class].resolve;
        if total > resolve.at_least() {
            return Err(Error::WindowsExceedSla {
                category: name,
                total,
                class,
                resolve,
            });
        }

        if self.summon.is_empty() {
            return Err(Error::EmptySummon(name));
        }
        let mut summon = Vec::with_capacity(self.summon.len());
        for slug in &self.summon {
            let kind = DepartmentKind::from_slug(slug).ok_or_else(|| Error::UnknownDepartment {
                category: name.clone(),
                kind: slug.clone(),
            })?;
            if summon.contains(&kind) {
                return Err(Error::RepeatedSummon {
                    category: name,
                    kind,
                });
            }
            summon.push(kind);
        }

        Ok(Category {
            group: group.to_owned(),
            code,
            name_zh: self.name_zh,
            name_en: self.name_en,
            sla: class,
            first_level,
            windows,
            summon,
            photo_required: self.photo_required,
            after_photo_required: self.after_photo_required,
        })
    }
}

fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Parses an integer and a unit: `s`, `m`, `h` or `d` (`"90s"`, `"30m"`, `"2h"`, `"7d"`).
fn parse_duration(text: &str) -> Result<TimeDelta, &'static str> {
    const FORMAT: &str = "expected an integer and a unit s, m, h or d, e.g. \"30m\"";
    if text.ends_with("wd") {
        return Err("working days (wd) are for resolve deadlines only: sla.*.resolve, deadlines.reopen_resolve and ledger.return_resolve");
    }
    let unit_seconds = match text.chars().last() {
        Some('s') => 1,
        Some('m') => 60,
        Some('h') => 3_600,
        Some('d') => 86_400,
        _ => return Err(FORMAT),
    };
    let number: i64 = text[..text.len() - 1].parse().map_err(|_| FORMAT)?;
    if number <= 0 {
        return Err("must be positive");
    }
    number
        .checked_mul(unit_seconds)
        .and_then(TimeDelta::try_seconds)
        .ok_or("too long")
}

/// The inverse of [`parse_duration`] for messages, in the largest unit that fits exactly.
fn format_duration(d: TimeDelta) -> String {
    let ms = d.num_milliseconds();
    [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ]
    .into_iter()
    .find(|&(_, size)| ms % size == 0)
    .map_or_else(
        || format!("{ms}ms"),
        |(unit, size)| format!("{}{unit}", ms / size),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A complete policy with one group and one category, for the error cases to break.
    const MINIMAL: &str = r#"
version = "test-1"
name = "test"

[weights]
response = 0.30
resolution = 0.35
satisfaction = 0.35

[deadlines]
accept = "30m"
follow_up = "72h"

[duplicates]
radius_m = 100
window = "24h"

[clusters]
threshold = 5
window = "30m"

[sla.emergency]
name_zh = "紧急"
resolve = "2h"
[sla.utilities]
name_zh = "水电气热"
resolve = "24h"
[sla.general]
name_zh = "一般"
resolve = "7d"
[sla.complex]
name_zh = "疑难"
resolve = "15d"

[[group]]
code = "heating"
name_zh = "供热"
name_en = "Heating"

[[category]]
code = "heating.no_heat"
name_zh = "室内温度不达标/停暖"
name_en = "No heating"
sla = "utilities"
first_level = "community"
windows = { community = "4h", street = "8h", district = "12h" }
summon = ["heating", "housing_construction"]
"#;

    fn parse(text: &str) -> Result<Policy, Error> {
        Policy::parse(text, |_| None)
    }

    /// Parses MINIMAL with `from` replaced by `to`, expecting an error.
    #[test]
    fn a_street_window_must_outlast_the_report_in_deadline() {
        let error = error_with("street = \"8h\"", "street = \"30m\"");
        assert!(
            matches!(&error, Error::StreetWindowTooShort { category, .. } if category == "heating.no_heat"),
            "{error}"
        );
        assert!(
            error
                .to_string()
                .contains("longer than the report-in deadline"),
            "{error}"
        );
    }

    fn error_with(from: &str, to: &str) -> Error {
        assert!(MINIMAL.contains(from), "{from:?} is not in MINIMAL");
        parse(&MINIMAL.replacen(from, to, 1)).expect_err("policy should be refused")
    }

    fn ordos() -> Policy {
        builtin("ordos").expect("ordos is builtin")
    }

    /// Every duration of a policy, in a fixed order.
    fn durations(policy: &Policy) -> Vec<TimeDelta> {
        let mut all = vec![policy.accept_deadline(), policy.follow_up_window()];
        all.extend(policy.reopen_resolve.map(Term::at_least));
        all.extend([policy.duplicates().window, policy.clusters().window]);
        all.extend(SlaClass::ALL.map(|c| policy.sla(c).resolve.at_least()));
        all.extend(
            policy
                .categories()
                .flat_map(|c| c.windows.values().copied()),
        );
        all
    }

    #[test]
    fn minimal_policy_parses() {
        let policy = parse(MINIMAL).unwrap();
        let category = policy.category("heating.no_heat").unwrap();
        assert_eq!(category.group, "heating");
        assert_eq!(
            category.summon,
            [DepartmentKind::Heating, DepartmentKind::HousingConstruction]
        );
        assert_eq!(
            policy.resolve_deadline(category),
            Term::Elapsed(TimeDelta::hours(24))
        );
        assert_eq!(
            policy.reopen_deadline(category),
            Term::Elapsed(TimeDelta::hours(24)),
            "defaults to the SLA"
        );
        assert_eq!(
            policy.window(category, Level::Street),
            Some(TimeDelta::hours(8))
        );
        assert_eq!(policy.window(category, Level::Grid), None);
        assert_eq!(policy.time_divisor(), 1);
    }

    #[test]
    fn builtin_policies_load() {
        for name in BUILTIN {
            assert!(builtin(name).is_some(), "{name}");
        }
        assert!(builtin("beijing").is_none());
        let ordos = ordos();
        assert_eq!(ordos.version(), "ordos-2026.1");
        assert_eq!(ordos.accept_deadline(), TimeDelta::minutes(30));
        assert_eq!(ordos.follow_up_window(), TimeDelta::hours(72));
        assert_eq!(
            ordos.duplicates(),
            Duplicates {
                radius_m: 100,
                window: TimeDelta::hours(24)
            }
        );
        assert_eq!(
            ordos.clusters(),
            Clusters {
                threshold: 5,
                window: TimeDelta::minutes(30)
            }
        );
        assert!((ordos.weights().composite(1.0, 1.0, 1.0) - 1.0).abs() < 1e-9);
        let no_heat = ordos.category("heating.no_heat").unwrap();
        assert_eq!(
            (no_heat.sla, no_heat.first_level),
            (SlaClass::Utilities, Level::Community)
        );
        let gas_leak = ordos.category("gas.leak").unwrap();
        assert_eq!(
            ordos.resolve_deadline(gas_leak),
            Term::Elapsed(TimeDelta::hours(2))
        );
        assert_eq!(
            ordos.reopen_deadline(gas_leak),
            Term::Elapsed(TimeDelta::days(3))
        );
        // The 7-day and 15-day classes run in working days; the hour classes on the clock.
        let class = |c| ordos.sla(c).resolve;
        assert_eq!(class(SlaClass::General), Term::WorkingDays(7));
        assert_eq!(class(SlaClass::Complex), Term::WorkingDays(15));
        assert_eq!(
            class(SlaClass::Utilities),
            Term::Elapsed(TimeDelta::hours(24))
        );
        assert_eq!(
            ordos.extensions(),
            Extensions {
                answer: TimeDelta::hours(4),
                max_per_incident: 2,
                longest: TimeDelta::days(7),
                escalate_unanswered: true,
            }
        );
    }

    #[test]
    fn rankings_min_sample() {
        assert_eq!(
            parse(MINIMAL).unwrap().scoring().min_sample,
            DEFAULT_MIN_SAMPLE
        );
        let set = MINIMAL.replacen(
            "[deadlines]",
            "[rankings]\nmin_sample = 12\n\n[deadlines]",
            1,
        );
        assert_eq!(parse(&set).unwrap().scoring().min_sample, 12);
        let zero = MINIMAL.replacen(
            "[deadlines]",
            "[rankings]\nmin_sample = 0\n\n[deadlines]",
            1,
        );
        assert_eq!(
            parse(&zero).unwrap_err().to_string(),
            "rankings.min_sample: must be at least 1"
        );
        assert_eq!(ordos().scoring().min_sample, 20);
    }

    #[test]
    fn assisting_is_optional_scaled_and_checked() {
        assert_eq!(parse(MINIMAL).unwrap().assisting(), Assisting::NONE);
        assert_eq!(
            ordos().assisting(),
            Assisting {
                max_per_whistle: 3,
                part: TimeDelta::hours(24),
            }
        );
        let demo = builtin("ordos-demo").unwrap();
        assert_eq!(demo.assisting().part, TimeDelta::minutes(24));
        let with = |table: &str| {
            parse(&MINIMAL.replacen(
                "[duplicates]",
                &format!("[assisting]\n{table}\n\n[duplicates]"),
                1,
            ))
        };
        assert_eq!(
            with("max_per_whistle = 2\npart = \"2h\"")
                .unwrap()
                .assisting(),
            Assisting {
                max_per_whistle: 2,
                part: TimeDelta::hours(2),
            }
        );
        assert_eq!(
            with("max_per_whistle = 11\npart = \"2h\"")
                .unwrap_err()
                .to_string(),
            "assisting.max_per_whistle: must be at most 10"
        );
        assert_eq!(
            with("max_per_whistle = 2\npart = \"30m\"")
                .unwrap_err()
                .to_string(),
            "assisting.part 30m: must be longer than the report-in deadline 30m; an assistant reports in before it submits"
        );
        assert!(matches!(
            with("max_per_whistle = 2\npart = \"soon\""),
            Err(Error::Duration { at, .. }) if at == "assisting.part"
        ));
        assert!(matches!(
            with("max_per_whistle = 2"),
            Err(Error::Toml { .. })
        ));
    }

    #[test]
    fn ledger_rules() {
        assert_eq!(parse(MINIMAL).unwrap().ledger(), None);
        let table = |approver: &str, review: &str, back: &str, rates: &str| {
            MINIMAL.replacen(
                "[duplicates]",
                &format!(
                    "[ledger]\napprover = \"{approver}\"\nlongest_review = \"{review}\"\n\
                     return_resolve = \"{back}\"\nrates = \"{rates}\"\n\n[duplicates]"
                ),
                1,
            )
        };
        let rules = parse(&table("city", "30d", "5wd", "unresolved"))
            .unwrap()
            .ledger()
            .unwrap();
        assert_eq!(
            rules,
            LedgerRules {
                approver: Level::City,
                longest_review: TimeDelta::days(30),
                return_resolve: Term::WorkingDays(5),
                rates: LedgerRates::Unresolved,
            }
        );
        assert_eq!(rules.approver_for(Level::Grid), Level::City);
        let refused = |text: String| parse(&text).unwrap_err().to_string();
        assert_eq!(
            refused(table("street", "30d", "5wd", "excluded")),
            "ledger.approver: \"street\"; expected district or city (the levels that approve 挂账)"
        );
        assert_eq!(
            refused(table("district", "30d", "5wd", "ignored")),
            "ledger.rates: \"ignored\"; expected excluded or unresolved"
        );
        assert!(refused(table("district", "0d", "5wd", "excluded"))
            .starts_with("ledger.longest_review: invalid duration \"0d\": must be positive"));
        assert!(refused(table("district", "30wd", "5wd", "excluded"))
            .starts_with("ledger.longest_review: invalid duration \"30wd\""));

        let ordos = ordos().ledger().unwrap();
        assert_eq!(ordos.approver, Level::District);
        assert_eq!(ordos.rates, LedgerRates::Excluded);
        assert_eq!(ordos.return_resolve, Term::WorkingDays(15));
        assert_eq!(ordos.approver_for(Level::Street), Level::District);
        assert_eq!(ordos.approver_for(Level::Community), Level::District);
        assert_eq!(ordos.approver_for(Level::District), Level::City);
        assert_eq!(ordos.approver_for(Level::City), Level::City);
        let demo = builtin("ordos-demo").unwrap().ledger().unwrap();
        assert_eq!(demo.longest_review, TimeDelta::days(90) / 60);
        assert_eq!(demo.return_resolve, Term::Elapsed(TimeDelta::days(15) / 60));
    }

    #[test]
    fn working_day_terms() {
        let policy = parse(&MINIMAL.replacen("resolve = \"7d\"", "resolve = \"5wd\"", 1)).unwrap();
        assert_eq!(policy.sla(SlaClass::General).resolve, Term::WorkingDays(5));
        let reopen = MINIMAL.replacen(
            "follow_up = \"72h\"",
            "follow_up = \"72h\"\nreopen_resolve = \"3wd\"",
            1,
        );
        assert_eq!(
            parse(&reopen).unwrap().reopen_resolve,
            Some(Term::WorkingDays(3))
        );
        // The category's windows (here 2d in all) must fit in the working days' calendar days.
        let long_windows = MINIMAL
            .replacen("resolve = \"24h\"", "resolve = \"1wd\"", 1)
            .replacen("district = \"12h\"", "district = \"2d\"", 1);
        assert_eq!(
            parse(&long_windows).unwrap_err().to_string(),
            "category heating.no_heat: windows add up to 60h, more than the utilities resolve deadline 1wd"
        );
        assert_eq!(
            error_with("resolve = \"7d\"", "resolve = \"0wd\"").to_string(),
            "sla.general.resolve: invalid duration \"0wd\": must be positive"
        );
        assert!(matches!(
            error_with("resolve = \"7d\"", "resolve = \"sevenwd\""),
            Error::Duration { .. }
        ));
        assert_eq!(
            error_with("accept = \"30m\"", "accept = \"1wd\"").to_string(),
            "deadlines.accept: invalid duration \"1wd\": working days (wd) are for resolve deadlines only: sla.*.resolve, deadlines.reopen_resolve and ledger.return_resolve"
        );
        // A divided demo clock has no calendar: the days are divided like any other duration.
        let divided = parse(&format!(
            "time_divisor = 60\n{}",
            MINIMAL.replacen("resolve = \"7d\"", "resolve = \"5wd\"", 1)
        ))
        .unwrap();
        assert_eq!(
            divided.sla(SlaClass::General).resolve,
            Term::Elapsed(TimeDelta::hours(2))
        );
    }

    #[test]
    fn extensions_are_optional_scaled_and_checked() {
        let demo = builtin("ordos-demo").unwrap();
        assert_eq!(demo.extensions().answer, TimeDelta::minutes(4));
        assert_eq!(demo.extensions().longest, TimeDelta::hours(168) / 60);
        let without = ORDOS.replace("[extensions]", "[ignored_extensions]");
        let base = |_: &str| None;
        assert!(
            Policy::parse(&without, base).is_err(),
            "an unknown table is refused"
        );
        let start = ORDOS.find("[extensions]").unwrap();
        let end = start + ORDOS[start..].find("\n\n").unwrap();
        let without = format!("{}{}", &ORDOS[..start], &ORDOS[end..]);
        assert_eq!(
            Policy::parse(&without, base).unwrap().extensions(),
            Extensions::NONE
        );
        let bad = ORDOS.replace("answer = \"4h\"", "answer = \"0h\"");
        assert!(matches!(
            Policy::parse(&bad, base),
            Err(Error::Duration { at, .. }) if at == "extensions.answer"
        ));
    }

    #[test]
    fn retention_is_optional_scaled_and_checked() {
        let base = |_: &str| None;
        let ordos_kept = ordos().retention();
        assert_eq!(ordos_kept.contacts, TimeDelta::days(180));
        assert_eq!(ordos_kept.photos, TimeDelta::days(365));
        assert_eq!(ordos_kept.rejected, TimeDelta::days(90));
        let demo = builtin("ordos-demo").unwrap().retention();
        assert_eq!(demo.contacts, TimeDelta::days(3));
        assert_eq!(demo.photos, TimeDelta::days(365) / 60);
        assert_eq!(demo.rejected, TimeDelta::days(90) / 60);
        let start = ORDOS.find("[retention]").unwrap();
        let end = start + ORDOS[start..].find("\n\n").unwrap();
        let without = format!("{}{}", &ORDOS[..start], &ORDOS[end..]);
        assert_eq!(
            Policy::parse(&without, base).unwrap().retention(),
            Retention::DEFAULT
        );
        // A period left out of the table keeps its default.
        let contacts_only = ORDOS
            .replace("photos = \"365d\"\n", "")
            .replace("rejected = \"90d\"\n", "");
        assert_ne!(contacts_only, ORDOS);
        assert_eq!(
            Policy::parse(&contacts_only, base).unwrap().retention(),
            Retention::DEFAULT
        );
        for (line, at) in [
            ("contacts = \"180d\"", "retention.contacts"),
            ("photos = \"365d\"", "retention.photos"),
            ("rejected = \"90d\"", "retention.rejected"),
        ] {
            for bad_value in ["\"-1d\"", "\"1y\"", "\"\""] {
                let key = line.split(" = ").next().unwrap();
                let bad = ORDOS.replace(line, &format!("{key} = {bad_value}"));
                assert!(
                    matches!(
                        Policy::parse(&bad, base),
                        Err(Error::Duration { at: ref got, .. }) if got == at
                    ),
                    "{key} = {bad_value}"
                );
            }
        }
        let unknown = ORDOS.replace("rejected = \"90d\"", "rejected = \"90d\"\nvideos = \"1d\"");
        assert!(Policy::parse(&unknown, base).is_err());
    }

    #[test]
    fn ordos_catalogue_is_large_and_grouped() {
        let ordos = ordos();
        assert!(ordos.categories().count() >= 25);
        assert!(ordos.groups().len() >= 12);
        for group in ordos.groups() {
            assert!(
                ordos.categories().any(|c| c.group == group.code),
                "group {} is empty",
                group.code
            );
        }
        let levels: HashSet<Level> = ordos.categories().map(|c| c.first_level).collect();
        let classes: HashSet<SlaClass> = ordos.categories().map(|c| c.sla).collect();
        assert!(levels.len() >= 4, "{levels:?}");
        assert_eq!(classes.len(), 4);
        for category in ordos.categories() {
            assert!(
                (1..=3).contains(&category.summon.len()),
                "{}",
                category.code
            );
        }
    }

    #[test]
    fn every_category_has_a_window_for_each_level_up_to_the_district() {
        for policy in BUILTIN.map(|name| builtin(name).unwrap()) {
            for category in policy.categories() {
                for level in Level::ALL {
                    let expected = (category.first_level..=Level::District).contains(&level);
                    assert_eq!(
                        policy.window(category, level).is_some(),
                        expected,
                        "{} at {level:?}",
                        category.code
                    );
                }
            }
        }
    }

    #[test]
    fn demo_divides_the_ordos_durations_by_60() {
        let (ordos, demo) = (ordos(), builtin("ordos-demo").unwrap());
        assert_eq!(demo.version(), "ordos-2026.1-demo");
        assert_eq!(demo.time_divisor(), 60);
        assert_eq!(demo.accept_deadline(), TimeDelta::seconds(30));
        assert_eq!(
            demo.resolve_deadline(demo.category("heating.no_heat").unwrap()),
            Term::Elapsed(TimeDelta::minutes(24))
        );
        // The demo shortens the follow-up window (6 h before the division) so that unverified
        // closes show within minutes; every other duration is the Ordos one divided by 60.
        assert_eq!(demo.follow_up_window(), TimeDelta::minutes(6));
        let mut expected: Vec<TimeDelta> = durations(&ordos).into_iter().map(|d| d / 60).collect();
        expected[1] = demo.follow_up_window();
        assert_eq!(durations(&demo), expected);
        let codes = |p: &Policy| p.categories().map(|c| c.code.clone()).collect::<Vec<_>>();
        assert_eq!(codes(&demo), codes(&ordos));
        assert_eq!(demo.weights(), ordos.weights());
    }

    #[test]
    fn durations_take_an_integer_and_a_unit() {
        assert_eq!(parse_duration("90s"), Ok(TimeDelta::seconds(90)));
        assert_eq!(parse_duration("30m"), Ok(TimeDelta::minutes(30)));
        assert_eq!(parse_duration("2h"), Ok(TimeDelta::hours(2)));
        assert_eq!(parse_duration("7d"), Ok(TimeDelta::days(7)));
        for bad in [
            "",
            "30",
            "m",
            "1.5h",
            "2 h",
            "2w",
            "二h",
            "99999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert_eq!(format_duration(TimeDelta::hours(36)), "36h");
        assert_eq!(format_duration(TimeDelta::milliseconds(1500)), "1500ms");
    }

    #[test]
    fn toml_syntax_errors_give_the_line() {
        let error = error_with("name = \"test\"", "name = ");
        assert!(matches!(error, Error::Toml { .. }), "{error}");
        assert!(error.to_string().contains("line 3"), "{error}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let error = error_with(
            "sla = \"utilities\"",
            "sla = \"utilities\"\ncolour = \"red\"",
        );
        assert!(matches!(error, Error::Toml { .. }), "{error}");
        assert!(
            error.to_string().contains("unknown field `colour`"),
            "{error}"
        );
        let error = error_with("[weights]", "[weight]");
        assert!(
            error.to_string().contains("unknown field `weight`"),
            "{error}"
        );
    }

    #[test]
    fn duplicate_codes_are_refused() {
        let group = "[[group]]\ncode = \"heating\"\nname_zh = \"供热\"\nname_en = \"Heating\"\n";
        assert_eq!(
            error_with("[[category]]", &format!("{group}\n[[category]]")),
            Error::DuplicateGroup("heating".into())
        );
        let category = &MINIMAL[MINIMAL.find("[[category]]").unwrap()..];
        let error = parse(&format!("{MINIMAL}\n{category}")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "category heating.no_heat: code appears twice"
        );
    }

    #[test]
    fn category_codes_must_be_group_dot_item_of_a_declared_group() {
        let error = error_with("\"heating.no_heat\"", "\"water.outage\"");
        assert_eq!(
            error.to_string(),
            "category water.outage: group \"water\" is not declared"
        );
        for bad in ["heating", "heating.", "heating.no.heat", "heating.No_Heat"] {
            let error = error_with("\"heating.no_heat\"", &format!("\"{bad}\""));
            assert!(
                matches!(&error, Error::CategoryCode { code, .. } if code == bad),
                "{error}"
            );
        }
        let error = error_with("code = \"heating\"", "code = \"Heating\"");
        assert_eq!(error, Error::GroupCode("Heating".into()));
    }

    #[test]
    fn photo_requirements_are_off_unless_a_category_sets_them() {
        let policy = parse(MINIMAL).unwrap();
        let category = policy.category("heating.no_heat").unwrap();
        assert!(!category.photo_required && !category.after_photo_required);
        let summon = "summon = [\"heating\", \"housing_construction\"]";
        let policy = parse(&MINIMAL.replacen(
            summon,
            &format!("{summon}\nphoto_required = true\nafter_photo_required = true"),
            1,
        ))
        .unwrap();
        let category = policy.category("heating.no_heat").unwrap();
        assert!(category.photo_required && category.after_photo_required);
        let error = error_with(summon, &format!("{summon}\nphoto_required = \"yes\""));
        assert!(error.to_string().contains("photo_required"), "{error}");
    }

    #[test]
    fn summon_must_name_known_department_kinds_once() {
        let error = error_with("\"heating\", \"housing", "\"heatin\", \"housing");
        assert_eq!(
            error.to_string(),
            "category heating.no_heat: unknown department kind \"heatin\""
        );
        let error = error_with(
            "summon = [\"heating\", \"housing_construction\"]",
            "summon = []",
        );
        assert_eq!(error, Error::EmptySummon("heating.no_heat".into()));
        let error = error_with("\"housing_construction\"]", "\"heating\"]");
        assert!(
            error.to_string().contains("\"heating\" summoned twice"),
            "{error}"
        );
    }

    #[test]
    fn sla_classes_must_be_known_and_defined() {
        let error = error_with("sla = \"utilities\"", "sla = \"utility\"");
        assert_eq!(
            error.to_string(),
            "category heating.no_heat: unknown SLA class \"utility\"; expected emergency, utilities, general or complex"
        );
        let error = error_with("[sla.complex]", "[sla.hard]");
        assert!(
            matches!(&error, Error::UnknownSla { at, class } if at == "[sla.hard]" && class == "hard"),
            "{error}"
        );
        let error =
            parse(&MINIMAL.replace("[sla.complex]\nname_zh = \"疑难\"\nresolve = \"15d\"", ""))
                .unwrap_err();
        assert_eq!(error, Error::Missing("[sla.complex]".into()));
    }

    #[test]
    fn windows_must_cover_first_level_to_district() {
        let error = error_with(", district = \"12h\"", "");
        assert_eq!(
            error.to_string(),
            "category heating.no_heat: no window for level district; every level from first_level up to district needs one"
        );
        let error = error_with("{ community", "{ grid = \"1h\", community");
        assert!(
            matches!(
                error,
                Error::StrayWindow {
                    level: Level::Grid,
                    ..
                }
            ),
            "{error}"
        );
        let error = error_with("{ community", "{ city = \"1h\", community");
        assert!(
            matches!(
                error,
                Error::StrayWindow {
                    level: Level::City,
                    ..
                }
            ),
            "{error}"
        );
        let error = error_with("first_level = \"community\"", "first_level = \"village\"");
        assert!(
            matches!(&error, Error::UnknownLevel { level, .. } if level == "village"),
            "{error}"
        );
        let error = error_with("district = \"12h\"", "district = \"13h\"");
        assert_eq!(
            error.to_string(),
            "category heating.no_heat: windows add up to 25h, more than the utilities resolve deadline 1d"
        );
    }

    #[test]
    fn city_first_level_needs_no_windows() {
        let text = MINIMAL
            .replace("first_level = \"community\"", "first_level = \"city\"")
            .replace(
                "windows = { community = \"4h\", street = \"8h\", district = \"12h\" }\n",
                "",
            );
        let policy = parse(&text).unwrap();
        assert!(policy
            .category("heating.no_heat")
            .unwrap()
            .windows
            .is_empty());
    }

    #[test]
    fn durations_must_be_positive_and_well_formed() {
        let error = error_with("street = \"8h\"", "street = \"0h\"");
        assert_eq!(
            error.to_string(),
            "category heating.no_heat: windows.street: invalid duration \"0h\": must be positive"
        );
        let error = error_with("accept = \"30m\"", "accept = \"-30m\"");
        assert!(
            matches!(&error, Error::Duration { at, why: "must be positive", .. } if at == "deadlines.accept")
        );
        let error = error_with("resolve = \"7d\"", "resolve = \"1w\"");
        assert!(
            matches!(&error, Error::Duration { at, .. } if at == "sla.general.resolve"),
            "{error}"
        );
    }

    #[test]
    fn weights_must_sum_to_one() {
        let error = error_with("satisfaction = 0.35", "satisfaction = 0.30");
        assert!(matches!(error, Error::Weights(_)), "{error}");
        assert!(
            error.to_string().contains("satisfaction 0.3 must"),
            "{error}"
        );
        let error = error_with(
            "response = 0.30\nresolution = 0.35",
            "response = -0.30\nresolution = 0.95",
        );
        assert!(matches!(error, Error::Weights(_)), "{error}");
    }

    #[test]
    fn counts_have_a_minimum() {
        assert_eq!(
            error_with("threshold = 5", "threshold = 1"),
            Error::TooSmall {
                at: "clusters.threshold",
                min: 2
            }
        );
        assert_eq!(
            error_with("radius_m = 100", "radius_m = 0"),
            Error::TooSmall {
                at: "duplicates.radius_m",
                min: 1
            }
        );
    }

    #[test]
    fn time_divisor_divides_every_duration_and_must_be_at_least_one() {
        let policy =
            parse(&MINIMAL.replace("name = \"test\"", "name = \"test\"\ntime_divisor = 60"))
                .unwrap();
        assert_eq!(policy.accept_deadline(), TimeDelta::seconds(30));
        let error = error_with("name = \"test\"", "name = \"test\"\ntime_divisor = 0");
        assert_eq!(
            error.to_string(),
            "time_divisor 0: must be between 1 and 86400"
        );
    }

    #[test]
    fn a_base_supplies_what_the_file_does_not_say() {
        let overlay = "base = \"minimal.toml\"\nversion = \"test-1-fast\"\ntime_divisor = 60\n";
        let policy = Policy::parse(overlay, |name| {
            (name == "minimal.toml").then(|| MINIMAL.to_owned())
        })
        .unwrap();
        assert_eq!((policy.version(), policy.name()), ("test-1-fast", "test"));
        assert_eq!(
            policy.window(policy.category("heating.no_heat").unwrap(), Level::Street),
            Some(TimeDelta::minutes(8))
        );

        let error = Policy::parse(overlay, |_| None).unwrap_err();
        assert_eq!(error.to_string(), "base \"minimal.toml\" not found");

        let nested = format!("base = \"other.toml\"\n{MINIMAL}");
        let error = Policy::parse(overlay, |_| Some(nested.clone())).unwrap_err();
        assert_eq!(
            error,
            Error::NestedBase {
                base: "minimal.toml".into(),
                nested: "other.toml".into()
            }
        );

        let error = Policy::parse(overlay, |_| Some("version = ".into())).unwrap_err();
        assert!(
            matches!(&error, Error::Toml { file, .. } if file == "minimal.toml"),
            "{error}"
        );
    }

    #[test]
    fn missing_sections_are_named() {
        let error = parse("version = \"v\"\nname = \"n\"\n").unwrap_err();
        assert_eq!(error, Error::Missing("[weights]".into()));
        let error = error_with("version = \"test-1\"", "");
        assert!(
            error.to_string().contains("missing field `version`"),
            "{error}"
        );
    }
}
