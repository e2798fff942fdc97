//! The 双报到 registry: who registered with which community, from which unit, able to do what.

use serde::{Deserialize, Serialize};

use crate::{AreaCode, PersonId};

named_enum!(
    /// What a volunteer team does, and a member's skills (the `volunteer_teams.specialty` CHECK).
    Specialty {
        /// 治安巡逻.
        Patrol = "patrol" / "治安巡逻",
        /// 矛盾调解.
        Mediation = "mediation" / "矛盾调解",
        /// 法律援助.
        LegalAid = "legal_aid" / "法律援助",
        /// 敬老助老.
        ElderCare = "elder_care" / "敬老助老",
        /// 环境保护.
        Environment = "environment" / "环境保护",
        /// 关爱儿童.
        ChildCare = "child_care" / "关爱儿童",
        /// 医疗健康.
        Health = "health" / "医疗健康",
        /// 文化宣传.
        Culture = "culture" / "文化宣传",
    }
);

named_enum!(
    /// When a member can serve (`party_members.availability`).
    Availability {
        WeekdayEvenings = "weekday_evenings" / "工作日晚间",
        Weekends = "weekends" / "周末",
        EveningsAndWeekends = "evenings_and_weekends" / "晚间及周末",
        AnyTime = "any_time" / "随时",
    }
);

/// A unit's (机关、企事业单位) Party organisation, registered with the community it sits in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartyUnit {
    /// `pu-{district}-{nnn}`.
    pub id: String,
    pub name: String,
    pub community: AreaCode,
}

/// An in-service Party member (在职党员) registered with the community where they live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: PersonId,
    pub name: String,
    pub phone: String,
    pub community: AreaCode,
    /// Their employer's Party organisation, which receives the community's yearly evaluation.
    pub unit: String,
    pub skills: Vec<Specialty>,
    pub availability: Availability,
}

/// A community's volunteer service team (志愿服务队) of one specialty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Team {
    /// `vt-{community}-{nn}`.
    pub id: String,
    pub community: AreaCode,
    pub specialty: Specialty,
    pub name: String,
    pub members: Vec<PersonId>,
}

/// The whole registry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registry {
    pub units: Vec<PartyUnit>,
    pub members: Vec<Member>,
    pub teams: Vec<Team>,
}

/// A member's name as shown to those who need not know it: the first character, then one `*`
/// for each other (张*明, 包**). Names are personal data like phones (docs/privacy.md).
pub fn mask_name(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        None => String::new(),
        Some(first) => std::iter::once(first).chain(chars.map(|_| '*')).collect(),
    }
}
