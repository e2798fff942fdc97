//! What the simulated people decide, and how long they take: pure functions of a random number
//! generator and the deadlines they face, so the mix can be tested without a platform.

use std::time::Duration;

use chrono::TimeDelta;
use rand::Rng;
use whistle_domain::{
    policy::{Category, SlaClass},
    AreaCode, DepartmentKind, Level,
};
use whistle_proto::v1;

/// Share of incidents a level leaves alone until its window runs out (the timer escalates them).
pub const WAIT_SHARE: f64 = 0.08;
/// Share of department tasks returned (退单) instead of accepted.
pub const RETURN_SHARE: f64 = 0.08;
/// Share of department tasks accepted after the report-in deadline (so they are supervised first).
pub const LATE_SHARE: f64 = 0.15;
/// Share of department tasks disputed (派单异议) before reporting in.
pub const DISPUTE_SHARE: f64 = 0.05;
/// Share of accepted department tasks whose department proposes the case for the long-term
/// ledger (挂账) instead of resolving it in time.
pub const LEDGER_SHARE: f64 = 0.04;
/// Share of ledger proposals the approving level enters (the rest it denies).
pub const LEDGER_APPROVE_SHARE: f64 = 0.8;
/// Share of ledger reviews that keep the case in the ledger (the rest return it to handling).
pub const LEDGER_EXTEND_SHARE: f64 = 0.4;

/// Why a simulated case waits in the ledger, with its reason.
pub const LEDGER_NOTES: &[(v1::LedgerReason, &str)] = &[
    (
        v1::LedgerReason::Planning,
        "涉及道路改造规划，待规划批复后实施",
    ),
    (
        v1::LedgerReason::Funding,
        "老旧管网整体更换资金未列入本年度预算",
    ),
    (
        v1::LedgerReason::Legal,
        "产权纠纷已进入诉讼程序，待法院判决",
    ),
    (v1::LedgerReason::Other, "需跨部门协调，短期内无法解决"),
];

pub const LEDGER_DENIALS: &[&str] = &["可在时限内解决，请按期办结", "挂账理由不充分，继续办理"];

/// Share of accepted department tasks whose department asks for more time (延期申请) first.
pub const EXTEND_SHARE: f64 = 0.12;

/// Share of resolved incidents never followed up (closed unverified when the window ends).
pub const NO_FOLLOW_UP_SHARE: f64 = 0.10;
/// Share of follow-ups where the resident is unsatisfied (重办).
pub const UNSATISFIED_SHARE: f64 = 0.15;

/// Share of incidents a level resolves itself rather than escalating: the grid settles disputes,
/// communities fix some things, streets mostly whistle.
pub fn resolve_share(level: Level) -> f64 {
    match level {
        Level::Grid => 0.5,
        Level::Community => 0.35,
        Level::Street => 0.15,
        Level::District | Level::City => 1.0,
    }
}

/// How often simulate files each category: handled first by a community or street, with an
/// emergency or utilities SLA so that incidents move within minutes under the demo policy.
pub fn category_weight(category: &Category) -> u32 {
    let fast_level = matches!(category.first_level, Level::Community | Level::Street);
    match category.sla {
        SlaClass::Emergency if fast_level => 3,
        SlaClass::Utilities if fast_level && category.group == "heating" => 4,
        SlaClass::Utilities if fast_level => 2,
        _ => 0,
    }
}

/// What the handling level does with an incident it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LevelMove {
    /// 办结 by the level itself.
    Resolve,
    /// One level up; at the street, the whistle.
    Escalate,
    /// Nothing: the window runs out.
    Wait,
}

pub fn level_move(rng: &mut impl Rng, level: Level) -> LevelMove {
    if level >= Level::District {
        return LevelMove::Resolve;
    }
    if rng.random_bool(WAIT_SHARE) {
        LevelMove::Wait
    } else if rng.random_bool(resolve_share(level)) {
        LevelMove::Resolve
    } else {
        LevelMove::Escalate
    }
}

/// What a department does with a task dispatched to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiaisonMove {
    Accept {
        late: bool,
    },
    Return(v1::ReturnReason),
    /// 派单异议, proposing another department; reported in if the street rejects it.
    Dispute,
}

pub fn liaison_move(rng: &mut impl Rng) -> LiaisonMove {
    use v1::ReturnReason as R;
    let roll: f64 = rng.random();
    if roll < RETURN_SHARE {
        let reasons = [
            R::NotOurDuty,
            R::WrongArea,
            R::UnclearOwnership,
            R::OverlappingDuties,
            R::InsufficientInformation,
        ];
        LiaisonMove::Return(reasons[rng.random_range(0..reasons.len())])
    } else if roll < RETURN_SHARE + DISPUTE_SHARE {
        LiaisonMove::Dispute
    } else {
        LiaisonMove::Accept {
            late: roll < RETURN_SHARE + DISPUTE_SHARE + LATE_SHARE,
        }
    }
}

/// Share of disputes the street upholds (the rest it rejects).
pub const UPHOLD_SHARE: f64 = 0.6;

/// Share of street whistles that name one lead and one or two assisting departments (协办).
pub const ASSIST_SHARE: f64 = 0.3;
/// Share of assisting departments the street releases (免于协办) before they submit their part.
pub const RELEASE_SHARE: f64 = 0.2;

pub const ASSIST_NOTES: &[&str] = &[
    "已现场核查，协办意见：同意主办部门处置方案",
    "已配合完成管线排查，提交协办意见",
    "本部门职责范围内事项已处理完毕",
];

pub const RELEASE_NOTES: &[&str] = &[
    "经核实无需该部门参与，免于协办",
    "主办部门可独立完成，免于协办",
];

/// A whistle's lead and assistants: the category's first summoned kind leads; one or two other
/// departments of the district assist, its other summoned kinds first. Only departments the
/// dataset has (`exists`); `None` when the lead or every assistant is missing.
pub fn assisting(
    rng: &mut impl Rng,
    district: &str,
    summon: &[DepartmentKind],
    exists: impl Fn(&str) -> bool,
) -> Option<(String, Vec<String>)> {
    let code = |kind: DepartmentKind| format!("{district}-{}", kind.slug());
    let lead = code(*summon.first()?);
    if !exists(&lead) {
        return None;
    }
    let mut others: Vec<String> = summon[1..].iter().copied().map(code).collect();
    let mut rest: Vec<String> = DepartmentKind::ALL
        .into_iter()
        .map(code)
        .filter(|c| *c != lead && !others.contains(c))
        .collect();
    let wanted = rng.random_range(1..=2);
    while others.len() < wanted && !rest.is_empty() {
        others.push(rest.swap_remove(rng.random_range(0..rest.len())));
    }
    others.truncate(wanted);
    others.retain(|c| exists(c));
    (!others.is_empty()).then_some((lead, others))
}

pub const DISPUTE_REASONS: &[&str] = &[
    "该设施产权不属本部门，建议改派",
    "经现场核实属其他部门职责",
    "职责清单中此类事项归口其他部门",
];

pub const DISPUTE_REJECTIONS: &[&str] = &[
    "经核查属本部门职责，维持派单",
    "职责清单明确归口本部门，请按时报到",
];

/// How the district answers a department's extension request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtensionAnswer {
    Approve,
    Deny,
    /// Left unanswered: the answer window's timer denies it (and sends the incident up).
    Ignore,
}

pub fn extension_answer(rng: &mut impl Rng) -> ExtensionAnswer {
    let roll: f64 = rng.random();
    if roll < 0.65 {
        ExtensionAnswer::Approve
    } else if roll < 0.85 {
        ExtensionAnswer::Deny
    } else {
        ExtensionAnswer::Ignore
    }
}

pub const EXTENSION_REASONS: &[&str] = &[
    "需更换管道配件，材料到货需要时间",
    "涉及多方产权，协调会已排期",
    "施工需避开居民用热高峰，分段实施",
];

pub const EXTENSION_DENIALS: &[&str] = &["理由不充分，请按原时限办结", "可先行临时处置，按期办结"];

/// The grid worker's follow-up with the resident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowUp {
    Never,
    Verdict(v1::Satisfaction),
}

pub fn follow_up(rng: &mut impl Rng) -> FollowUp {
    let roll: f64 = rng.random();
    if roll < NO_FOLLOW_UP_SHARE {
        FollowUp::Never
    } else if roll < NO_FOLLOW_UP_SHARE + UNSATISFIED_SHARE {
        FollowUp::Verdict(v1::Satisfaction::Unsatisfied)
    } else if rng.random_bool(0.25) {
        FollowUp::Verdict(v1::Satisfaction::BasicallySatisfied)
    } else {
        FollowUp::Verdict(v1::Satisfaction::Satisfied)
    }
}

/// A delay of a random share (`lo`..`hi`) of `span`, at most `cap`; a span already gone gives a
/// short random delay of up to a tenth of `cap`.
pub fn share_of(rng: &mut impl Rng, span: TimeDelta, lo: f64, hi: f64, cap: Duration) -> Duration {
    let span = span.to_std().unwrap_or(Duration::ZERO);
    let delay = if span.is_zero() {
        cap.mul_f64(rng.random_range(0.02..0.1))
    } else {
        span.mul_f64(rng.random_range(lo..hi))
    };
    delay.min(cap)
}

/// The person who acts for `level` on an incident reported from `grid`: its grid worker, the
/// community's or street's handler, the district's or city's operator.
pub fn level_actor(grid: &AreaCode, level: Level) -> Option<String> {
    let unit = grid.at_level(level)?;
    Some(match level {
        Level::Grid => format!("gw-{unit}"),
        Level::Community | Level::Street => format!("hd-{unit}"),
        Level::District | Level::City => format!("op-{unit}"),
    })
}

/// Where the street sends a returned task: a department of the incident's district that the
/// category summons, else any of its departments, never the one that returned it nor one that
/// already has a live task (`busy`).
pub fn reassign_target(
    rng: &mut impl Rng,
    district: &str,
    summon: &[DepartmentKind],
    returned_by: &str,
    busy: &[String],
) -> Option<String> {
    let free = |kinds: &mut dyn Iterator<Item = DepartmentKind>| -> Vec<String> {
        kinds
            .map(|kind| format!("{district}-{}", kind.slug()))
            .filter(|code| code != returned_by && !busy.contains(code))
            .collect()
    };
    let mut candidates = free(&mut summon.iter().copied());
    if candidates.is_empty() {
        candidates = free(&mut DepartmentKind::ALL.into_iter());
    }
    if candidates.is_empty() {
        return None;
    }
    Some(candidates.swap_remove(rng.random_range(0..candidates.len())))
}

/// Something a person would write, picked at random.
pub fn pick<'a>(rng: &mut impl Rng, notes: &[&'a str]) -> &'a str {
    notes[rng.random_range(0..notes.len())]
}

pub const RESOLVE_NOTES: &[&str] = &[
    "已现场处置完毕，居民确认恢复正常",
    "已协调物业和维修人员处理完毕",
    "已安排专人上门处理，问题解决",
    "已联合社区网格员核实并处置",
];

pub const ESCALATE_NOTES: &[&str] = &[
    "本级无法单独解决，申请上级协调",
    "涉及多个职能部门，需联合处置",
    "超出本级职权，提请上级处理",
];

pub const WHISTLE_NOTES: &[&str] = &[
    "街道吹哨，请相关部门报到联合处置",
    "需执法和专业部门现场处置，吹哨",
    "情况紧急，召集职能部门报到",
];

pub fn return_note(reason: v1::ReturnReason) -> &'static str {
    use v1::ReturnReason as R;
    match reason {
        R::NotOurDuty => "经核实该事项不属于本部门职责范围",
        R::WrongArea => "事发地点不在本部门管辖区域",
        R::UnclearOwnership => "设施产权归属不清，请街道先行确认",
        R::OverlappingDuties => "与其他部门职责交叉，建议改派主责部门",
        R::InsufficientInformation | R::Unspecified => "上报信息不全，无法定位处置",
    }
}

pub const VERIFY_NOTES: &[&str] = &["电话回访居民", "入户回访居民", "现场回访，居民反馈如实记录"];

#[cfg(test)]
mod tests {
    use rand::{rngs::StdRng, SeedableRng};

    use super::*;

    fn rng() -> StdRng {
        StdRng::seed_from_u64(7)
    }

    #[test]
    fn shares_come_out_near_their_targets() {
        let mut rng = rng();
        let n = 20_000;
        let mut returned = 0;
        let mut late = 0;
        let mut disputed = 0;
        let mut never = 0;
        let mut unsatisfied = 0;
        for _ in 0..n {
            match liaison_move(&mut rng) {
                LiaisonMove::Return(reason) => {
                    assert_ne!(reason, v1::ReturnReason::Unspecified);
                    returned += 1;
                }
                LiaisonMove::Accept { late: true } => late += 1,
                LiaisonMove::Accept { late: false } => {}
                LiaisonMove::Dispute => disputed += 1,
            }
            match follow_up(&mut rng) {
                FollowUp::Never => never += 1,
                FollowUp::Verdict(v1::Satisfaction::Unsatisfied) => unsatisfied += 1,
                FollowUp::Verdict(_) => {}
            }
        }
        let share = |count: i32| f64::from(count) / f64::from(n);
        assert!((share(returned) - RETURN_SHARE).abs() < 0.01);
        assert!((share(late) - LATE_SHARE).abs() < 0.01);
        assert!((share(disputed) - DISPUTE_SHARE).abs() < 0.01);
        assert!((share(never) - NO_FOLLOW_UP_SHARE).abs() < 0.01);
        assert!((share(unsatisfied) - UNSATISFIED_SHARE).abs() < 0.01);
        let answers: Vec<_> = (0..1_000).map(|_| extension_answer(&mut rng)).collect();
        for expected in [
            ExtensionAnswer::Approve,
            ExtensionAnswer::Deny,
            ExtensionAnswer::Ignore,
        ] {
            assert!(answers.contains(&expected), "{expected:?}");
        }
    }

    #[test]
    fn districts_and_the_city_always_resolve() {
        let mut rng = rng();
        for _ in 0..100 {
            assert_eq!(level_move(&mut rng, Level::District), LevelMove::Resolve);
            assert_eq!(level_move(&mut rng, Level::City), LevelMove::Resolve);
        }
        let moves: Vec<_> = (0..1_000)
            .map(|_| level_move(&mut rng, Level::Street))
            .collect();
        for expected in [LevelMove::Resolve, LevelMove::Escalate, LevelMove::Wait] {
            assert!(moves.contains(&expected), "{expected:?}");
        }
    }

    #[test]
    fn delays_stay_within_the_span_and_the_cap() {
        let mut rng = rng();
        let cap = Duration::from_secs(60);
        for _ in 0..1_000 {
            let d = share_of(&mut rng, TimeDelta::seconds(30), 0.1, 0.8, cap);
            assert!(
                d >= Duration::from_secs(3) && d <= Duration::from_secs(24),
                "{d:?}"
            );
            let capped = share_of(&mut rng, TimeDelta::hours(5), 0.1, 0.8, cap);
            assert!(capped <= cap);
            let gone = share_of(&mut rng, TimeDelta::seconds(-5), 0.1, 0.8, cap);
            assert!(gone <= Duration::from_secs(6), "{gone:?}");
        }
    }

    #[test]
    fn each_level_has_its_actor() {
        let grid: AreaCode = "150602001002003".parse().unwrap();
        let actor = |level| level_actor(&grid, level).unwrap();
        assert_eq!(actor(Level::Grid), "gw-150602001002003");
        assert_eq!(actor(Level::Community), "hd-150602001002");
        assert_eq!(actor(Level::Street), "hd-150602001");
        assert_eq!(actor(Level::District), "op-150602");
        assert_eq!(actor(Level::City), "op-150600");
    }

    #[test]
    fn reassignment_stays_in_the_district_and_skips_busy_departments() {
        let mut rng = rng();
        let summon = [DepartmentKind::Heating, DepartmentKind::HousingConstruction];
        for _ in 0..100 {
            let to = reassign_target(
                &mut rng,
                "150602",
                &summon,
                "150602-heating",
                &["150602-water".to_owned()],
            )
            .unwrap();
            assert_eq!(to, "150602-housing_construction");
        }
        // Every summoned kind busy: any other department of the district.
        for _ in 0..100 {
            let to = reassign_target(
                &mut rng,
                "150603",
                &[DepartmentKind::Heating],
                "150603-heating",
                &[],
            )
            .unwrap();
            assert!(to.starts_with("150603-") && to != "150603-heating", "{to}");
        }
        let everyone: Vec<String> = DepartmentKind::ALL
            .iter()
            .map(|k| format!("150602-{}", k.slug()))
            .collect();
        assert_eq!(
            reassign_target(&mut rng, "150602", &summon, "150602-heating", &everyone),
            None
        );
    }

    #[test]
    fn only_fast_categories_are_filed() {
        let policy = whistle_domain::policy::builtin("ordos-demo").unwrap();
        let chosen: Vec<_> = policy
            .categories()
            .filter(|c| category_weight(c) > 0)
            .collect();
        assert!(chosen.len() >= 5);
        for category in chosen {
            assert!(matches!(
                category.first_level,
                Level::Community | Level::Street
            ));
            assert!(matches!(
                category.sla,
                SlaClass::Emergency | SlaClass::Utilities
            ));
        }
    }

    #[test]
    fn a_whistle_with_assistants_names_the_first_kind_and_one_or_two_others() {
        let mut rng = StdRng::seed_from_u64(20);
        let summon = [DepartmentKind::Heating, DepartmentKind::HousingConstruction];
        for _ in 0..200 {
            let (lead, assisting) = assisting(&mut rng, "150602", &summon, |_| true).unwrap();
            assert_eq!(lead, "150602-heating");
            assert!((1..=2).contains(&assisting.len()), "{assisting:?}");
            assert_eq!(assisting[0], "150602-housing_construction");
            assert!(!assisting.contains(&lead));
        }
        assert!(assisting(&mut rng, "150602", &summon, |c| c != "150602-heating").is_none());
        assert!(assisting(&mut rng, "150602", &[], |_| true).is_none());
    }
}
