//! The yearly evaluation of units (双报到 年度考评, docs/party.md): each community tells the units
//! whose Party members registered with it how they served. One workbook of an area's units (sheet
//! 单位考评, and 说明) and one notice per unit (考评通知, Markdown), both from figures the CLI reads
//! from the service ledger and graded by `whistle_domain::volunteer::evaluate`; nothing is
//! computed here.

use anyhow::Context as _;
use rust_xlsxwriter::{Format, Workbook};

/// One unit's line of the evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitEvaluation {
    pub unit_id: String,
    pub unit_name: String,
    /// The community its Party organisation registered with.
    pub community: String,
    pub registered: u32,
    pub served: u32,
    pub confirmed: u32,
    pub hours: f64,
    pub points: u64,
    pub participation: f64,
    pub hours_per_member: f64,
    pub satisfaction: Option<f64>,
    /// 优秀, 合格, 基本合格, 不合格; empty when no member was registered that year.
    pub grade: String,
}

const HEADERS: [&str; 12] = [
    "单位代码",
    "单位党组织",
    "报到社区",
    "报到党员",
    "参与党员",
    "确认服务次数",
    "服务时长（小时）",
    "积分",
    "参与率",
    "人均时长（小时）",
    "满意率",
    "考评等次",
];

/// The workbook of an area's units for `year`.
pub fn evaluation_xlsx(
    year: i32,
    area_name: &str,
    units: &[UnitEvaluation],
) -> anyhow::Result<Vec<u8>> {
    let mut workbook = Workbook::new();
    let bold = Format::new().set_bold();
    let percent = Format::new().set_num_format("0.0%");
    let decimal = Format::new().set_num_format("0.0");
    let sheet = workbook.add_worksheet();
    sheet.set_name("单位考评")?;
    for (column, header) in HEADERS.iter().enumerate() {
        sheet.write_string_with_format(0, column as u16, *header, &bold)?;
    }
    for (index, unit) in units.iter().enumerate() {
        let row = index as u32 + 1;
        sheet.write_string(row, 0, &unit.unit_id)?;
        sheet.write_string(row, 1, &unit.unit_name)?;
        sheet.write_string(row, 2, &unit.community)?;
        sheet.write_number(row, 3, unit.registered)?;
        sheet.write_number(row, 4, unit.served)?;
        sheet.write_number(row, 5, unit.confirmed)?;
        sheet.write_number_with_format(row, 6, unit.hours, &decimal)?;
        sheet.write_number(row, 7, unit.points as f64)?;
        sheet.write_number_with_format(row, 8, unit.participation, &percent)?;
        sheet.write_number_with_format(row, 9, unit.hours_per_member, &decimal)?;
        match unit.satisfaction {
            Some(rate) => sheet.write_number_with_format(row, 10, rate, &percent)?,
            None => sheet.write_string(row, 10, "")?,
        };
        sheet.write_string(row, 11, &unit.grade)?;
    }
    sheet.autofit();
    let notes = workbook.add_worksheet();
    notes.set_name("说明")?;
    let lines = [
        format!("{area_name} {year} 年度在职党员到社区报到（双报到）单位考评"),
        "报到党员：当年任何时候在本区域社区登记报到的本单位党员。".to_owned(),
        "参与党员：当年至少有一次服务经社区确认的党员；服务时长与积分只计社区确认的服务。".to_owned(),
        "满意率：（满意 + 基本满意）/ 有居民评价的服务；无评价时空白。".to_owned(),
        "等次：优秀 — 参与率 ≥ 80%、人均 ≥ 12 小时且满意率 ≥ 90%；合格 — 参与率 ≥ 50% 且人均 ≥ 4 小时；基本合格 — 参与率 ≥ 20%；其余不合格。".to_owned(),
    ];
    for (row, line) in lines.iter().enumerate() {
        notes.write_string(row as u32, 0, line)?;
    }
    workbook
        .save_to_buffer()
        .context("writing the evaluation workbook")
}

/// The notice a unit receives (考评通知), as Markdown.
pub fn evaluation_notice(year: i32, area_name: &str, unit: &UnitEvaluation) -> String {
    let percent = |x: f64| format!("{:.1}%", x * 100.0);
    let satisfaction = unit
        .satisfaction
        .map(percent)
        .unwrap_or_else(|| "无居民评价".to_owned());
    let grade = if unit.grade.is_empty() {
        "（当年无报到党员，不评定）"
    } else {
        unit.grade.as_str()
    };
    format!(
        "# {name}：{year} 年度在职党员到社区报到考评通知\n\n\
         {area_name}对贵单位党组织（{id}，报到社区 {community}）{year} 年度在职党员报到服务情况考评如下。\n\n\
         | 项目 | 结果 |\n| --- | --- |\n\
         | 报到党员 | {registered} 人 |\n\
         | 参与服务党员 | {served} 人（参与率 {participation}） |\n\
         | 经社区确认的服务 | {confirmed} 次 |\n\
         | 服务时长 | {hours:.1} 小时（人均 {per_member:.1} 小时） |\n\
         | 积分 | {points} |\n\
         | 居民满意率 | {satisfaction} |\n\
         | **考评等次** | **{grade}** |\n\n\
         服务时长与积分只计社区确认的服务（群众点单、社区派单、党员接单）。\n",
        name = unit.unit_name,
        id = unit.unit_id,
        community = unit.community,
        registered = unit.registered,
        served = unit.served,
        participation = percent(unit.participation),
        confirmed = unit.confirmed,
        hours = unit.hours,
        per_member = unit.hours_per_member,
        points = unit.points,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit() -> UnitEvaluation {
        UnitEvaluation {
            unit_id: "pu-150602-001".into(),
            unit_name: "东胜区税务局党支部".into(),
            community: "150602001001".into(),
            registered: 10,
            served: 9,
            confirmed: 40,
            hours: 130.0,
            points: 1300,
            participation: 0.9,
            hours_per_member: 13.0,
            satisfaction: Some(0.95),
            grade: "优秀".into(),
        }
    }

    #[test]
    fn the_workbook_holds_one_row_per_unit_as_given() {
        use calamine::{Reader, Xlsx};
        let bytes = evaluation_xlsx(2026, "东胜区", &[unit()]).unwrap();
        let mut book: Xlsx<_> =
            calamine::open_workbook_from_rs(std::io::Cursor::new(bytes)).unwrap();
        let range = book.worksheet_range("单位考评").unwrap();
        let rows: Vec<_> = range.rows().collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1][1].to_string(), "东胜区税务局党支部");
        assert_eq!(rows[1][3].to_string(), "10");
        assert_eq!(rows[1][11].to_string(), "优秀");
    }

    #[test]
    fn the_notice_names_the_unit_its_figures_and_grade() {
        let notice = evaluation_notice(2026, "东胜区", &unit());
        assert!(notice.contains("东胜区税务局党支部"));
        assert!(notice.contains("参与率 90.0%"));
        assert!(notice.contains("**优秀**"));
    }
}
