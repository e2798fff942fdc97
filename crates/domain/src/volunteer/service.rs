//! The service ledger's arithmetic: points for confirmed time, and the community's yearly
//! evaluation of each unit whose members registered with it (双报到 考评).

use serde::{Deserialize, Serialize};

use crate::policy::{EvaluationRules, GradeBar, VolunteerRules};

/// Points for `minutes` of confirmed work: the policy's points per hour, pro rata, rounded down.
pub fn points_for(minutes: u32, rules: &VolunteerRules) -> u32 {
    (u64::from(minutes) * u64::from(rules.points_per_hour) / 60) as u32
}

/// One unit's service in a year, summed from the service ledger and the registry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitService {
    /// Its members registered at any time of the year.
    pub registered: u32,
    /// Of those, the members with at least one confirmed piece of work.
    pub served: u32,
    pub confirmed: u32,
    pub minutes: u64,
    pub points: u64,
    pub satisfied: u32,
    pub basically_satisfied: u32,
    pub unsatisfied: u32,
}

/// The evaluation's grade (考评等次).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grade {
    /// 优秀.
    Excellent,
    /// 合格.
    Good,
    /// 基本合格.
    Fair,
    /// 不合格.
    Poor,
}

impl Grade {
    pub fn name_zh(self) -> &'static str {
        match self {
            Grade::Excellent => "优秀",
            Grade::Good => "合格",
            Grade::Fair => "基本合格",
            Grade::Poor => "不合格",
        }
    }
}

/// A unit's evaluation: the figures it is graded on and the grade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Members who served / registered.
    pub participation: f64,
    /// Confirmed hours per registered member.
    pub hours_per_member: f64,
    /// (satisfied + basically satisfied) / rated; `None` with nothing rated.
    pub satisfaction: Option<f64>,
    pub grade: Grade,
}

/// Grades a unit's year against the policy's bars (`[volunteers.evaluation]`,
/// [`EvaluationRules::DEFAULT`] without it): the first grade whose every figure it reaches, from
/// excellent down, counted in whole numbers. A unit with no member registered that year is not
/// graded.
pub fn evaluate(service: &UnitService, rules: &EvaluationRules) -> Option<Evaluation> {
    if service.registered == 0 {
        return None;
    }
    let registered = f64::from(service.registered);
    let served = service.served.min(service.registered);
    let participation = f64::from(served) / registered;
    let hours_per_member = service.minutes as f64 / 60.0 / registered;
    let rated = service.satisfied + service.basically_satisfied + service.unsatisfied;
    let content = service.satisfied + service.basically_satisfied;
    let satisfaction = (rated > 0).then(|| f64::from(content) / f64::from(rated));
    let reaches = |bar: &GradeBar| {
        u64::from(served) * 100 >= u64::from(service.registered) * u64::from(bar.participation_pct)
            && service.minutes
                >= u64::from(service.registered) * u64::from(bar.hours_per_member) * 60
            && bar.satisfaction_pct.is_none_or(|pct| {
                rated == 0 || u64::from(content) * 100 >= u64::from(rated) * u64::from(pct)
            })
    };
    let grade = if reaches(&rules.excellent) {
        Grade::Excellent
    } else if reaches(&rules.good) {
        Grade::Good
    } else if reaches(&rules.fair) {
        Grade::Fair
    } else {
        Grade::Poor
    };
    Some(Evaluation {
        participation,
        hours_per_member,
        satisfaction,
        grade,
    })
}
