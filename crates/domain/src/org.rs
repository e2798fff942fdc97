//! The org model: the administrative tree, functional departments and the people who act in it.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::{AreaCode, DepartmentCode, PersonId};

/// A level of the chain grid → community → street → district → city, in escalation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Grid,
    Community,
    Street,
    District,
    City,
}

impl Level {
    pub const ALL: [Level; 5] = [
        Level::Grid,
        Level::Community,
        Level::Street,
        Level::District,
        Level::City,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Grid => "grid",
            Level::Community => "community",
            Level::Street => "street",
            Level::District => "district",
            Level::City => "city",
        }
    }

    pub fn name_zh(self) -> &'static str {
        match self {
            Level::Grid => "网格",
            Level::Community => "社区",
            Level::Street => "街道",
            Level::District => "旗区",
            Level::City => "市",
        }
    }

    /// The next level up, or `None` at the city.
    pub fn up(self) -> Option<Level> {
        match self {
            Level::Grid => Some(Level::Community),
            Level::Community => Some(Level::Street),
            Level::Street => Some(Level::District),
            Level::District => Some(Level::City),
            Level::City => None,
        }
    }
}

impl std::str::FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Level::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown level {s:?}; expected one of grid, community, street, district, city"
                )
            })
    }
}

/// One node of the administrative tree (city, banner/district, street/township, community, grid).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrgUnit {
    pub code: AreaCode,
    pub name: String,
    /// Streets: 建制街道 / 旗设街道 / 参照街道 / 城关中心镇; communities: their location class;
    /// other levels: empty.
    pub classification: String,
    pub lat: f64,
    pub lon: f64,
}

impl OrgUnit {
    pub fn level(&self) -> Level {
        self.code.level()
    }
}

/// The kind of a functional department (职能部门); each district and the city has at most one of
/// each kind. The policy names kinds, and each incident's district resolves them to departments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DepartmentKind {
    PublicSecurity,
    UrbanManagement,
    HousingConstruction,
    MarketRegulation,
    EcologyEnvironment,
    EmergencyManagement,
    CivilAffairs,
    Health,
    HumanResources,
    Water,
    Heating,
    Power,
    Gas,
    Petitions,
    Justice,
    NaturalResources,
    Transport,
    FireRescue,
    Education,
}

impl DepartmentKind {
    pub const ALL: [DepartmentKind; 19] = [
        DepartmentKind::PublicSecurity,
        DepartmentKind::UrbanManagement,
        DepartmentKind::HousingConstruction,
        DepartmentKind::MarketRegulation,
        DepartmentKind::EcologyEnvironment,
        DepartmentKind::EmergencyManagement,
        DepartmentKind::CivilAffairs,
        DepartmentKind::Health,
        DepartmentKind::HumanResources,
        DepartmentKind::Water,
        DepartmentKind::Heating,
        DepartmentKind::Power,
        DepartmentKind::Gas,
        DepartmentKind::Petitions,
        DepartmentKind::Justice,
        DepartmentKind::NaturalResources,
        DepartmentKind::Transport,
        DepartmentKind::FireRescue,
        DepartmentKind::Education,
    ];

    /// snake_case slug, used in department codes and the policy file.
    pub fn slug(self) -> &'static str {
        match self {
            DepartmentKind::PublicSecurity => "public_security",
            DepartmentKind::UrbanManagement => "urban_management",
            DepartmentKind::HousingConstruction => "housing_construction",
            DepartmentKind::MarketRegulation => "market_regulation",
            DepartmentKind::EcologyEnvironment => "ecology_environment",
            DepartmentKind::EmergencyManagement => "emergency_management",
            DepartmentKind::CivilAffairs => "civil_affairs",
            DepartmentKind::Health => "health",
            DepartmentKind::HumanResources => "human_resources",
            DepartmentKind::Water => "water",
            DepartmentKind::Heating => "heating",
            DepartmentKind::Power => "power",
            DepartmentKind::Gas => "gas",
            DepartmentKind::Petitions => "petitions",
            DepartmentKind::Justice => "justice",
            DepartmentKind::NaturalResources => "natural_resources",
            DepartmentKind::Transport => "transport",
            DepartmentKind::FireRescue => "fire_rescue",
            DepartmentKind::Education => "education",
        }
    }

    /// The usual name of such a department under a banner/district government, without the
    /// area prefix (e.g. 城市管理综合执法局).
    pub fn name_zh(self) -> &'static str {
        match self {
            DepartmentKind::PublicSecurity => "公安局",
            DepartmentKind::UrbanManagement => "城市管理综合执法局",
            DepartmentKind::HousingConstruction => "住房和城乡建设局",
            DepartmentKind::MarketRegulation => "市场监督管理局",
            DepartmentKind::EcologyEnvironment => "生态环境分局",
            DepartmentKind::EmergencyManagement => "应急管理局",
            DepartmentKind::CivilAffairs => "民政局",
            DepartmentKind::Health => "卫生健康委员会",
            DepartmentKind::HumanResources => "人力资源和社会保障局",
            DepartmentKind::Water => "水利局",
            DepartmentKind::Heating => "供热管理中心",
            DepartmentKind::Power => "供电分公司",
            DepartmentKind::Gas => "燃气管理办公室",
            DepartmentKind::Petitions => "信访局",
            DepartmentKind::Justice => "司法局",
            DepartmentKind::NaturalResources => "自然资源局",
            DepartmentKind::Transport => "交通运输局",
            DepartmentKind::FireRescue => "消防救援大队",
            DepartmentKind::Education => "教育体育局",
        }
    }

    pub fn from_slug(slug: &str) -> Option<DepartmentKind> {
        DepartmentKind::ALL.into_iter().find(|k| k.slug() == slug)
    }
}

/// A functional department of a district or of the city.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Department {
    /// `{area}-{kind slug}`, e.g. `150602-urban_management`.
    pub code: DepartmentCode,
    pub name: String,
    pub kind: DepartmentKind,
    /// The district it serves, or the city (150600) for city-level departments.
    pub area: AreaCode,
}

/// What a person may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Role {
    /// 网格员 of one grid: files reports from it and follows them up.
    GridWorker { grid: AreaCode },
    /// 报到人 of one department: accepts, returns and resolves its tasks.
    Liaison { department: DepartmentCode },
    /// 指挥中心 operator for an area (the city or a district).
    Operator { area: AreaCode },
    /// Staff of a community or street office (社区工作者 / 街道干部): handles incidents at that
    /// unit's level, and at the street blows the whistle.
    Handler { unit: AreaCode },
    /// 结对领导: a city or banner/district leader, posted at `area` (the city or a district), who
    /// follows the streets and communities paired with them (`leader_pairings`) and may endorse a
    /// 督办 there.
    Leader { area: AreaCode },
}

impl Role {
    pub fn kind(&self) -> &'static str {
        match self {
            Role::GridWorker { .. } => "grid_worker",
            Role::Liaison { .. } => "liaison",
            Role::Operator { .. } => "operator",
            Role::Handler { .. } => "handler",
            Role::Leader { .. } => "leader",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Person {
    pub id: PersonId,
    pub name: String,
    pub phone: String,
    #[serde(flatten)]
    pub role: Role,
}

/// Everything `whistle seed` loads: the tree, departments and people.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OrgDataset {
    /// Parents before children.
    pub units: Vec<OrgUnit>,
    pub departments: Vec<Department>,
    pub people: Vec<Person>,
}

/// Why a dataset is not a consistent tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrgError {
    #[error("unit {0} appears twice")]
    DuplicateUnit(AreaCode),
    #[error("unit {0} has no parent unit in the dataset")]
    MissingParent(AreaCode),
    #[error("department {0} appears twice")]
    DuplicateDepartment(DepartmentCode),
    #[error("department {0} serves {1}, which is neither the city nor a district of the dataset")]
    DepartmentArea(DepartmentCode, AreaCode),
    #[error("person {0} appears twice")]
    DuplicatePerson(PersonId),
    #[error("person {0} refers to {1}, which is not in the dataset")]
    DanglingPerson(PersonId, String),
}

/// An in-memory index over an [`OrgDataset`], built once at start so that the hot path never asks
/// the database about the org tree.
#[derive(Debug, Clone, Default)]
pub struct OrgIndex {
    units: HashMap<AreaCode, OrgUnit>,
    children: HashMap<AreaCode, Vec<AreaCode>>,
    departments: HashMap<DepartmentCode, Department>,
    people: HashMap<PersonId, Person>,
}

impl OrgIndex {
    /// Indexes a dataset, refusing one whose references do not resolve.
    pub fn build(dataset: OrgDataset) -> Result<OrgIndex, OrgError> {
        let mut index = OrgIndex::default();
        for unit in dataset.units {
            if let Some(parent) = unit.code.parent() {
                if !index.units.contains_key(&parent) {
                    return Err(OrgError::MissingParent(unit.code));
                }
                index
                    .children
                    .entry(parent)
                    .or_default()
                    .push(unit.code.clone());
            }
            if let Some(previous) = index.units.insert(unit.code.clone(), unit) {
                return Err(OrgError::DuplicateUnit(previous.code));
            }
        }
        for department in dataset.departments {
            let area_ok = index
                .units
                .get(&department.area)
                .is_some_and(|u| u.level() >= Level::District);
            if !area_ok {
                return Err(OrgError::DepartmentArea(department.code, department.area));
            }
            if let Some(previous) = index
                .departments
                .insert(department.code.clone(), department)
            {
                return Err(OrgError::DuplicateDepartment(previous.code));
            }
        }
        for person in dataset.people {
            let target_ok = match &person.role {
                Role::GridWorker { grid } => index
                    .units
                    .get(grid)
                    .is_some_and(|u| u.level() == Level::Grid),
                Role::Liaison { department } => index.departments.contains_key(department),
                Role::Operator { area } => index.units.contains_key(area),
                Role::Handler { unit } => index
                    .units
                    .get(unit)
                    .is_some_and(|u| matches!(u.level(), Level::Community | Level::Street)),
                Role::Leader { area } => index
                    .units
                    .get(area)
                    .is_some_and(|u| u.level() >= Level::District),
            };
            if !target_ok {
                let target = match &person.role {
                    Role::GridWorker { grid } => grid.to_string(),
                    Role::Liaison { department } => department.to_string(),
                    Role::Operator { area }
                    | Role::Handler { unit: area }
                    | Role::Leader { area } => area.to_string(),
                };
                return Err(OrgError::DanglingPerson(person.id, target));
            }
            if let Some(previous) = index.people.insert(person.id.clone(), person) {
                return Err(OrgError::DuplicatePerson(previous.id));
            }
        }
        Ok(index)
    }

    pub fn unit(&self, code: &AreaCode) -> Option<&OrgUnit> {
        self.units.get(code)
    }

    pub fn children(&self, code: &AreaCode) -> &[AreaCode] {
        self.children
            .get(code)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    pub fn person(&self, id: &PersonId) -> Option<&Person> {
        self.people.get(id)
    }

    pub fn department(&self, code: &DepartmentCode) -> Option<&Department> {
        self.departments.get(code)
    }

    pub fn units(&self) -> impl Iterator<Item = &OrgUnit> {
        self.units.values()
    }

    pub fn departments(&self) -> impl Iterator<Item = &Department> {
        self.departments.values()
    }

    pub fn people(&self) -> impl Iterator<Item = &Person> {
        self.people.values()
    }

    /// The department of `kind` serving `district`, falling back to the city's.
    pub fn department_for(&self, district: &AreaCode, kind: DepartmentKind) -> Option<&Department> {
        let own = DepartmentCode::from_parts(district, kind);
        self.departments.get(&own).or_else(|| {
            let city = district.at_level(Level::City)?;
            self.departments
                .get(&DepartmentCode::from_parts(&city, kind))
        })
    }

    /// Grid workers of a grid, for generators and checks.
    pub fn grid_workers<'a>(&'a self, grid: &'a AreaCode) -> impl Iterator<Item = &'a Person> + 'a {
        self.people
            .values()
            .filter(move |p| matches!(&p.role, Role::GridWorker { grid: g } if g == grid))
    }

    pub fn count(&self, level: Level) -> usize {
        self.units.values().filter(|u| u.level() == level).count()
    }
}

impl DepartmentCode {
    /// The code of the department of `kind` serving `area` (a district or the city).
    pub fn from_parts(area: &AreaCode, kind: DepartmentKind) -> DepartmentCode {
        format!("{}-{}", area, kind.slug())
            .parse()
            .expect("area codes and kind slugs are valid department code characters")
    }
}
