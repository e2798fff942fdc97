//! The org as a city's staff keep it (docs/operations.md, "The city's organisation"): sheets of
//! rows — 单位 (units), 部门 (departments), 人员 (people) — and grid boundaries, checked cell by cell
//! against each other and against the org already loaded, and the difference from that org.
//!
//! A sheet that is given replaces that part of the org whole (units or departments missing from
//! it are removed, if nothing refers to them); a sheet that is not given leaves that part as it
//! is. People are the exception: an import never removes a person, it lists those not in the
//! file as kept (leaving is `whistle people offboard`, which hands their work over). Boundaries
//! given set those grids' boundaries; grids without a feature keep theirs.
//!
//! Parsing the files (XLSX, CSV, GeoJSON) is the `whistle-orgfile` crate's; this module only sees
//! cells as text, with the row number Excel shows, so that every problem names its cell.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{
    AreaCode, Department, DepartmentCode, DepartmentKind, Level, OrgDataset, OrgUnit, Person,
    PersonId, Role,
};

/// Sheet (and CSV file) names.
pub const UNITS: &str = "单位";
pub const DEPARTMENTS: &str = "部门";
pub const PEOPLE: &str = "人员";

/// Column headers of each sheet, in the templates' order.
pub const UNIT_COLUMNS: [&str; 7] = ["编码", "上级编码", "层级", "名称", "分类", "纬度", "经度"];
pub const DEPARTMENT_COLUMNS: [&str; 4] = ["编码", "名称", "类型", "所属区域"];
pub const PEOPLE_COLUMNS: [&str; 5] = ["编号", "姓名", "电话", "角色", "岗位"];

/// The Chinese name of a level as the templates write it (城市 for the city).
pub fn level_zh(level: Level) -> &'static str {
    match level {
        Level::City => "城市",
        other => other.name_zh(),
    }
}

fn parse_level(value: &str) -> Option<Level> {
    Level::ALL
        .into_iter()
        .find(|l| value == level_zh(*l) || value == l.name_zh() || value == l.as_str())
}

/// The Chinese name of a role as the templates write it.
pub fn role_zh(kind: &str) -> &'static str {
    match kind {
        "grid_worker" => "网格员",
        "liaison" => "部门报到人",
        "operator" => "指挥中心",
        "leader" => "结对领导",
        _ => "街道社区干部",
    }
}

const ROLE_KINDS: [&str; 5] = ["grid_worker", "liaison", "operator", "handler", "leader"];

fn parse_role(value: &str) -> Option<&'static str> {
    ROLE_KINDS
        .into_iter()
        .find(|k| value == *k || value == role_zh(k))
}

fn parse_kind(value: &str) -> Option<DepartmentKind> {
    DepartmentKind::from_slug(value).or_else(|| {
        DepartmentKind::ALL
            .into_iter()
            .find(|k| k.name_zh() == value)
    })
}

/// What a role is held at (its 岗位): a grid, a department or an area.
pub fn post(role: &Role) -> String {
    match role {
        Role::GridWorker { grid } => grid.to_string(),
        Role::Liaison { department } => department.to_string(),
        Role::Operator { area } | Role::Handler { unit: area } | Role::Leader { area } => {
            area.to_string()
        }
    }
}

/// One sheet as read: its header row and its data rows, each with the row number Excel shows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sheet {
    pub name: String,
    /// Row number of the header row (1 unless the sheet starts lower).
    pub header_row: u32,
    pub headers: Vec<String>,
    pub rows: Vec<SheetRow>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SheetRow {
    pub number: u32,
    pub cells: Vec<String>,
}

/// A grid's boundary: a GeoJSON Polygon or MultiPolygon geometry, positions `[lon, lat]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "coordinates")]
pub enum Boundary {
    Polygon(Vec<Vec<Vec<f64>>>),
    MultiPolygon(Vec<Vec<Vec<Vec<f64>>>>),
}

impl Boundary {
    /// Why this is not a usable boundary: rings of at least 4 positions, closed (last = first),
    /// each `[lon, lat]` (an altitude may follow) in range.
    pub fn check(&self) -> Result<(), String> {
        let polygons: Vec<&Vec<Vec<Vec<f64>>>> = match self {
            Boundary::Polygon(rings) => vec![rings],
            Boundary::MultiPolygon(polygons) => polygons.iter().collect(),
        };
        if polygons.is_empty() {
            return Err("没有多边形".into());
        }
        for (p, rings) in polygons.iter().enumerate() {
            if rings.is_empty() {
                return Err(format!("第{}个多边形没有环", p + 1));
            }
            for (r, ring) in rings.iter().enumerate() {
                let at = if matches!(self, Boundary::MultiPolygon(_)) {
                    format!("第{}个多边形第{}个环", p + 1, r + 1)
                } else {
                    format!("第{}个环", r + 1)
                };
                if ring.len() < 4 {
                    return Err(format!("{at}只有{}个点，至少需要4个", ring.len()));
                }
                for (i, position) in ring.iter().enumerate() {
                    let [lon, lat] = match position.as_slice() {
                        [lon, lat] | [lon, lat, _] => [*lon, *lat],
                        _ => return Err(format!("{at}第{}个点不是[经度, 纬度]", i + 1)),
                    };
                    if !(-180.0..=180.0).contains(&lon) || !(-90.0..=90.0).contains(&lat) {
                        return Err(format!(
                            "{at}第{}个点 [{lon}, {lat}] 超出范围（经度±180，纬度±90）",
                            i + 1
                        ));
                    }
                }
                if ring.first().map(|p| &p[..2]) != ring.last().map(|p| &p[..2]) {
                    return Err(format!("{at}未闭合：首末点不同"));
                }
            }
        }
        Ok(())
    }
}

/// One feature of a GeoJSON file as read: its `properties.code` and geometry, or why the
/// geometry could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct BoundaryFeature {
    /// The file's name, reported as the "sheet".
    pub file: String,
    /// 1-based position in `features`.
    pub number: u32,
    pub code: String,
    pub geometry: Result<Boundary, String>,
}

/// Everything an import was given; `None` leaves that part of the org as it is.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OrgInput {
    pub units: Option<Sheet>,
    pub departments: Option<Sheet>,
    pub people: Option<Sheet>,
    pub boundaries: Option<Vec<BoundaryFeature>>,
}

/// The org as loaded: the dataset and the grids' boundaries.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OrgState {
    pub dataset: OrgDataset,
    pub boundaries: BTreeMap<AreaCode, Boundary>,
}

/// One bad cell: where (sheet or file, the row Excel shows — `None` for a row that is not in the
/// file — and the column header), the value, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    pub sheet: String,
    pub row: Option<u32>,
    pub column: String,
    pub value: String,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.row {
            // A GeoJSON file's "rows" are its features.
            Some(row) if self.sheet.ends_with("json") => {
                write!(f, "{} 第{}个要素", self.sheet, row)?
            }
            Some(row) => write!(f, "{} 第{}行", self.sheet, row)?,
            None => write!(f, "{} (不在文件中)", self.sheet)?,
        }
        write!(f, " {} {:?}: {}", self.column, self.value, self.reason)
    }
}

/// One field that changes, before → after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldChange {
    pub field: &'static str,
    pub before: String,
    pub after: String,
}

/// How one unit, department, person or boundary differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Added {
        key: String,
        name: String,
    },
    Changed {
        key: String,
        name: String,
        fields: Vec<FieldChange>,
    },
    Removed {
        key: String,
        name: String,
    },
    /// A person not in the people sheet: kept, as an import never removes anyone.
    Kept {
        key: String,
        name: String,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Added { key, name } => write!(f, "+ {key} {name}"),
            Change::Removed { key, name } => write!(f, "- {key} {name}"),
            Change::Kept { key, name } => write!(
                f,
                "= {key} {name}: 不在文件中，保留 (not in the file, kept; use `whistle people offboard`)"
            ),
            Change::Changed { key, name, fields } => {
                write!(f, "~ {key} {name}:")?;
                for (i, c) in fields.iter().enumerate() {
                    let sep = if i == 0 { " " } else { "; " };
                    write!(f, "{sep}{} {:?} → {:?}", c.field, c.before, c.after)?;
                }
                Ok(())
            }
        }
    }
}

/// The difference between the loaded org and the proposed one, by part.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Diff {
    pub units: Vec<Change>,
    pub departments: Vec<Change>,
    pub people: Vec<Change>,
    pub boundaries: Vec<Change>,
}

/// Counts of a diff, for the version's summary and the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Counts {
    pub added: u32,
    pub changed: u32,
    pub removed: u32,
}

impl Diff {
    /// Whether applying it would write anything (kept people write nothing).
    pub fn is_empty(&self) -> bool {
        self.parts()
            .iter()
            .all(|(_, changes)| changes.iter().all(|c| matches!(c, Change::Kept { .. })))
    }

    pub fn parts(&self) -> [(&'static str, &Vec<Change>); 4] {
        [
            (UNITS, &self.units),
            (DEPARTMENTS, &self.departments),
            (PEOPLE, &self.people),
            ("网格边界", &self.boundaries),
        ]
    }

    pub fn counts(changes: &[Change]) -> Counts {
        let mut counts = Counts::default();
        for change in changes {
            match change {
                Change::Added { .. } => counts.added += 1,
                Change::Changed { .. } => counts.changed += 1,
                Change::Removed { .. } => counts.removed += 1,
                Change::Kept { .. } => {}
            }
        }
        counts
    }

    /// One line: `单位 +1 ~2 -0; 部门 …`.
    pub fn summary(&self) -> String {
        self.parts()
            .iter()
            .map(|(part, changes)| {
                let c = Diff::counts(changes);
                format!("{part} +{} ~{} -{}", c.added, c.changed, c.removed)
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// What an import writes: the rows to insert or update, the rows to delete, and the diff shown.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// Added or changed units (parents first), departments and people.
    pub upsert: OrgDataset,
    /// Units to delete, children first.
    pub remove_units: Vec<AreaCode>,
    pub remove_departments: Vec<DepartmentCode>,
    /// Grids whose boundary is set.
    pub boundaries: Vec<(AreaCode, Boundary)>,
    pub diff: Diff,
    /// The whole org after the import.
    pub proposed: OrgState,
}

/// Finds columns by header and reads cells, collecting problems.
struct Reader<'a> {
    sheet: &'a Sheet,
    columns: HashMap<&'static str, usize>,
    problems: &'a mut Vec<Problem>,
}

impl<'a> Reader<'a> {
    fn new(
        sheet: &'a Sheet,
        wanted: &[&'static str],
        problems: &'a mut Vec<Problem>,
    ) -> Option<Self> {
        let mut columns = HashMap::new();
        let mut missing = false;
        for &header in wanted {
            match sheet.headers.iter().position(|h| h.trim() == header) {
                Some(i) => {
                    columns.insert(header, i);
                }
                None => {
                    missing = true;
                    problems.push(Problem {
                        sheet: sheet.name.clone(),
                        row: Some(sheet.header_row),
                        column: header.to_owned(),
                        value: String::new(),
                        reason: "缺少此列".into(),
                    });
                }
            }
        }
        (!missing).then_some(Reader {
            sheet,
            columns,
            problems,
        })
    }

    fn cell<'r>(&self, row: &'r SheetRow, column: &str) -> &'r str {
        self.columns
            .get(column)
            .and_then(|&i| row.cells.get(i))
            .map(|c| c.trim())
            .unwrap_or("")
    }

    fn problem(&mut self, row: &SheetRow, column: &str, reason: impl Into<String>) {
        let value = self.cell(row, column).to_owned();
        self.problems.push(Problem {
            sheet: self.sheet.name.clone(),
            row: Some(row.number),
            column: column.to_owned(),
            value,
            reason: reason.into(),
        });
    }

    /// The data rows, without wholly empty ones.
    fn rows(&self) -> impl Iterator<Item = &'a SheetRow> + use<'a> {
        self.sheet
            .rows
            .iter()
            .filter(|r| r.cells.iter().any(|c| !c.trim().is_empty()))
    }

    fn required(&mut self, row: &SheetRow, column: &str) -> Option<String> {
        let value = self.cell(row, column);
        if value.is_empty() {
            self.problem(row, column, "不能为空");
            return None;
        }
        Some(value.to_owned())
    }

    fn parsed<T: std::str::FromStr>(&mut self, row: &SheetRow, column: &str) -> Option<T>
    where
        T::Err: fmt::Display,
    {
        let value = self.required(row, column)?;
        match value.parse() {
            Ok(parsed) => Some(parsed),
            Err(e) => {
                self.problem(row, column, e.to_string());
                None
            }
        }
    }

    fn coordinate(&mut self, row: &SheetRow, column: &str, limit: f64) -> Option<f64> {
        let value = self.required(row, column)?;
        match value.parse::<f64>() {
            Ok(v) if v.is_finite() && (-limit..=limit).contains(&v) => Some(v),
            Ok(_) => {
                self.problem(row, column, format!("超出范围（-{limit}～{limit}）"));
                None
            }
            Err(_) => {
                self.problem(row, column, "不是数字");
                None
            }
        }
    }

    /// Whether `key` was seen on an earlier row; names that row.
    fn unique(
        &mut self,
        seen: &mut HashMap<String, u32>,
        row: &SheetRow,
        column: &str,
        key: &str,
    ) -> bool {
        match seen.get(key) {
            Some(first) => {
                let first = *first;
                self.problem(row, column, format!("编码重复（与第{first}行相同）"));
                false
            }
            None => {
                seen.insert(key.to_owned(), row.number);
                true
            }
        }
    }
}

/// Units of the sheet, parents first, with the row each came from.
/// The units of the sheet, parents first, each with its row and whether its 上级编码 cell is
/// right; and every code the sheet names on a row with a valid code, whatever else is wrong with
/// that row (so that its children and departments are not reported for it too).
type UnitRows = (Vec<(OrgUnit, SheetRow, bool)>, BTreeSet<AreaCode>);

fn read_units(sheet: &Sheet, problems: &mut Vec<Problem>) -> UnitRows {
    let Some(mut r) = Reader::new(sheet, &UNIT_COLUMNS, problems) else {
        return Default::default();
    };
    let mut codes = BTreeSet::new();
    let mut seen = HashMap::new();
    let mut units = Vec::new();
    for row in r.rows() {
        let code: Option<AreaCode> = r.parsed(row, "编码");
        let code = code.filter(|c| r.unique(&mut seen, row, "编码", c.as_str()));
        codes.extend(code.clone());
        let level = match r.required(row, "层级") {
            Some(value) => match parse_level(&value) {
                Some(level) => Some(level),
                None => {
                    r.problem(
                        row,
                        "层级",
                        "应为 城市/旗区/街道/社区/网格 或 city/district/street/community/grid",
                    );
                    None
                }
            },
            None => None,
        };
        if let (Some(code), Some(level)) = (&code, level) {
            if code.level() != level {
                r.problem(
                    row,
                    "层级",
                    format!("与编码的位数不符：编码 {code} 是{}", level_zh(code.level())),
                );
            }
        }
        let parent = r.cell(row, "上级编码").to_owned();
        let parent_ok = code
            .as_ref()
            .is_some_and(|code| check_parent(&mut r, row, code, &parent));
        let name = r.required(row, "名称");
        let lat = r.coordinate(row, "纬度", 90.0);
        let lon = r.coordinate(row, "经度", 180.0);
        if let (Some(code), Some(name), Some(lat), Some(lon)) = (code, name, lat, lon) {
            let classification = r.cell(row, "分类").to_owned();
            units.push((
                OrgUnit {
                    code,
                    name,
                    classification,
                    lat,
                    lon,
                },
                row.clone(),
                parent_ok,
            ));
        }
    }
    units.sort_by(|a, b| {
        (a.0.code.as_str().len(), &a.0.code).cmp(&(b.0.code.as_str().len(), &b.0.code))
    });
    (units, codes)
}

/// Checks the 上级编码 cell against the code: empty for the city, else the unit's own parent.
fn check_parent(r: &mut Reader<'_>, row: &SheetRow, code: &AreaCode, parent: &str) -> bool {
    let Some(expected) = code.parent() else {
        if !parent.is_empty() {
            r.problem(row, "上级编码", "城市没有上级单位，应留空");
        }
        return parent.is_empty();
    };
    if parent.is_empty() {
        r.problem(row, "上级编码", format!("不能为空（应为 {expected}）"));
        return false;
    }
    let parent: AreaCode = match parent.parse() {
        Ok(parent) => parent,
        Err(e) => {
            r.problem(row, "上级编码", format!("{e}"));
            return false;
        }
    };
    if parent == expected {
        return true;
    }
    if !parent.contains(code) {
        r.problem(
            row,
            "编码",
            format!("未以上级编码 {} 开头", parent.prefix()),
        );
    } else {
        r.problem(
            row,
            "上级编码",
            format!(
                "层级顺序不对：{}的上级应为{}（{expected}），不是{}",
                level_zh(code.level()),
                code.level().up().map(level_zh).unwrap_or(""),
                level_zh(parent.level())
            ),
        );
    }
    false
}

/// The departments of the sheet, and every code it names on a row with a valid code.
fn read_departments(
    sheet: &Sheet,
    units: &BTreeSet<AreaCode>,
    problems: &mut Vec<Problem>,
) -> (Vec<Department>, BTreeSet<DepartmentCode>) {
    let Some(mut r) = Reader::new(sheet, &DEPARTMENT_COLUMNS, problems) else {
        return Default::default();
    };
    let mut codes = BTreeSet::new();
    let mut seen = HashMap::new();
    let mut departments = Vec::new();
    for row in r.rows() {
        let code: Option<DepartmentCode> = r.parsed(row, "编码");
        let code = code.filter(|c| r.unique(&mut seen, row, "编码", c.as_str()));
        codes.extend(code.clone());
        let name = r.required(row, "名称");
        let kind = match r.required(row, "类型") {
            Some(value) => parse_kind(&value).or_else(|| {
                r.problem(
                    row,
                    "类型",
                    "未知的部门类型（应为如 城市管理综合执法局 或 urban_management）",
                );
                None
            }),
            None => None,
        };
        let area: Option<AreaCode> = r.parsed(row, "所属区域");
        let area = area.filter(|area| {
            if !units.contains(area) {
                r.problem(row, "所属区域", "区域不存在（不在单位中）");
                false
            } else if area.level() < Level::District {
                r.problem(
                    row,
                    "所属区域",
                    format!("应为旗区或城市，不是{}", level_zh(area.level())),
                );
                false
            } else {
                true
            }
        });
        if let (Some(code), Some(kind), Some(area)) = (&code, kind, &area) {
            let expected = DepartmentCode::from_parts(area, kind);
            if *code != expected {
                r.problem(row, "编码", format!("应为 {expected}（所属区域-类型）"));
                continue;
            }
        }
        if let (Some(code), Some(name), Some(kind), Some(area)) = (code, name, kind, area) {
            departments.push(Department {
                code,
                name,
                kind,
                area,
            });
        }
    }
    (departments, codes)
}

/// Whether a phone number is written as staff would: digits, with +, - or spaces between.
fn phone_ok(phone: &str) -> bool {
    let digits = phone.chars().filter(char::is_ascii_digit).count();
    (5..=20).contains(&digits)
        && phone
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | ' '))
}

fn read_people(
    sheet: &Sheet,
    units: &BTreeSet<AreaCode>,
    departments: &BTreeSet<DepartmentCode>,
    problems: &mut Vec<Problem>,
) -> Vec<Person> {
    let Some(mut r) = Reader::new(sheet, &PEOPLE_COLUMNS, problems) else {
        return Vec::new();
    };
    let mut seen = HashMap::new();
    let mut people = Vec::new();
    for row in r.rows() {
        let id: Option<PersonId> = r.parsed(row, "编号");
        let id = id.filter(|id| r.unique(&mut seen, row, "编号", id.as_str()));
        let name = r.required(row, "姓名");
        let phone = r.required(row, "电话").filter(|phone| {
            phone_ok(phone) || {
                r.problem(row, "电话", "不是电话号码（5–20位数字，可含 + - 空格）");
                false
            }
        });
        let kind = match r.required(row, "角色") {
            Some(value) => parse_role(&value).or_else(|| {
                r.problem(row, "角色", "应为 网格员/部门报到人/指挥中心/街道社区干部/结对领导 或 grid_worker/liaison/operator/handler/leader");
                None
            }),
            None => None,
        };
        let role = kind.and_then(|kind| {
            let post = r.cell(row, "岗位").to_owned();
            let what = match kind {
                "grid_worker" => "网格编码",
                "liaison" => "部门编码",
                "operator" | "leader" => "旗区或城市编码",
                _ => "街道或社区编码",
            };
            if post.is_empty() {
                r.problem(
                    row,
                    "岗位",
                    format!("角色{}须填写岗位（{what}）", role_zh(kind)),
                );
                return None;
            }
            let role = match kind {
                "liaison" => match post.parse::<DepartmentCode>() {
                    Ok(d) if departments.contains(&d) => Role::Liaison { department: d },
                    Ok(_) => {
                        r.problem(row, "岗位", "部门不存在（不在部门中）");
                        return None;
                    }
                    Err(e) => {
                        r.problem(row, "岗位", e.to_string());
                        return None;
                    }
                },
                _ => {
                    let area: AreaCode = match post.parse() {
                        Ok(area) => area,
                        Err(e) => {
                            r.problem(row, "岗位", e.to_string());
                            return None;
                        }
                    };
                    if !units.contains(&area) {
                        r.problem(row, "岗位", "单位不存在（不在单位中）");
                        return None;
                    }
                    let level = area.level();
                    let fits = match kind {
                        "grid_worker" => level == Level::Grid,
                        "operator" | "leader" => level >= Level::District,
                        _ => matches!(level, Level::Street | Level::Community),
                    };
                    if !fits {
                        r.problem(
                            row,
                            "岗位",
                            format!("{}的岗位应为{what}，不是{}", role_zh(kind), level_zh(level)),
                        );
                        return None;
                    }
                    match kind {
                        "grid_worker" => Role::GridWorker { grid: area },
                        "operator" => Role::Operator { area },
                        "leader" => Role::Leader { area },
                        _ => Role::Handler { unit: area },
                    }
                }
            };
            Some(role)
        });
        if let (Some(id), Some(name), Some(phone), Some(role)) = (id, name, phone, role) {
            people.push(Person {
                id,
                name,
                phone,
                role,
            });
        }
    }
    people
}

/// Checks `input` against itself and `current`, and works out what applying it writes. Every
/// problem is reported, never only the first; a plan is returned only when there are none.
pub fn plan(input: &OrgInput, current: &OrgState) -> Result<Plan, Vec<Problem>> {
    let mut problems = Vec::new();
    let file_units = input.units.as_ref().map(|s| read_units(s, &mut problems));
    let (units, unit_codes): (Vec<OrgUnit>, BTreeSet<AreaCode>) = match &file_units {
        Some((rows, codes)) => (
            rows.iter().map(|(u, _, _)| u.clone()).collect(),
            codes.clone(),
        ),
        None => (
            current.dataset.units.clone(),
            current
                .dataset
                .units
                .iter()
                .map(|u| u.code.clone())
                .collect(),
        ),
    };
    if let Some((rows, _)) = &file_units {
        for (unit, row, _) in rows.iter().filter(|(_, _, parent_ok)| *parent_ok) {
            let Some(parent) = unit.code.parent() else {
                continue;
            };
            if !unit_codes.contains(&parent) {
                problems.push(Problem {
                    sheet: UNITS.into(),
                    row: Some(row.number),
                    column: "上级编码".into(),
                    value: parent.to_string(),
                    reason: "上级单位不存在（不在单位中）".into(),
                });
            }
        }
    }

    let file_departments = input
        .departments
        .as_ref()
        .map(|s| read_departments(s, &unit_codes, &mut problems));
    let (departments, department_codes): (Vec<Department>, BTreeSet<DepartmentCode>) =
        match file_departments {
            Some(read) => read,
            None => (
                current.dataset.departments.clone(),
                current
                    .dataset
                    .departments
                    .iter()
                    .map(|d| d.code.clone())
                    .collect(),
            ),
        };

    let file_people = input
        .people
        .as_ref()
        .map(|s| read_people(s, &unit_codes, &department_codes, &mut problems));
    let mut people: Vec<Person> = current.dataset.people.clone();
    let mut kept = Vec::new();
    if let Some(file_people) = &file_people {
        let given: BTreeSet<&PersonId> = file_people.iter().map(|p| &p.id).collect();
        kept = people
            .iter()
            .filter(|p| !given.contains(&p.id))
            .map(|p| Change::Kept {
                key: p.id.to_string(),
                name: p.name.clone(),
            })
            .collect();
        let mut by_id: BTreeMap<PersonId, Person> =
            people.into_iter().map(|p| (p.id.clone(), p)).collect();
        for person in file_people {
            by_id.insert(person.id.clone(), person.clone());
        }
        people = by_id.into_values().collect();
    }

    // Removing what something not in the file still refers to: a refusal with the reason.
    let removed_units: BTreeSet<&AreaCode> = current
        .dataset
        .units
        .iter()
        .map(|u| &u.code)
        .filter(|c| !unit_codes.contains(*c))
        .collect();
    let removed_departments: BTreeSet<&DepartmentCode> = current
        .dataset
        .departments
        .iter()
        .map(|d| &d.code)
        .filter(|c| !department_codes.contains(*c))
        .collect();
    let refuse = |problems: &mut Vec<Problem>, sheet: &str, key: String, reason: String| {
        problems.push(Problem {
            sheet: sheet.into(),
            row: None,
            column: "编码".into(),
            value: key,
            reason,
        })
    };
    if input.departments.is_none() {
        for d in &departments {
            if removed_units.contains(&d.area) {
                refuse(
                    &mut problems,
                    UNITS,
                    d.area.to_string(),
                    format!("不能删除：部门 {}（{}）属于它", d.code, d.name),
                );
            }
        }
    }
    let given_people: BTreeSet<&PersonId> = file_people.iter().flatten().map(|p| &p.id).collect();
    for person in people.iter().filter(|p| !given_people.contains(&p.id)) {
        let post = post(&person.role);
        let reason = format!("不能删除：人员 {}（{}）的岗位在此", person.id, person.name);
        match &person.role {
            Role::Liaison { department } if removed_departments.contains(department) => {
                refuse(&mut problems, DEPARTMENTS, post, reason)
            }
            Role::GridWorker { grid: area }
            | Role::Operator { area }
            | Role::Handler { unit: area }
            | Role::Leader { area }
                if removed_units.contains(area) =>
            {
                refuse(&mut problems, UNITS, post, reason)
            }
            _ => {}
        }
    }

    let mut boundaries = current.boundaries.clone();
    boundaries.retain(|code, _| unit_codes.contains(code));
    let mut set_boundaries = Vec::new();
    if let Some(features) = &input.boundaries {
        let mut seen: HashMap<&str, u32> = HashMap::new();
        for feature in features {
            let mut bad = |column: &str, value: &str, reason: String| {
                problems.push(Problem {
                    sheet: feature.file.clone(),
                    row: Some(feature.number),
                    column: column.into(),
                    value: value.into(),
                    reason,
                })
            };
            let grid = match feature.code.parse::<AreaCode>() {
                Err(e) => {
                    bad("properties.code", &feature.code, e.to_string());
                    None
                }
                Ok(code) if !unit_codes.contains(&code) => {
                    bad(
                        "properties.code",
                        &feature.code,
                        "网格不存在（不在单位中）".into(),
                    );
                    None
                }
                Ok(code) if code.level() != Level::Grid => {
                    bad(
                        "properties.code",
                        &feature.code,
                        format!("边界只用于网格，这是{}", level_zh(code.level())),
                    );
                    None
                }
                Ok(code) => Some(code),
            };
            if let Some(first) = seen.insert(&feature.code, feature.number) {
                bad(
                    "properties.code",
                    &feature.code,
                    format!("重复（与第{first}个要素相同）"),
                );
                continue;
            }
            let geometry = match &feature.geometry {
                Ok(g) => match g.check() {
                    Ok(()) => Some(g),
                    Err(reason) => {
                        bad("geometry", "", reason);
                        None
                    }
                },
                Err(reason) => {
                    bad("geometry", "", reason.clone());
                    None
                }
            };
            if let (Some(grid), Some(geometry)) = (grid, geometry) {
                if boundaries.get(&grid) != Some(geometry) {
                    set_boundaries.push((grid.clone(), geometry.clone()));
                }
                boundaries.insert(grid, geometry.clone());
            }
        }
    }

    if !problems.is_empty() {
        problems.sort_by(|a, b| {
            (a.row.is_some(), &a.sheet, a.row).cmp(&(b.row.is_some(), &b.sheet, b.row))
        });
        // Sheets in the templates' order, then files, then refusals of removals.
        let order = |p: &Problem| match (p.row.is_some(), p.sheet.as_str()) {
            (true, UNITS) => 0,
            (true, DEPARTMENTS) => 1,
            (true, PEOPLE) => 2,
            (true, _) => 3,
            (false, _) => 4,
        };
        problems.sort_by_key(|p| order(p));
        return Err(problems);
    }

    let proposed = OrgState {
        dataset: OrgDataset {
            units,
            departments,
            people,
        },
        boundaries,
    };
    Ok(build_plan(current, proposed, set_boundaries, kept))
}

fn build_plan(
    current: &OrgState,
    proposed: OrgState,
    set_boundaries: Vec<(AreaCode, Boundary)>,
    kept: Vec<Change>,
) -> Plan {
    let mut plan = Plan::default();
    let num = |v: f64| v.to_string();

    let before: BTreeMap<&AreaCode, &OrgUnit> =
        current.dataset.units.iter().map(|u| (&u.code, u)).collect();
    for unit in &proposed.dataset.units {
        match before.get(&unit.code) {
            None => {
                plan.diff.units.push(Change::Added {
                    key: unit.code.to_string(),
                    name: unit.name.clone(),
                });
                plan.upsert.units.push(unit.clone());
            }
            Some(old) => {
                let fields = changed_fields(&[
                    ("名称", old.name.clone(), unit.name.clone()),
                    (
                        "分类",
                        old.classification.clone(),
                        unit.classification.clone(),
                    ),
                    ("纬度", num(old.lat), num(unit.lat)),
                    ("经度", num(old.lon), num(unit.lon)),
                ]);
                if !fields.is_empty() {
                    plan.diff.units.push(Change::Changed {
                        key: unit.code.to_string(),
                        name: unit.name.clone(),
                        fields,
                    });
                    plan.upsert.units.push(unit.clone());
                }
            }
        }
    }
    let after_units: BTreeSet<&AreaCode> = proposed.dataset.units.iter().map(|u| &u.code).collect();
    for unit in current.dataset.units.iter().rev() {
        if !after_units.contains(&unit.code) {
            plan.diff.units.push(Change::Removed {
                key: unit.code.to_string(),
                name: unit.name.clone(),
            });
            plan.remove_units.push(unit.code.clone());
        }
    }
    // Children first, whatever order the database gave.
    plan.remove_units
        .sort_by(|a, b| (b.as_str().len(), b).cmp(&(a.as_str().len(), a)));

    let before: BTreeMap<&DepartmentCode, &Department> = current
        .dataset
        .departments
        .iter()
        .map(|d| (&d.code, d))
        .collect();
    for department in &proposed.dataset.departments {
        match before.get(&department.code) {
            None => {
                plan.diff.departments.push(Change::Added {
                    key: department.code.to_string(),
                    name: department.name.clone(),
                });
                plan.upsert.departments.push(department.clone());
            }
            Some(old) => {
                let fields = changed_fields(&[
                    ("名称", old.name.clone(), department.name.clone()),
                    (
                        "类型",
                        old.kind.name_zh().into(),
                        department.kind.name_zh().into(),
                    ),
                    (
                        "所属区域",
                        old.area.to_string(),
                        department.area.to_string(),
                    ),
                ]);
                if !fields.is_empty() {
                    plan.diff.departments.push(Change::Changed {
                        key: department.code.to_string(),
                        name: department.name.clone(),
                        fields,
                    });
                    plan.upsert.departments.push(department.clone());
                }
            }
        }
    }
    let after: BTreeSet<&DepartmentCode> = proposed
        .dataset
        .departments
        .iter()
        .map(|d| &d.code)
        .collect();
    for department in &current.dataset.departments {
        if !after.contains(&department.code) {
            plan.diff.departments.push(Change::Removed {
                key: department.code.to_string(),
                name: department.name.clone(),
            });
            plan.remove_departments.push(department.code.clone());
        }
    }

    let before: BTreeMap<&PersonId, &Person> =
        current.dataset.people.iter().map(|p| (&p.id, p)).collect();
    for person in &proposed.dataset.people {
        match before.get(&person.id) {
            None => {
                plan.diff.people.push(Change::Added {
                    key: person.id.to_string(),
                    name: person.name.clone(),
                });
                plan.upsert.people.push(person.clone());
            }
            Some(old) => {
                let mut fields = changed_fields(&[
                    ("姓名", old.name.clone(), person.name.clone()),
                    (
                        "角色",
                        role_zh(old.role.kind()).into(),
                        role_zh(person.role.kind()).into(),
                    ),
                    ("岗位", post(&old.role), post(&person.role)),
                ]);
                if old.phone != person.phone {
                    // The preview is shown on a terminal: phone numbers masked, as the audit log does.
                    let at = fields.iter().take_while(|f| f.field == "姓名").count();
                    fields.insert(
                        at,
                        FieldChange {
                            field: "电话",
                            before: crate::contact::mask(&old.phone),
                            after: crate::contact::mask(&person.phone),
                        },
                    );
                }
                if !fields.is_empty() {
                    plan.diff.people.push(Change::Changed {
                        key: person.id.to_string(),
                        name: person.name.clone(),
                        fields,
                    });
                    plan.upsert.people.push(person.clone());
                }
            }
        }
    }
    plan.diff.people.extend(kept);

    let names: BTreeMap<&AreaCode, &str> = proposed
        .dataset
        .units
        .iter()
        .map(|u| (&u.code, u.name.as_str()))
        .collect();
    for (grid, _) in &set_boundaries {
        let name = names.get(grid).copied().unwrap_or_default().to_owned();
        plan.diff
            .boundaries
            .push(if current.boundaries.contains_key(grid) {
                Change::Changed {
                    key: grid.to_string(),
                    name,
                    fields: vec![FieldChange {
                        field: "边界",
                        before: "旧边界".into(),
                        after: "新边界".into(),
                    }],
                }
            } else {
                Change::Added {
                    key: grid.to_string(),
                    name,
                }
            });
    }
    plan.boundaries = set_boundaries;
    plan.proposed = proposed;
    plan
}

fn changed_fields(fields: &[(&'static str, String, String)]) -> Vec<FieldChange> {
    fields
        .iter()
        .filter(|(_, before, after)| before != after)
        .map(|(field, before, after)| FieldChange {
            field,
            before: before.clone(),
            after: after.clone(),
        })
        .collect()
}

/// The org as sheets, in the templates' columns: what export writes and import reads back.
pub fn to_sheets(dataset: &OrgDataset) -> [Sheet; 3] {
    let rows = |rows: Vec<Vec<String>>| {
        rows.into_iter()
            .enumerate()
            .map(|(i, cells)| SheetRow {
                number: i as u32 + 2,
                cells,
            })
            .collect()
    };
    let sheet = |name: &str, headers: &[&str], data: Vec<Vec<String>>| Sheet {
        name: name.into(),
        header_row: 1,
        headers: headers.iter().map(|h| (*h).to_owned()).collect(),
        rows: rows(data),
    };
    [
        sheet(
            UNITS,
            &UNIT_COLUMNS,
            dataset
                .units
                .iter()
                .map(|u| {
                    vec![
                        u.code.to_string(),
                        u.code.parent().map(|p| p.to_string()).unwrap_or_default(),
                        level_zh(u.level()).into(),
                        u.name.clone(),
                        u.classification.clone(),
                        u.lat.to_string(),
                        u.lon.to_string(),
                    ]
                })
                .collect(),
        ),
        sheet(
            DEPARTMENTS,
            &DEPARTMENT_COLUMNS,
            dataset
                .departments
                .iter()
                .map(|d| {
                    vec![
                        d.code.to_string(),
                        d.name.clone(),
                        d.kind.name_zh().into(),
                        d.area.to_string(),
                    ]
                })
                .collect(),
        ),
        sheet(
            PEOPLE,
            &PEOPLE_COLUMNS,
            dataset
                .people
                .iter()
                .map(|p| {
                    vec![
                        p.id.to_string(),
                        p.name.clone(),
                        p.phone.clone(),
                        role_zh(p.role.kind()).into(),
                        post(&p.role),
                    ]
                })
                .collect(),
        ),
    ]
}

#[cfg(test)]
mod tests;
