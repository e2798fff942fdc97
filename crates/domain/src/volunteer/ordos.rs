//! The Ordos 双报到 registry at the source's scale: 21,790 in-service Party members and 1,727
//! volunteer teams over the 236 communities (2018), and their units' Party organisations.
//! Deterministic, like the rest of the dataset; names and phone numbers are synthetic.

use std::collections::{BTreeMap, BTreeSet};

use super::{Availability, Member, PartyUnit, Registry, Specialty, Team};
use crate::{
    ordos::{person_name, shuffled, stream, SplitMix64, MINING_UNITS, PHONE_PREFIXES, WORK_UNITS},
    AreaCode, Level, OrgDataset, OrgUnit,
};

/// In-service Party members registered with Ordos communities in 2018.
pub const MEMBERS: usize = 21_790;
/// Volunteer service teams they formed.
pub const TEAMS: usize = 1_727;
/// Every community has at least this many teams.
const MIN_TEAMS: usize = 3;
/// A team has at least this many members.
const MIN_TEAM_SIZE: usize = 5;
/// About this many of a district's members work for one unit's Party branch.
const MEMBERS_PER_UNIT: usize = 18;

/// Employers whose Party organisations register with communities, besides the work units the
/// compounds are named after.
const EMPLOYERS: &[&str] = &[
    "人民医院",
    "中医医院",
    "妇幼保健院",
    "疾控中心",
    "第一中学",
    "第二中学",
    "实验小学",
    "第三小学",
    "职业技术学校",
    "供电公司",
    "自来水公司",
    "热力公司",
    "燃气公司",
    "农商银行",
    "邮政分公司",
    "移动分公司",
    "城市管理综合执法局",
    "住房和城乡建设局",
    "市场监督管理局",
    "民政局",
    "司法局",
    "人力资源和社会保障局",
    "生态环境分局",
    "应急管理局",
    "文化旅游局",
    "卫生健康委员会",
    "公安分局",
    "法院",
    "检察院",
    "融媒体中心",
];

/// The registry of `dataset` (the Ordos org tree): members apportioned to communities by their
/// grids (compounds), teams by members, each team of one specialty with members who have it.
pub fn registry(dataset: &OrgDataset) -> Registry {
    let communities: Vec<&OrgUnit> = dataset
        .units
        .iter()
        .filter(|u| u.level() == Level::Community)
        .collect();
    let mut grids: BTreeMap<AreaCode, usize> = BTreeMap::new();
    for grid in dataset.units.iter().filter(|u| u.level() == Level::Grid) {
        if let Some(community) = grid.code.at_level(Level::Community) {
            *grids.entry(community).or_default() += 1;
        }
    }
    let weights: Vec<usize> = communities
        .iter()
        .map(|c| grids.get(&c.code).copied().unwrap_or(1).max(1))
        .collect();
    let members_per = apportion(MEMBERS, &weights, 0);
    let teams_per = apportion(TEAMS, &members_per, MIN_TEAMS);

    // Units per district, each registered with one of the district's communities.
    let mut by_district: BTreeMap<AreaCode, Vec<usize>> = BTreeMap::new();
    for (index, community) in communities.iter().enumerate() {
        let district = community
            .code
            .at_level(Level::District)
            .expect("a community has a district");
        by_district.entry(district).or_default().push(index);
    }
    let mut units = Vec::new();
    let mut units_of: BTreeMap<AreaCode, Vec<usize>> = BTreeMap::new();
    for (district, indices) in &by_district {
        let district_name = dataset
            .units
            .iter()
            .find(|u| u.code == *district)
            .map(|u| u.name.as_str())
            .unwrap_or_default();
        let members: usize = indices.iter().map(|&i| members_per[i]).sum();
        let count = members.div_ceil(MEMBERS_PER_UNIT).max(1);
        let mut rng = stream("party-units", district);
        let bases: Vec<&str> = shuffled(
            &mut rng,
            EMPLOYERS
                .iter()
                .chain(WORK_UNITS)
                .chain(MINING_UNITS)
                .copied(),
        );
        for n in 0..count {
            let base = bases[n % bases.len()];
            let branch = match n / bases.len() {
                0 => String::new(),
                round => format!(
                    "第{}",
                    ["一", "二", "三", "四", "五", "六", "七", "八", "九"][round.min(8)]
                ),
            };
            let community = communities[indices[rng.below(indices.len() as u64) as usize]];
            units_of
                .entry(district.clone())
                .or_default()
                .push(units.len());
            units.push(PartyUnit {
                id: format!("pu-{district}-{:03}", n + 1),
                name: format!("{district_name}{base}{branch}党支部"),
                community: community.code.clone(),
            });
        }
    }

    let mut members = Vec::with_capacity(MEMBERS);
    let mut teams = Vec::with_capacity(TEAMS);
    let mut phones = BTreeSet::new();
    for (index, community) in communities.iter().enumerate() {
        let district = community
            .code
            .at_level(Level::District)
            .expect("a community has a district");
        let district_units = &units_of[&district];
        let first = members.len();
        for n in 0..members_per[index] {
            let id = format!("pm-{}-{:04}", community.code, n + 1);
            let mut rng = stream("party-member", &id);
            let name = person_name(&mut rng);
            let phone = loop {
                let phone = format!("{}{:08}", rng.pick(PHONE_PREFIXES), rng.below(100_000_000));
                if phones.insert(phone.clone()) {
                    break phone;
                }
            };
            let unit = &units[district_units[rng.below(district_units.len() as u64) as usize]];
            members.push(Member {
                id: id
                    .parse()
                    .expect("generated person ids use only code characters"),
                name,
                phone,
                community: community.code.clone(),
                unit: unit.id.clone(),
                skills: skills(&mut rng),
                availability: availability(&mut rng),
            });
        }
        let community_members = &members[first..];
        let mut rng = stream("volunteer-teams", &community.code);
        let specialties = shuffled(&mut rng, Specialty::ALL.iter().copied());
        let mut named: BTreeMap<Specialty, usize> = BTreeMap::new();
        for n in 0..teams_per[index] {
            let specialty = specialties[n % specialties.len()];
            let round = named.entry(specialty).or_default();
            *round += 1;
            let suffix = if *round == 1 {
                "志愿服务队".to_owned()
            } else {
                format!(
                    "志愿服务{}队",
                    ["一", "二", "三", "四", "五", "六", "七", "八", "九"][(*round - 1).min(8)]
                )
            };
            let mut chosen: Vec<_> = community_members
                .iter()
                .filter(|m| m.skills.contains(&specialty) && rng.below(100) < 60)
                .map(|m| m.id.clone())
                .collect();
            let others = shuffled(&mut rng, community_members.iter().map(|m| m.id.clone()));
            for id in others {
                if chosen.len() >= MIN_TEAM_SIZE.min(community_members.len()) {
                    break;
                }
                if !chosen.contains(&id) {
                    chosen.push(id);
                }
            }
            chosen.sort();
            teams.push(Team {
                id: format!("vt-{}-{:02}", community.code, n + 1),
                community: community.code.clone(),
                specialty,
                name: format!("{}{}{suffix}", community.name, specialty.name_zh()),
                members: chosen,
            });
        }
    }
    Registry {
        units,
        members,
        teams,
    }
}

/// One to three skills, the common ones more often.
fn skills(rng: &mut SplitMix64) -> Vec<Specialty> {
    // Weights in Specialty::ALL's order: patrol, mediation, legal aid, elder care, environment,
    // child care, health, culture.
    const WEIGHTS: [u64; 8] = [22, 14, 5, 20, 18, 8, 6, 7];
    let total: u64 = WEIGHTS.iter().sum();
    let count = 1 + rng.below(3) as usize;
    let mut chosen = BTreeSet::new();
    while chosen.len() < count {
        let mut roll = rng.below(total);
        for (specialty, weight) in Specialty::ALL.iter().zip(WEIGHTS) {
            if roll < weight {
                chosen.insert(*specialty);
                break;
            }
            roll -= weight;
        }
    }
    chosen.into_iter().collect()
}

fn availability(rng: &mut SplitMix64) -> Availability {
    match rng.below(100) {
        0..35 => Availability::EveningsAndWeekends,
        35..65 => Availability::Weekends,
        65..85 => Availability::WeekdayEvenings,
        _ => Availability::AnyTime,
    }
}

/// `total` split in proportion to `weights` by largest remainder, each part at least `floor`.
fn apportion(total: usize, weights: &[usize], floor: usize) -> Vec<usize> {
    let rest = total - floor * weights.len();
    let sum: usize = weights.iter().sum();
    let mut parts: Vec<usize> = weights.iter().map(|w| floor + rest * w / sum).collect();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    // Largest remainder first; ties by position, so the split is the same everywhere.
    order.sort_by_key(|&i| (std::cmp::Reverse(rest * weights[i] % sum), i));
    let short = total - parts.iter().sum::<usize>();
    for &i in order.iter().take(short) {
        parts[i] += 1;
    }
    parts
}
