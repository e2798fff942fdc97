//! The Ordos (鄂尔多斯市) org dataset: generated deterministically, not surveyed.
//!
//! The counts are the customer's source document's: 9 banners/districts; 26 streets and 33
//! townships with urban communities (59 street-level units in the four classes 建制街道, 旗设街道,
//! 参照街道, 城关中心镇); 236 communities; 1,564 residential compounds, one grid each. Districts
//! carry their real names, codes and seat coordinates. Street and township names are partly real
//! (all of 东胜区 and 康巴什区, the townships, the banner-created streets of 达拉特旗 and 准格尔旗),
//! with codes in the national scheme (street 001–099, town 100–199, sumu 200+) but not checked
//! against the official list. Community and compound names, coordinates, people and phones come
//! from a fixed-seed splitmix64 keyed by each unit's code, so [`dataset`] is the same on every call
//! and every machine: streets lie a few km from their seat (other townships 8–35 km), communities
//! within 2.5 km of their street, grids within 0.8 km of their community.
//!
//! The classes are read as: streets of 东胜区 and 康巴什区 are 建制街道; streets a banner created in
//! its seat town are 旗设街道; the seat town is 城关中心镇; every other township with urban
//! communities is managed like a street (参照街道).

use std::collections::BTreeSet;

use crate::{
    leaders::Pairing, AreaCode, Department, DepartmentCode, DepartmentKind, Level, OrgDataset,
    OrgUnit, Person, PersonId, Role,
};

/// The city code of Ordos.
pub const CITY_CODE: &str = "150600";

/// The whole Ordos dataset, the same on every call and every machine.
///
/// Units are ordered level by level (city, districts, streets, communities, grids), each level in
/// code order, so parents always come before their children.
pub fn dataset() -> OrgDataset {
    let city = OrgUnit {
        code: area(CITY_CODE),
        name: CITY_NAME.to_owned(),
        classification: String::new(),
        lat: CITY_CENTRE.0,
        lon: CITY_CENTRE.1,
    };

    let mut districts = Vec::with_capacity(DISTRICTS.len());
    let mut streets = Vec::new();
    let mut communities = Vec::new();
    for district_spec in &DISTRICTS {
        let district = OrgUnit {
            code: area(district_spec.code),
            name: district_spec.name.to_owned(),
            classification: String::new(),
            lat: district_spec.seat_lat,
            lon: district_spec.seat_lon,
        };
        let mut names = CommunityNamer::new(district_spec);
        for street_spec in district_spec.streets {
            let street = street_unit(&district, street_spec);
            for index in 0..street_spec.communities {
                let class = street_spec
                    .setting
                    .community_class(index, street_spec.communities);
                let code = area(&format!("{}{:03}", street.code, index + 1));
                let name = names.next(&street.code, street_spec, index);
                let (lat, lon) = scatter(
                    &mut stream("community", &code),
                    (street.lat, street.lon),
                    street_spec.setting.community_radius_km(street_spec.class),
                );
                communities.push(CommunityDraft {
                    unit: OrgUnit {
                        code,
                        name,
                        classification: class.name_zh().to_owned(),
                        lat,
                        lon,
                    },
                    setting: street_spec.setting,
                    class,
                });
            }
            streets.push(street);
        }
        districts.push(district);
    }

    let grid_counts = apportion_grids(&communities);
    let mut grids = Vec::with_capacity(GRID_COUNT);
    for (community, &count) in communities.iter().zip(&grid_counts) {
        let mut rng = stream("compounds", &community.unit.code);
        let mut names = CompoundNamer::default();
        for index in 0..count {
            let code = area(&format!("{}{:03}", community.unit.code, index + 1));
            let name = names.next(&mut rng, community.setting);
            let (lat, lon) = scatter(
                &mut stream("grid", &code),
                (community.unit.lat, community.unit.lon),
                GRID_RADIUS_KM,
            );
            grids.push(OrgUnit {
                code,
                name,
                classification: String::new(),
                lat,
                lon,
            });
        }
    }

    let mut departments = Vec::with_capacity((1 + districts.len()) * DepartmentKind::ALL.len());
    for unit in std::iter::once(&city).chain(&districts) {
        for kind in DepartmentKind::ALL {
            departments.push(Department {
                code: DepartmentCode::from_parts(&unit.code, kind),
                name: format!("{}{}", unit.name, kind.name_zh()),
                kind,
                area: unit.code.clone(),
            });
        }
    }

    let mut people = PeopleFactory::default();
    for grid in &grids {
        people.add(
            format!("gw-{}", grid.code),
            Role::GridWorker {
                grid: grid.code.clone(),
            },
        );
    }
    for department in &departments {
        people.add(
            format!("li-{}", department.code),
            Role::Liaison {
                department: department.code.clone(),
            },
        );
    }
    for unit in streets.iter().chain(communities.iter().map(|c| &c.unit)) {
        people.add(
            format!("hd-{}", unit.code),
            Role::Handler {
                unit: unit.code.clone(),
            },
        );
    }
    for unit in std::iter::once(&city).chain(&districts) {
        people.add(
            format!("op-{}", unit.code),
            Role::Operator {
                area: unit.code.clone(),
            },
        );
    }

    let mut units =
        Vec::with_capacity(1 + districts.len() + streets.len() + communities.len() + grids.len());
    units.push(city);
    units.extend(districts);
    units.extend(streets);
    units.extend(communities.into_iter().map(|c| c.unit));
    units.extend(grids);
    OrgDataset {
        units,
        departments,
        people: people.people,
    }
}

/// The paired leaders (结对领导) of a dataset and their pairings.
#[derive(Debug, Clone, PartialEq)]
pub struct Leaders {
    pub people: Vec<Person>,
    pub pairings: Vec<Pairing>,
}

/// City leaders, each paired with two or three of the 59 streets.
const CITY_LEADERS: usize = 24;
/// Communities a banner/district leader follows at most.
const COMMUNITIES_PER_LEADER: usize = 4;

/// The paired leaders of `dataset` (领导结对联系), deterministic like the rest: the city's
/// leaders (`ld-150600-NN`) take the streets in code order in turn; each banner/district has a
/// leader (`ld-{district}-NN`) for every four of its communities, who take its communities in
/// code order in turn. Names and phones come from the same generator as the dataset's people,
/// phones unique across both.
pub fn leaders(dataset: &OrgDataset) -> Leaders {
    let mut factory = PeopleFactory {
        people: Vec::new(),
        phones: dataset.people.iter().map(|p| p.phone.clone()).collect(),
    };
    let mut pairings = Vec::new();
    let at = |level: Level| -> Vec<&AreaCode> {
        let mut codes: Vec<&AreaCode> = dataset
            .units
            .iter()
            .filter(|u| u.level() == level)
            .map(|u| &u.code)
            .collect();
        codes.sort();
        codes
    };
    let leader_id = |post: &AreaCode, n: usize| format!("ld-{post}-{:02}", n + 1);
    let city = area(CITY_CODE);
    for n in 0..CITY_LEADERS {
        factory.add(leader_id(&city, n), Role::Leader { area: city.clone() });
    }
    for (i, street) in at(Level::Street).into_iter().enumerate() {
        pairings.push(Pairing {
            leader: person_id(leader_id(&city, i % CITY_LEADERS)),
            area: street.clone(),
        });
    }
    let communities = at(Level::Community);
    for district in at(Level::District) {
        let mine: Vec<&&AreaCode> = communities
            .iter()
            .filter(|c| district.contains(c))
            .collect();
        let count = mine.len().div_ceil(COMMUNITIES_PER_LEADER).max(1);
        for n in 0..count {
            factory.add(
                leader_id(district, n),
                Role::Leader {
                    area: district.clone(),
                },
            );
        }
        for (i, community) in mine.into_iter().enumerate() {
            pairings.push(Pairing {
                leader: person_id(leader_id(district, i % count)),
                area: (*community).clone(),
            });
        }
    }
    pairings.sort();
    Leaders {
        people: factory.people,
        pairings,
    }
}

fn person_id(id: String) -> PersonId {
    id.parse()
        .expect("generated person ids use only code characters")
}

const CITY_NAME: &str = "鄂尔多斯市";
/// The city government in Kangbashi.
const CITY_CENTRE: (f64, f64) = (39.6085, 109.7813);
/// Residential compounds in the source document, one grid each.
const GRID_COUNT: usize = 1_564;
/// Fixed seed of every random stream; changing it changes every generated name and coordinate.
const SEED: u64 = 0x0150_6000_0D05_5EED;

/// Ordos' bounding box (south, north, west, east); every coordinate stays inside it.
const BBOX: (f64, f64, f64, f64) = (37.5, 40.9, 106.7, 111.5);
const KM_PER_DEG_LAT: f64 = 111.0;
/// At about 39.5° N (cos 39.5° × 111.32 km); constant so that no libm result can differ by machine.
const KM_PER_DEG_LON: f64 = 85.9;
const GRID_RADIUS_KM: (f64, f64) = (0.05, 0.8);

// ---------------------------------------------------------------------------------------------
// The administrative tree
// ---------------------------------------------------------------------------------------------

struct DistrictSpec {
    code: &'static str,
    name: &'static str,
    /// Coordinates of the seat (the town or district centre where the government sits).
    seat_lat: f64,
    seat_lon: f64,
    streets: &'static [StreetSpec],
}

struct StreetSpec {
    /// The last three digits of the code: 001–099 street, 100–199 town, 200+ sumu.
    number: u16,
    name: &'static str,
    class: StreetClass,
    setting: Setting,
    communities: usize,
}

/// The four classes of street-level units named in the source document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreetClass {
    /// A street office of a city district (东胜区, 康巴什区).
    Established,
    /// A street office a banner set up inside its seat town.
    BannerCreated,
    /// A township with urban communities managed like a street.
    StreetLike,
    /// The township hosting the banner seat.
    SeatTown,
}

impl StreetClass {
    fn name_zh(self) -> &'static str {
        match self {
            StreetClass::Established => "建制街道",
            StreetClass::BannerCreated => "旗设街道",
            StreetClass::StreetLike => "参照街道",
            StreetClass::SeatTown => "城关中心镇",
        }
    }
}

/// Where a street-level unit lies; decides its communities' classes, names and spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setting {
    /// Built-up centre of 东胜 or 康巴什.
    Core,
    /// Street on the edge of the built-up area: half centre, half urban fringe.
    Fringe,
    /// A banner seat: its seat town and the streets created in it.
    Seat,
    /// Township next to the central city (东胜's towns).
    Suburb,
    /// An ordinary township.
    Town,
    /// A coal, power or chemical township.
    Mining,
}

/// Location classes of communities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CommunityClass {
    CityCentre,
    UrbanFringe,
    TownCentre,
    Mining,
}

impl CommunityClass {
    fn name_zh(self) -> &'static str {
        match self {
            CommunityClass::CityCentre => "城市中心社区",
            CommunityClass::UrbanFringe => "城郊结合社区",
            CommunityClass::TownCentre => "镇区社区",
            CommunityClass::Mining => "工矿社区",
        }
    }

    /// Relative number of compounds, before scaling to the document's total.
    fn compound_weight(self) -> (u64, u64) {
        match self {
            CommunityClass::CityCentre => (6, 11),
            CommunityClass::UrbanFringe => (4, 8),
            CommunityClass::TownCentre => (2, 6),
            CommunityClass::Mining => (3, 7),
        }
    }
}

impl Setting {
    fn community_class(self, index: usize, count: usize) -> CommunityClass {
        match self {
            Setting::Core => CommunityClass::CityCentre,
            Setting::Fringe if index < count.div_ceil(2) => CommunityClass::CityCentre,
            Setting::Fringe | Setting::Suburb => CommunityClass::UrbanFringe,
            Setting::Seat if index + (count / 4).max(1) < count => CommunityClass::CityCentre,
            Setting::Seat => CommunityClass::UrbanFringe,
            Setting::Town => CommunityClass::TownCentre,
            Setting::Mining => CommunityClass::Mining,
        }
    }

    /// Distance band of a street-level unit from its district's seat.
    fn street_radius_km(self, class: StreetClass) -> (f64, f64) {
        match (self, class) {
            (_, StreetClass::SeatTown) => (0.2, 0.8),
            (Setting::Core | Setting::Seat, _) => (0.8, 3.5),
            (Setting::Fringe, _) => (3.0, 6.0),
            (Setting::Suburb, _) => (8.0, 20.0),
            (Setting::Town | Setting::Mining, _) => (10.0, 35.0),
        }
    }

    /// Distance band of a community from its street-level unit.
    fn community_radius_km(self, class: StreetClass) -> (f64, f64) {
        match (self, class) {
            (_, StreetClass::SeatTown) => (0.3, 2.5),
            (Setting::Core | Setting::Fringe | Setting::Seat, _) => (0.3, 1.8),
            (Setting::Suburb | Setting::Town | Setting::Mining, _) => (0.2, 1.5),
        }
    }
}

const fn street(
    number: u16,
    name: &'static str,
    class: StreetClass,
    setting: Setting,
    communities: usize,
) -> StreetSpec {
    StreetSpec {
        number,
        name,
        class,
        setting,
        communities,
    }
}

use Setting::{Core, Fringe, Mining, Seat, Suburb, Town};
use StreetClass::{BannerCreated, Established, SeatTown, StreetLike};

const DISTRICTS: [DistrictSpec; 9] = [
    DistrictSpec {
        code: "150602",
        name: "东胜区",
        seat_lat: 39.817,
        seat_lon: 109.963,
        streets: &[
            street(1, "交通街道", Established, Core, 6),
            street(2, "公园街道", Established, Core, 7),
            street(3, "林荫街道", Established, Core, 6),
            street(4, "建设街道", Established, Core, 6),
            street(5, "富兴街道", Established, Core, 6),
            street(6, "天骄街道", Established, Core, 6),
            street(7, "诃额伦街道", Established, Fringe, 6),
            street(8, "兴胜街道", Established, Fringe, 6),
            street(9, "巴音门克街道", Established, Fringe, 6),
            street(10, "纺织街道", Established, Core, 5),
            street(11, "民族街道", Established, Core, 6),
            street(12, "幸福街道", Established, Core, 6),
            street(100, "泊尔江海子镇", StreetLike, Suburb, 2),
            street(101, "罕台镇", StreetLike, Suburb, 4),
            street(102, "铜川镇", StreetLike, Suburb, 3),
        ],
    },
    DistrictSpec {
        code: "150603",
        name: "康巴什区",
        seat_lat: 39.608,
        seat_lon: 109.781,
        streets: &[
            street(1, "哈巴格希街道", Established, Core, 6),
            street(2, "青春山街道", Established, Core, 6),
            street(3, "滨河街道", Established, Core, 5),
            street(4, "康新街道", Established, Fringe, 5),
        ],
    },
    DistrictSpec {
        code: "150621",
        name: "达拉特旗",
        seat_lat: 40.404,
        seat_lon: 110.040,
        streets: &[
            street(1, "平原街道", BannerCreated, Seat, 4),
            street(2, "工业街道", BannerCreated, Seat, 5),
            street(3, "锡尼街道", BannerCreated, Seat, 4),
            street(4, "白塔街道", BannerCreated, Seat, 4),
            street(5, "西园街道", BannerCreated, Seat, 5),
            street(6, "林原街道", BannerCreated, Seat, 4),
            street(100, "树林召镇", SeatTown, Seat, 4),
            street(101, "王爱召镇", StreetLike, Town, 2),
            street(102, "白泥井镇", StreetLike, Town, 2),
            street(103, "吉格斯太镇", StreetLike, Town, 1),
        ],
    },
    DistrictSpec {
        code: "150622",
        name: "准格尔旗",
        seat_lat: 39.865,
        seat_lon: 111.240,
        streets: &[
            street(1, "兴隆街道", BannerCreated, Seat, 5),
            street(2, "迎泽街道", BannerCreated, Seat, 5),
            street(3, "蓝天街道", BannerCreated, Seat, 5),
            street(4, "友谊街道", BannerCreated, Seat, 5),
            street(100, "薛家湾镇", SeatTown, Seat, 3),
            street(101, "沙圪堵镇", StreetLike, Town, 3),
            street(102, "大路镇", StreetLike, Mining, 3),
            street(103, "纳日松镇", StreetLike, Mining, 1),
            street(104, "龙口镇", StreetLike, Town, 1),
            street(105, "准格尔召镇", StreetLike, Town, 1),
        ],
    },
    DistrictSpec {
        code: "150623",
        name: "鄂托克前旗",
        seat_lat: 38.183,
        seat_lon: 107.477,
        streets: &[
            street(100, "敖勒召其镇", SeatTown, Seat, 6),
            street(101, "上海庙镇", StreetLike, Mining, 2),
            street(102, "城川镇", StreetLike, Town, 1),
        ],
    },
    DistrictSpec {
        code: "150624",
        name: "鄂托克旗",
        seat_lat: 39.097,
        seat_lon: 107.976,
        streets: &[
            street(100, "乌兰镇", SeatTown, Seat, 6),
            street(101, "棋盘井镇", StreetLike, Mining, 6),
            street(102, "蒙西镇", StreetLike, Mining, 2),
            street(200, "阿尔巴斯苏木", StreetLike, Town, 1),
        ],
    },
    DistrictSpec {
        code: "150625",
        name: "杭锦旗",
        seat_lat: 39.833,
        seat_lon: 108.736,
        streets: &[
            street(100, "锡尼镇", SeatTown, Seat, 6),
            street(101, "独贵塔拉镇", StreetLike, Town, 2),
            street(102, "巴拉贡镇", StreetLike, Town, 1),
        ],
    },
    DistrictSpec {
        code: "150626",
        name: "乌审旗",
        seat_lat: 38.597,
        seat_lon: 108.842,
        streets: &[
            street(100, "嘎鲁图镇", SeatTown, Seat, 7),
            street(101, "乌审召镇", StreetLike, Town, 1),
            street(102, "图克镇", StreetLike, Mining, 2),
            street(103, "无定河镇", StreetLike, Town, 1),
        ],
    },
    DistrictSpec {
        code: "150627",
        name: "伊金霍洛旗",
        seat_lat: 39.564,
        seat_lon: 109.748,
        streets: &[
            street(100, "阿勒腾席热镇", SeatTown, Seat, 14),
            street(101, "乌兰木伦镇", StreetLike, Mining, 3),
            street(102, "札萨克镇", StreetLike, Town, 1),
            street(103, "伊金霍洛镇", StreetLike, Town, 1),
            street(104, "纳林陶亥镇", StreetLike, Mining, 2),
            street(105, "红庆河镇", StreetLike, Town, 1),
        ],
    },
];

/// Communities whose real names are known, by street code, in code order.
const KNOWN_COMMUNITIES: &[(&str, &[&str])] = &[(
    "150621005",
    &["西园社区", "金鹏社区", "文苑社区", "迎宾社区", "白塔北社区"],
)];

fn street_unit(district: &OrgUnit, spec: &StreetSpec) -> OrgUnit {
    let code = area(&format!("{}{:03}", district.code, spec.number));
    let (lat, lon) = scatter(
        &mut stream("street", &code),
        (district.lat, district.lon),
        spec.setting.street_radius_km(spec.class),
    );
    OrgUnit {
        code,
        name: spec.name.to_owned(),
        classification: spec.class.name_zh().to_owned(),
        lat,
        lon,
    }
}

struct CommunityDraft {
    unit: OrgUnit,
    setting: Setting,
    class: CommunityClass,
}

/// Hands out community names, unique within a district.
struct CommunityNamer {
    taken: BTreeSet<String>,
    general: std::vec::IntoIter<&'static str>,
    mining: std::vec::IntoIter<&'static str>,
}

impl CommunityNamer {
    fn new(district: &DistrictSpec) -> CommunityNamer {
        let mut rng = stream("community-names", &area(district.code));
        let mut taken = BTreeSet::new();
        for (street_code, names) in KNOWN_COMMUNITIES {
            if street_code.starts_with(district.code) {
                taken.extend(names.iter().map(|n| (*n).to_owned()));
            }
        }
        let general = shuffled(
            &mut rng,
            GENERAL_COMMUNITY_ROOTS
                .iter()
                .chain(MONGOLIAN_COMMUNITY_ROOTS)
                .copied(),
        );
        let mining = shuffled(&mut rng, MINING_COMMUNITY_ROOTS.iter().copied());
        CommunityNamer {
            taken,
            general: general.into_iter(),
            mining: mining.into_iter(),
        }
    }

    fn next(&mut self, street_code: &AreaCode, spec: &StreetSpec, index: usize) -> String {
        if let Some(name) = KNOWN_COMMUNITIES
            .iter()
            .find(|(code, _)| *code == street_code.as_str())
            .and_then(|(_, names)| names.get(index))
        {
            return (*name).to_owned();
        }
        // The first community of a township usually carries the township's name.
        let township = !matches!(spec.setting, Core | Fringe) && spec.class != BannerCreated;
        if township && index == 0 {
            let root = spec.name.trim_end_matches("苏木").trim_end_matches('镇');
            if let Some(name) = claim(&mut self.taken, root) {
                return name;
            }
        }
        if spec.setting == Mining {
            if let Some(name) = self
                .mining
                .by_ref()
                .find_map(|root| claim(&mut self.taken, root))
            {
                return name;
            }
        }
        self.general
            .by_ref()
            .find_map(|root| claim(&mut self.taken, root))
            .expect("the community name pools are larger than any district's community count")
    }
}

/// `{root}社区`, unless a community of the district already has that name.
fn claim(taken: &mut BTreeSet<String>, root: &str) -> Option<String> {
    let name = format!("{root}社区");
    taken.insert(name.clone()).then_some(name)
}

/// Splits the document's 1,564 compounds over the communities: one each, the rest in proportion to
/// a per-community weight drawn from its class (largest remainder, integer arithmetic).
fn apportion_grids(communities: &[CommunityDraft]) -> Vec<usize> {
    let weights: Vec<u64> = communities
        .iter()
        .map(|c| {
            let (low, high) = c.class.compound_weight();
            low + stream("compound-weight", &c.unit.code).below(high - low + 1)
        })
        .collect();
    let total_weight: u64 = weights.iter().sum();
    let rest = (GRID_COUNT - communities.len()) as u64;
    let mut counts: Vec<usize> = weights
        .iter()
        .map(|w| 1 + (rest * w / total_weight) as usize)
        .collect();
    let mut by_remainder: Vec<usize> = (0..communities.len()).collect();
    by_remainder.sort_by_key(|&i| (std::cmp::Reverse(rest * weights[i] % total_weight), i));
    let missing = GRID_COUNT - counts.iter().sum::<usize>();
    for &i in &by_remainder[..missing] {
        counts[i] += 1;
    }
    counts
}

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

const GENERAL_COMMUNITY_ROOTS: &[&str] = &[
    "团结", "友谊", "和平", "民主", "光明", "文明", "和谐", "康和", "兴和", "阳光", "锦绣", "安康",
    "春晖", "紫荆", "丁香", "杏林", "松林", "柳林", "桃园", "枫林", "银河", "金桥", "金源", "鑫海",
    "瑞华", "福润", "嘉和", "恒泰", "泰和", "天和", "祥和", "永安", "长安", "新华", "建华", "振华",
    "东环", "西环", "南环", "北环", "东城", "南城", "北城", "广场", "学府", "书香", "文化", "体育",
    "园丁", "铁西", "铁东", "车站", "电业", "滨湖", "河畔", "沁园", "绿苑", "翠苑", "锦园", "怡园",
    "馨园", "雅园", "景园", "颐和", "宝和", "泰安", "惠民", "利民", "安民", "富民", "新民", "育才",
    "启明", "东方", "朝阳", "向阳", "晨光", "曙光", "星光", "青年", "民生", "兴业", "繁荣", "振兴",
    "昌盛", "丰泽", "万家", "华泰", "鸿图", "吉祥", "如意", "安居", "乐业", "百合", "牡丹", "银杏",
    "白杨", "青松", "翠柏", "园林", "水岸", "碧水", "白云", "彩虹", "佳园", "庆和", "康乐", "宏远",
    "金泰", "聚鑫", "德胜", "福康", "瑞丰", "安泰", "新园",
];

const MONGOLIAN_COMMUNITY_ROOTS: &[&str] = &[
    "伊克昭",
    "宝日陶亥",
    "额尔敦",
    "巴音",
    "乌兰",
    "查干",
    "杭盖",
    "赛罕",
    "敖包",
    "吉劳庆",
    "苏力德",
    "那达慕",
    "阿吉奈",
    "布日都",
    "呼和",
    "格日勒",
    "阿拉腾",
    "乌日图",
    "毛乌素",
    "库布其",
    "萨拉乌素",
    "达尔扈特",
    "塔拉",
    "哈达",
    "宝力格",
    "朝格图",
    "图古日格",
    "乌兰木图",
    "额吉淖尔",
    "锡林",
];

const MINING_COMMUNITY_ROOTS: &[&str] = &[
    "矿区",
    "电厂",
    "煤海",
    "能源",
    "化工",
    "焦化",
    "煤城",
    "铁路",
    "矿山",
    "电力",
    "新能源",
    "工业园",
    "煤化",
];

const COMPOUND_PREFIXES: &[&str] = &[
    "锦泰",
    "滨河",
    "康和",
    "金辉",
    "紫御",
    "碧水",
    "阳光",
    "盛世",
    "御景",
    "天骄",
    "东方",
    "鑫源",
    "瑞祥",
    "泰和",
    "丽都",
    "富丽",
    "翠微",
    "怡景",
    "嘉禾",
    "书香",
    "蓝湾",
    "青城",
    "香榭",
    "祥和",
    "安泰",
    "润泽",
    "龙湖",
    "金地",
    "凯旋",
    "锦绣",
    "枫林",
    "松涛",
    "紫荆",
    "佳和",
    "万兴",
    "恒信",
    "银河",
    "星河",
    "江南",
    "明珠",
    "金海",
    "欧陆",
    "世纪",
    "时代",
    "中央",
    "宏远",
    "永和",
    "福瑞",
    "和润",
    "金域",
    "都市",
    "尚品",
    "颐和",
    "汇通",
    "兴泰",
    "泰裕",
    "荣兴",
    "宝泰",
    "草原",
    "巴音",
    "赛罕",
    "哈达",
    "吉祥",
    "福源",
    "绿洲",
    "铭泰",
    "鼎盛",
    "嘉泰",
    "华泰",
    "广厦",
    "天润",
    "紫金",
    "伊和",
    "苏泊罕",
    "万和",
];

const COMPOUND_SUFFIXES: &[&str] = &[
    "花园", "华府", "丽景", "家园", "小区", "嘉园", "名都", "雅苑", "新城", "公馆", "世家", "尚城",
    "华庭", "一品", "雅居", "星城", "水岸", "御府", "花苑", "佳苑", "名苑", "府邸", "国际", "湾",
    "苑", "园", "景苑", "城邦",
];

/// Work units whose staff housing (家属院) is common in the older parts of a town.
pub(crate) const WORK_UNITS: &[&str] = &[
    "电业局",
    "粮食局",
    "煤炭局",
    "交通局",
    "税务局",
    "财政局",
    "水利局",
    "邮电局",
    "工商局",
    "一中",
    "二中",
    "气象局",
    "地质队",
    "农机局",
    "商业局",
    "供销社",
    "物资局",
    "公路段",
    "林业局",
    "医院",
];

const WORK_UNIT_HOUSING: &[&str] = &["家属院", "家属楼", "住宅楼"];

pub(crate) const MINING_UNITS: &[&str] = &[
    "煤矿",
    "电厂",
    "选煤厂",
    "洗煤厂",
    "化工厂",
    "铁路",
    "焦化厂",
    "发电厂",
    "铁合金厂",
    "水泥厂",
    "露天矿",
    "煤化工",
];

const MINING_HOUSING: &[&str] = &["生活区", "家属区", "职工公寓", "职工小区"];

/// Hands out compound names within one community: unique, no two sharing a prefix (so no
/// 商业局家属院 next to 商业局住宅楼), and no prefix repeating a character of its suffix (碧水水岸).
#[derive(Default)]
struct CompoundNamer {
    names: BTreeSet<String>,
    prefixes: BTreeSet<&'static str>,
}

impl CompoundNamer {
    fn next(&mut self, rng: &mut SplitMix64, setting: Setting) -> String {
        loop {
            let roll = rng.below(100);
            let (prefix, suffix): (&'static str, &'static str) = match setting {
                Mining if roll < 35 => (*rng.pick(MINING_UNITS), *rng.pick(MINING_HOUSING)),
                Core | Fringe | Seat if roll < 10 => {
                    (*rng.pick(WORK_UNITS), *rng.pick(WORK_UNIT_HOUSING))
                }
                Suburb | Town if roll < 15 => (*rng.pick(COMPOUND_PREFIXES), "移民新村"),
                _ => (*rng.pick(COMPOUND_PREFIXES), *rng.pick(COMPOUND_SUFFIXES)),
            };
            if prefix.chars().any(|c| suffix.contains(c)) || self.prefixes.contains(prefix) {
                continue;
            }
            let name = format!("{prefix}{suffix}");
            if self.names.insert(name.clone()) {
                self.prefixes.insert(prefix);
                return name;
            }
        }
    }
}

const SURNAMES: &[&str] = &[
    "王", "王", "王", "李", "李", "李", "张", "张", "张", "刘", "刘", "刘", "陈", "陈", "杨", "杨",
    "赵", "赵", "高", "高", "郭", "郭", "马", "马", "白", "白", "贺", "贺", "郝", "郝", "黄", "周",
    "吴", "徐", "孙", "胡", "朱", "林", "何", "罗", "梁", "宋", "郑", "谢", "韩", "唐", "冯", "于",
    "董", "程", "曹", "袁", "邓", "许", "傅", "沈", "彭", "吕", "苏", "卢", "蒋", "蔡", "贾", "丁",
    "魏", "薛", "叶", "阎", "余", "潘", "杜", "戴", "夏", "田", "任", "姜", "范", "方", "石", "姚",
    "崔", "康", "毛", "秦", "史", "侯", "邵", "孟", "段", "雷", "尹", "常", "武", "乔", "奇", "樊",
    "霍", "温", "牛", "闫",
];

const MALE_GIVEN: &[&str] = &[
    "伟", "强", "军", "磊", "勇", "杰", "涛", "明", "超", "刚", "平", "辉", "鹏", "华", "飞", "鑫",
    "波", "斌", "宇", "浩", "凯", "健", "俊", "帆", "旭", "宁", "龙", "林", "峰", "亮", "成", "东",
    "海", "建", "志", "国", "文", "永", "瑞", "福", "兵", "忠", "利", "春", "生",
];

const FEMALE_GIVEN: &[&str] = &[
    "芳", "娜", "敏", "静", "丽", "艳", "娟", "霞", "燕", "玲", "婷", "雪", "慧", "红", "英", "梅",
    "琳", "洁", "欣", "颖", "晶", "倩", "丹", "萍", "蕾", "璐", "佳", "怡", "悦", "楠", "秀", "兰",
    "荣", "云", "莉", "月", "婧", "雯",
];

const MONGOLIAN_NAMES: &[&str] = &[
    "巴特尔",
    "其其格",
    "乌日娜",
    "额尔敦",
    "苏日娜",
    "斯琴",
    "图雅",
    "阿拉坦",
    "朝鲁",
    "孟和",
    "格日勒",
    "萨仁",
    "乌兰",
    "宝音",
    "那仁",
    "哈斯",
    "布和",
    "敖登",
    "娜仁高娃",
    "额尔德尼",
    "吉日嘎拉",
    "乌力吉",
    "特木尔",
    "巴雅尔",
    "苏和",
    "达来",
    "斯琴高娃",
    "萨日娜",
    "阿古达木",
    "乌云",
    "其木格",
    "塔娜",
    "道尔吉",
    "朝格图",
    "巴图",
    "图门",
    "毕力格",
    "满都拉",
    "额尔敦毕力格",
    "包金花",
];

/// Surnames some Ordos Mongols use in front of a Mongolian given name.
const MONGOLIAN_SURNAMES: &[&str] = &["奇", "包", "白", "鲍", "韩"];

/// Mobile prefixes of the three operators.
pub(crate) const PHONE_PREFIXES: &[&str] = &[
    "130", "131", "132", "133", "134", "135", "136", "137", "138", "139", "150", "151", "152",
    "153", "155", "156", "157", "158", "159", "166", "177", "180", "181", "182", "183", "185",
    "186", "187", "188", "189", "199",
];

pub(crate) fn person_name(rng: &mut SplitMix64) -> String {
    if rng.below(100) < 12 {
        let given = rng.pick(MONGOLIAN_NAMES);
        return if rng.below(4) == 0 {
            format!("{}{given}", rng.pick(MONGOLIAN_SURNAMES))
        } else {
            (*given).to_owned()
        };
    }
    let surname = rng.pick(SURNAMES);
    let pool = if rng.below(2) == 0 {
        MALE_GIVEN
    } else {
        FEMALE_GIVEN
    };
    if rng.below(10) < 7 {
        format!("{surname}{}{}", rng.pick(pool), rng.pick(pool))
    } else {
        format!("{surname}{}", rng.pick(pool))
    }
}

/// Builds people with generated names and phone numbers unique across the dataset.
#[derive(Default)]
struct PeopleFactory {
    people: Vec<Person>,
    phones: BTreeSet<String>,
}

impl PeopleFactory {
    fn add(&mut self, id: String, role: Role) {
        let mut rng = stream("person", &id);
        let name = person_name(&mut rng);
        let phone = loop {
            let phone = format!("{}{:08}", rng.pick(PHONE_PREFIXES), rng.below(100_000_000));
            if self.phones.insert(phone.clone()) {
                break phone;
            }
        };
        let id: PersonId = id
            .parse()
            .expect("generated person ids use only code characters");
        self.people.push(Person {
            id,
            name,
            phone,
            role,
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Randomness and geometry
// ---------------------------------------------------------------------------------------------

fn area(code: &str) -> AreaCode {
    code.parse().expect("generated area codes are well formed")
}

/// splitmix64 (Steele, Lea, Flood 2014): tiny, fast and the same everywhere.
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (multiply-shift; the bias is below 2⁻⁴⁰ for the sizes used here).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// An independent stream for one purpose and one unit, so that editing one part of the tree does
/// not reshuffle the rest.
pub(crate) fn stream(purpose: &str, key: &(impl std::fmt::Display + ?Sized)) -> SplitMix64 {
    // FNV-1a over "purpose/key".
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in format!("{purpose}/{key}").bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut rng = SplitMix64(SEED ^ hash);
    rng.next_u64();
    rng
}

pub(crate) fn shuffled<T>(rng: &mut SplitMix64, items: impl Iterator<Item = T>) -> Vec<T> {
    let mut items: Vec<T> = items.collect();
    for i in (1..items.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        items.swap(i, j);
    }
    items
}

/// A point between `min` and `max` km from `centre` in a uniformly random direction, inside the
/// bounding box, rounded to 6 decimals (about 0.1 m). Rejection sampling keeps it free of
/// trigonometry, whose last bits may differ between platforms.
fn scatter(rng: &mut SplitMix64, centre: (f64, f64), (min_km, max_km): (f64, f64)) -> (f64, f64) {
    for _ in 0..256 {
        let dx = (rng.unit() * 2.0 - 1.0) * max_km;
        let dy = (rng.unit() * 2.0 - 1.0) * max_km;
        let squared = dx * dx + dy * dy;
        if squared < min_km * min_km || squared > max_km * max_km {
            continue;
        }
        let lat = round6(centre.0 + dy / KM_PER_DEG_LAT);
        let lon = round6(centre.1 + dx / KM_PER_DEG_LON);
        if in_bbox(lat, lon) {
            return (lat, lon);
        }
    }
    centre
}

fn round6(degrees: f64) -> f64 {
    (degrees * 1e6).round() / 1e6
}

fn in_bbox(lat: f64, lon: f64) -> bool {
    (BBOX.0..=BBOX.1).contains(&lat) && (BBOX.2..=BBOX.3).contains(&lon)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::{Level, OrgIndex};

    fn units_at(dataset: &OrgDataset, level: Level) -> Vec<&OrgUnit> {
        dataset
            .units
            .iter()
            .filter(|u| u.level() == level)
            .collect()
    }

    fn suffix(code: &AreaCode) -> u16 {
        code.as_str()[code.as_str().len() - 3..].parse().unwrap()
    }

    fn distance_km(a: &OrgUnit, b: &OrgUnit) -> f64 {
        let dy = (a.lat - b.lat) * KM_PER_DEG_LAT;
        let dx = (a.lon - b.lon) * KM_PER_DEG_LON;
        (dx * dx + dy * dy).sqrt()
    }

    #[test]
    fn counts_match_the_source_document() {
        let data = dataset();
        assert_eq!(units_at(&data, Level::City).len(), 1);
        assert_eq!(units_at(&data, Level::District).len(), 9);
        let streets = units_at(&data, Level::Street);
        assert_eq!(streets.len(), 59);
        assert_eq!(
            streets.iter().filter(|s| suffix(&s.code) < 100).count(),
            26,
            "streets (街道)"
        );
        assert_eq!(
            streets.iter().filter(|s| suffix(&s.code) >= 100).count(),
            33,
            "townships (镇/苏木)"
        );
        assert_eq!(units_at(&data, Level::Community).len(), 236);
        assert_eq!(units_at(&data, Level::Grid).len(), 1_564);
        assert_eq!(data.units.len(), 1 + 9 + 59 + 236 + 1_564);
    }

    #[test]
    fn districts_have_their_real_names_codes_and_seats() {
        let data = dataset();
        let city = &data.units[0];
        assert_eq!(
            (city.code.as_str(), city.name.as_str()),
            (CITY_CODE, "鄂尔多斯市")
        );
        assert_eq!((city.lat, city.lon), (39.6085, 109.7813));
        let districts: Vec<(&str, &str)> = units_at(&data, Level::District)
            .iter()
            .map(|d| (d.code.as_str(), d.name.as_str()))
            .collect();
        assert_eq!(
            districts,
            [
                ("150602", "东胜区"),
                ("150603", "康巴什区"),
                ("150621", "达拉特旗"),
                ("150622", "准格尔旗"),
                ("150623", "鄂托克前旗"),
                ("150624", "鄂托克旗"),
                ("150625", "杭锦旗"),
                ("150626", "乌审旗"),
                ("150627", "伊金霍洛旗"),
            ]
        );
        let dongsheng = units_at(&data, Level::District)[0];
        assert_eq!((dongsheng.lat, dongsheng.lon), (39.817, 109.963));
    }

    #[test]
    fn street_level_units_follow_the_code_scheme_and_the_four_classes() {
        let data = dataset();
        let streets = units_at(&data, Level::Street);
        let mut by_class: BTreeMap<&str, usize> = BTreeMap::new();
        for street in &streets {
            *by_class.entry(street.classification.as_str()).or_default() += 1;
            let number = suffix(&street.code);
            match number {
                1..=99 => assert!(street.name.ends_with("街道"), "{}", street.name),
                100..=199 => assert!(street.name.ends_with('镇'), "{}", street.name),
                _ => assert!(street.name.ends_with("苏木"), "{}", street.name),
            }
            let is_street = number < 100;
            let class_is_street = matches!(street.classification.as_str(), "建制街道" | "旗设街道");
            assert_eq!(
                is_street, class_is_street,
                "{} {}",
                street.name, street.classification
            );
        }
        for class in ["建制街道", "旗设街道", "参照街道", "城关中心镇"] {
            assert!(by_class.contains_key(class), "class {class} missing");
        }
        assert_eq!(by_class.len(), 4, "{by_class:?}");
        assert_eq!(by_class["建制街道"], 16);
        assert_eq!(by_class["旗设街道"], 10);
        assert_eq!(by_class["城关中心镇"], 7);
        assert_eq!(by_class["参照街道"], 26);
        // Each banner has exactly one seat town; the two city districts have none.
        for district in units_at(&data, Level::District) {
            let seats = streets
                .iter()
                .filter(|s| district.code.contains(&s.code) && s.classification == "城关中心镇")
                .count();
            assert_eq!(
                seats,
                usize::from(district.name.ends_with('旗')),
                "{}",
                district.name
            );
        }
        let names: BTreeSet<&str> = streets.iter().map(|s| s.name.as_str()).collect();
        for real in [
            "交通街道",
            "诃额伦街道",
            "哈巴格希街道",
            "康新街道",
            "阿勒腾席热镇",
            "薛家湾镇",
            "树林召镇",
        ] {
            assert!(names.contains(real), "{real}");
        }
    }

    #[test]
    fn communities_are_classified_named_and_numbered() {
        let data = dataset();
        let classes = BTreeSet::from(["城市中心社区", "城郊结合社区", "镇区社区", "工矿社区"]);
        let mut seen_classes = BTreeSet::new();
        let mut names_by_district: BTreeMap<AreaCode, BTreeSet<&str>> = BTreeMap::new();
        let mut numbers_by_street: BTreeMap<AreaCode, Vec<u16>> = BTreeMap::new();
        for community in units_at(&data, Level::Community) {
            assert!(
                classes.contains(community.classification.as_str()),
                "{}",
                community.classification
            );
            seen_classes.insert(community.classification.as_str());
            assert!(community.name.ends_with("社区"), "{}", community.name);
            let district = community.code.at_level(Level::District).unwrap();
            assert!(
                names_by_district
                    .entry(district)
                    .or_default()
                    .insert(&community.name),
                "{}",
                community.name
            );
            numbers_by_street
                .entry(community.code.parent().unwrap())
                .or_default()
                .push(suffix(&community.code));
        }
        assert_eq!(seen_classes, classes);
        assert_eq!(
            numbers_by_street.len(),
            59,
            "every street-level unit has communities"
        );
        for numbers in numbers_by_street.values() {
            assert_eq!(*numbers, (1..=numbers.len() as u16).collect::<Vec<_>>());
        }
        // Most communities are in the central city and the banner seats.
        let central = units_at(&data, Level::Community)
            .iter()
            .filter(|c| matches!(c.classification.as_str(), "城市中心社区" | "城郊结合社区"))
            .count();
        assert!(central * 4 > 236 * 3, "{central}");
    }

    #[test]
    fn every_community_has_grids_with_unique_names_nearby() {
        let data = dataset();
        let communities: BTreeMap<&AreaCode, &OrgUnit> = units_at(&data, Level::Community)
            .into_iter()
            .map(|c| (&c.code, c))
            .collect();
        let mut grids_by_community: BTreeMap<AreaCode, Vec<&OrgUnit>> = BTreeMap::new();
        for grid in units_at(&data, Level::Grid) {
            assert!(grid.classification.is_empty());
            grids_by_community
                .entry(grid.code.parent().unwrap())
                .or_default()
                .push(grid);
        }
        assert_eq!(grids_by_community.len(), communities.len());
        for (community_code, grids) in &grids_by_community {
            let community = communities[community_code];
            let names: BTreeSet<&str> = grids.iter().map(|g| g.name.as_str()).collect();
            assert_eq!(
                names.len(),
                grids.len(),
                "duplicate compound names in {}",
                community.name
            );
            let numbers: Vec<u16> = grids.iter().map(|g| suffix(&g.code)).collect();
            assert_eq!(numbers, (1..=grids.len() as u16).collect::<Vec<_>>());
            for grid in grids {
                let d = distance_km(grid, community);
                assert!(
                    d <= 1.0,
                    "{} is {d:.2} km from {}",
                    grid.name,
                    community.name
                );
            }
        }
    }

    #[test]
    fn coordinates_stay_in_ordos_and_near_their_parents() {
        let data = dataset();
        let by_code: BTreeMap<&AreaCode, &OrgUnit> =
            data.units.iter().map(|u| (&u.code, u)).collect();
        for unit in &data.units {
            assert!(
                in_bbox(unit.lat, unit.lon),
                "{} {} at {},{}",
                unit.code,
                unit.name,
                unit.lat,
                unit.lon
            );
            if unit.level() <= Level::Street {
                let parent = by_code[&unit.code.parent().unwrap()];
                let d = distance_km(unit, parent);
                assert!(d <= 35.5, "{} is {d:.1} km from {}", unit.name, parent.name);
            }
        }
    }

    #[test]
    fn units_come_parents_first_in_level_order() {
        let data = dataset();
        let levels: Vec<Level> = data.units.iter().map(OrgUnit::level).collect();
        assert!(
            levels.windows(2).all(|w| w[0] >= w[1]),
            "levels must not go back up"
        );
        let codes: Vec<&AreaCode> = data.units.iter().map(|u| &u.code).collect();
        assert!(codes[1..]
            .windows(2)
            .all(|w| w[0].level() != w[1].level() || w[0] < w[1]));
    }

    #[test]
    fn the_index_accepts_it_and_roles_are_complete() {
        let data = dataset();
        let index = OrgIndex::build(data.clone()).expect("the Ordos dataset is a consistent tree");
        assert_eq!(index.count(Level::Grid), 1_564);

        assert_eq!(data.departments.len(), 10 * DepartmentKind::ALL.len());
        let city = area(CITY_CODE);
        for unit in data.units.iter().filter(|u| u.level() >= Level::District) {
            for kind in DepartmentKind::ALL {
                let department = index
                    .department(&DepartmentCode::from_parts(&unit.code, kind))
                    .unwrap();
                assert_eq!(department.name, format!("{}{}", unit.name, kind.name_zh()));
                assert_eq!(department.area, unit.code);
            }
        }
        let names: BTreeSet<&str> = data.departments.iter().map(|d| d.name.as_str()).collect();
        assert!(names.contains("东胜区城市管理综合执法局"));
        assert!(names.contains("鄂尔多斯市公安局"));

        let mut workers: BTreeMap<&AreaCode, usize> = BTreeMap::new();
        let mut liaisons: BTreeMap<&DepartmentCode, usize> = BTreeMap::new();
        let mut operators: BTreeSet<&AreaCode> = BTreeSet::new();
        let mut handlers = 0;
        for person in &data.people {
            match &person.role {
                Role::GridWorker { grid } => {
                    assert_eq!(person.id.as_str(), format!("gw-{grid}"));
                    *workers.entry(grid).or_default() += 1;
                }
                Role::Liaison { department } => {
                    assert_eq!(person.id.as_str(), format!("li-{department}"));
                    *liaisons.entry(department).or_default() += 1;
                }
                Role::Operator { area } => {
                    assert_eq!(person.id.as_str(), format!("op-{area}"));
                    assert!(operators.insert(area));
                }
                Role::Handler { unit } => {
                    assert_eq!(person.id.as_str(), format!("hd-{unit}"));
                    handlers += 1;
                }
                Role::Leader { .. } => panic!("leaders come with `leaders`, not the dataset"),
            }
        }
        assert_eq!(workers.len(), 1_564);
        assert!(workers.values().all(|&n| n == 1));
        assert_eq!(liaisons.len(), data.departments.len());
        assert!(liaisons.values().all(|&n| n == 1));
        assert_eq!(operators.len(), 10);
        assert!(operators.contains(&city));
        for district in units_at(&data, Level::District) {
            assert!(operators.contains(&district.code));
        }
        assert_eq!(handlers, 59 + 236, "one handler per street and community");
        assert_eq!(data.people.len(), 1_564 + 190 + 10 + 59 + 236);
    }

    #[test]
    fn people_have_plausible_names_and_unique_phones() {
        let data = dataset();
        let mut phones = BTreeSet::new();
        for person in &data.people {
            let chars = person.name.chars().count();
            assert!((2..=7).contains(&chars), "{}", person.name);
            assert_eq!(person.phone.len(), 11, "{}", person.phone);
            assert!(
                person.phone.starts_with('1') && person.phone.bytes().all(|b| b.is_ascii_digit())
            );
            assert!(
                phones.insert(person.phone.as_str()),
                "duplicate phone {}",
                person.phone
            );
        }
        let mongolian = data
            .people
            .iter()
            .filter(|p| MONGOLIAN_NAMES.iter().any(|m| p.name.ends_with(m)))
            .count();
        assert!(mongolian > data.people.len() / 20, "{mongolian}");
    }

    #[test]
    fn it_is_the_same_on_every_call() {
        assert_eq!(dataset(), dataset());
        // Pinned values: a change here changes every machine's seed data.
        let data = dataset();
        let first_grid = units_at(&data, Level::Grid)[0];
        assert_eq!(first_grid.code.as_str(), "150602001001001");
        let first_street = units_at(&data, Level::Street)[0];
        assert_eq!(
            (first_street.code.as_str(), first_street.name.as_str()),
            ("150602001", "交通街道")
        );
    }
}
