//! The workbook: sheets 部门, 街道 and 渠道 with one row per scoreboard row, in rank order, 类别构成 with
//! the month's incidents by category, and 说明 with what the report covers and what the columns
//! mean. Figures are written as the numbers
//! `GetScoreboard` answered (rates as fractions shown as percentages), so a spreadsheet sums and
//! sorts them and a test reads back exactly what the service said.

use anyhow::Context as _;
use rust_xlsxwriter::{Format, FormatAlign, Workbook, Worksheet};
use whistle_proto::v1;

use crate::{month_zh, Monthly};

/// A cell's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Count(u64),
    /// A fraction, shown as a percentage.
    Rate(f64),
    /// The composite score, 0–100.
    Score(f64),
    /// Minutes, one decimal.
    Minutes(f64),
    Text(String),
    Empty,
}

/// A column of the 部门 and 街道 sheets: its header and how a row's cell is read from the
/// scoreboard row. A figure the scoreboard gains is one more entry here.
pub struct Column {
    pub header: &'static str,
    pub value: fn(&v1::ScoreboardRow) -> Cell,
}

fn rates(row: &v1::ScoreboardRow) -> v1::Rates {
    row.rates.unwrap_or_default()
}

/// The columns, in order.
pub const COLUMNS: &[Column] = &[
    Column {
        header: "排名",
        value: |r| Cell::Count(r.rank.into()),
    },
    Column {
        header: "代码",
        value: |r| Cell::Text(r.code.clone()),
    },
    Column {
        header: "名称",
        value: |r| Cell::Text(r.name.clone()),
    },
    Column {
        header: "样本量",
        value: |r| Cell::Count(r.sample),
    },
    Column {
        header: "样本不足",
        value: |r| Cell::Text(if r.small_sample { "是" } else { "" }.into()),
    },
    Column {
        header: "派单数",
        value: |r| Cell::Count(rates(r).dispatched),
    },
    Column {
        header: "按时报到",
        value: |r| Cell::Count(rates(r).accepted_in_time),
    },
    Column {
        header: "响应率",
        value: |r| Cell::Rate(rates(r).response_rate),
    },
    Column {
        header: "应办结",
        value: |r| Cell::Count(rates(r).due),
    },
    Column {
        header: "按时办结",
        value: |r| Cell::Count(rates(r).resolved_in_time),
    },
    Column {
        header: "办结率",
        value: |r| Cell::Rate(rates(r).resolution_rate),
    },
    Column {
        header: "回访数",
        value: |r| Cell::Count(rates(r).followed_up),
    },
    Column {
        header: "满意数",
        value: |r| Cell::Count(rates(r).satisfied),
    },
    Column {
        header: "满意率",
        value: |r| Cell::Rate(rates(r).satisfaction_rate),
    },
    Column {
        header: "综合得分",
        value: |r| Cell::Score(r.composite_score),
    },
    Column {
        header: "退单率",
        value: |r| Cell::Rate(r.return_rate),
    },
    Column {
        header: "重办率",
        value: |r| Cell::Rate(r.redo_rate),
    },
    Column {
        header: "吹哨率",
        value: |r| Cell::Rate(r.whistle_rate),
    },
    Column {
        header: "派单异议率",
        value: |r| Cell::Rate(r.dispute_rate),
    },
    Column {
        header: "延期率",
        value: |r| Cell::Rate(r.extension_rate),
    },
    Column {
        header: "挂账数",
        value: |r| Cell::Count(r.ledgered),
    },
    Column {
        header: "报到用时中位数(分钟)",
        value: |r| match &r.median_time_to_accept {
            Some(d) => Cell::Minutes((d.seconds as f64 + f64::from(d.nanos) / 1e9) / 60.0),
            None => Cell::Empty,
        },
    },
];

struct Formats {
    header: Format,
    rate: Format,
    score: Format,
    minutes: Format,
    small: Format,
}

impl Formats {
    fn new() -> Formats {
        Formats {
            header: Format::new()
                .set_bold()
                .set_align(FormatAlign::Center)
                .set_background_color(0xDDE6F2),
            rate: Format::new().set_num_format("0.0%"),
            score: Format::new().set_num_format("0.0"),
            minutes: Format::new().set_num_format("0.0"),
            small: Format::new().set_font_color(0x9C5700),
        }
    }
}

/// The workbook of `report`, as the bytes of an .xlsx file.
pub fn xlsx(report: &Monthly) -> anyhow::Result<Vec<u8>> {
    let formats = Formats::new();
    let mut workbook = Workbook::new();
    board_sheet(
        workbook.add_worksheet().set_name("部门")?,
        &report.departments,
        &formats,
    )?;
    board_sheet(
        workbook.add_worksheet().set_name("街道")?,
        &report.streets,
        &formats,
    )?;
    board_sheet(
        workbook.add_worksheet().set_name("渠道")?,
        &report.channels,
        &formats,
    )?;
    mix_sheet(
        workbook.add_worksheet().set_name("类别构成")?,
        report,
        &formats,
    )?;
    notes_sheet(workbook.add_worksheet().set_name("说明")?, report, &formats)?;
    workbook.save_to_buffer().context("writing the workbook")
}

fn board_sheet(
    sheet: &mut Worksheet,
    board: &v1::Scoreboard,
    formats: &Formats,
) -> anyhow::Result<()> {
    for (col, column) in (0u16..).zip(COLUMNS) {
        sheet.write_string_with_format(0, col, column.header, &formats.header)?;
        sheet.set_column_width(col, if column.header == "名称" { 28 } else { 11 })?;
    }
    for (row, line) in (1u32..).zip(&board.rows) {
        for (col, column) in (0u16..).zip(COLUMNS) {
            match (column.value)(line) {
                Cell::Count(n) => sheet.write_number(row, col, n as f64)?,
                Cell::Rate(x) => sheet.write_number_with_format(row, col, x, &formats.rate)?,
                Cell::Score(x) => sheet.write_number_with_format(row, col, x, &formats.score)?,
                Cell::Minutes(x) => {
                    sheet.write_number_with_format(row, col, x, &formats.minutes)?
                }
                Cell::Text(text) if line.small_sample && column.header == "样本不足" => {
                    sheet.write_string_with_format(row, col, text, &formats.small)?
                }
                Cell::Text(text) => sheet.write_string(row, col, text)?,
                Cell::Empty => sheet,
            };
        }
    }
    sheet.set_freeze_panes(1, 3)?;
    Ok(())
}

/// The category mix: category, code, incidents, share of the month's incidents.
fn mix_sheet(sheet: &mut Worksheet, report: &Monthly, formats: &Formats) -> anyhow::Result<()> {
    for (col, header) in (0u16..).zip(["类别", "代码", "事项数", "占比"]) {
        sheet.write_string_with_format(0, col, header, &formats.header)?;
    }
    sheet.set_column_width(0, 24)?;
    sheet.set_column_width(1, 28)?;
    let total: u64 = report.categories.iter().map(|c| c.count).sum();
    for (row, share) in (1u32..).zip(&report.categories) {
        sheet.write_string(row, 0, &share.name)?;
        sheet.write_string(row, 1, &share.code)?;
        sheet.write_number(row, 2, share.count as f64)?;
        let fraction = crate::ratio(share.count, total);
        sheet.write_number_with_format(row, 3, fraction, &formats.rate)?;
    }
    sheet.set_freeze_panes(1, 0)?;
    Ok(())
}

fn notes_sheet(sheet: &mut Worksheet, report: &Monthly, formats: &Formats) -> anyhow::Result<()> {
    let min_sample = report.departments.min_sample;
    let area = if report.area_code.is_empty() {
        report.area_name.clone()
    } else {
        format!("{}（{}）", report.area_name, report.area_code)
    };
    let lines: Vec<(&str, String)> = vec![
        ("月份", format!("{}（{}）", month_zh(&report.month), report.month)),
        ("区域", area),
        (
            "生成时间",
            report
                .generated_at
                .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).expect("UTC+8"))
                .format("%Y-%m-%d %H:%M:%S（北京时间）")
                .to_string(),
        ),
        ("数据来源", "指挥中心查询服务 GetScoreboard（月度考核榜单），与大屏排名一致".into()),
        ("响应率", "当月派单中按时报到（报到时限内）的比例".into()),
        ("办结率", "部门：当月到期任务中按时办结的比例；街道：当月到期事项中按时办结的比例".into()),
        ("满意率", "当月回访中满意或基本满意的比例".into()),
        ("综合得分", "按政策权重（鄂尔多斯：响应 30%、办结 35%、满意 35%）计算，满分 100".into()),
        (
            "排名",
            format!(
                "样本充足者按综合得分排名在前；样本量低于 {min_sample} 件的标为“样本不足”，排在其后；当月无业务者列在最后"
            ),
        ),
        ("样本量", "部门：当月派单数；街道：当月上报事项数（不含重复件）".into()),
        ("退单率", "当月派单中被退回的比例".into()),
        ("重办率", "当月办结后因回访不满意而重办的比例".into()),
        ("吹哨率", "街道：当月上报事项中吹哨的比例；部门：当月经吹哨派来的任务比例".into()),
        ("派单异议率", "当月派单中本部门提出派单异议的比例（无论维持或改派）".into()),
        ("延期率", "部门：当月派单中经批准延期的任务比例；街道：当月上报事项中经批准延期的比例".into()),
        ("挂账数", "部门：当月派单中所在事项列入长期挂账的任务数；街道：当月上报事项中列入挂账的件数".into()),
        ("类别构成", "当月上报事项（不含重复件）按类别的件数与占比".into()),
        ("渠道", "按事项来源渠道（网格员上报、Open311 第三方应用、12345 热线；以事项首条上报的渠道计；主动治理事项另列）统计，口径同街道".into()),
        ("空分母", "分母为 0 时比率记为 0，件数照列".into()),
    ];
    sheet.set_column_width(0, 14)?;
    sheet.set_column_width(1, 90)?;
    for (row, (label, text)) in (0u32..).zip(lines) {
        sheet.write_string_with_format(row, 0, label, &formats.header)?;
        sheet.write_string(row, 1, text)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use calamine::{Data, Reader as _, Xlsx};

    use super::*;

    fn number(cell: &Data) -> Option<f64> {
        match cell {
            Data::Float(x) => Some(*x),
            Data::Int(n) => Some(*n as f64),
            _ => None,
        }
    }

    #[test]
    fn the_workbook_reads_back_every_figure() {
        let report = crate::sample();
        let bytes = xlsx(&report).unwrap();
        let mut book: Xlsx<_> = calamine::open_workbook_from_rs(Cursor::new(bytes)).unwrap();
        assert_eq!(
            book.sheet_names(),
            ["部门", "街道", "渠道", "类别构成", "说明"]
        );
        for (sheet, board) in [
            ("部门", &report.departments),
            ("街道", &report.streets),
            ("渠道", &report.channels),
        ] {
            let range = book.worksheet_range(sheet).unwrap();
            let headers: Vec<String> = range
                .rows()
                .next()
                .unwrap()
                .iter()
                .map(|c| c.to_string())
                .collect();
            assert_eq!(
                headers,
                COLUMNS.iter().map(|c| c.header).collect::<Vec<_>>()
            );
            assert_eq!(
                range.height(),
                board.rows.len() + 1,
                "{sheet}: a row per scoreboard row"
            );
            for (line, row) in range.rows().skip(1).zip(&board.rows) {
                for (cell, column) in line.iter().zip(COLUMNS) {
                    match (column.value)(row) {
                        Cell::Count(n) => assert_eq!(number(cell), Some(n as f64)),
                        Cell::Rate(x) | Cell::Score(x) | Cell::Minutes(x) => {
                            assert_eq!(number(cell), Some(x), "{sheet} {}", column.header)
                        }
                        Cell::Text(text) if text.is_empty() => assert_eq!(cell, &Data::Empty),
                        Cell::Text(text) => assert_eq!(cell, &Data::String(text)),
                        Cell::Empty => assert_eq!(cell, &Data::Empty),
                    }
                }
            }
        }
        let mix = book.worksheet_range("类别构成").unwrap();
        let read: Vec<(String, String, Option<f64>, Option<f64>)> = mix
            .rows()
            .skip(1)
            .map(|r| {
                (
                    r[0].to_string(),
                    r[1].to_string(),
                    number(&r[2]),
                    number(&r[3]),
                )
            })
            .collect();
        let total: u64 = report.categories.iter().map(|c| c.count).sum();
        let expected: Vec<_> = report
            .categories
            .iter()
            .map(|c| {
                let share = c.count as f64 / total as f64;
                (
                    c.name.clone(),
                    c.code.clone(),
                    Some(c.count as f64),
                    Some(share),
                )
            })
            .collect();
        assert_eq!(read, expected);
        let notes = book.worksheet_range("说明").unwrap();
        let text: Vec<String> = notes
            .rows()
            .flat_map(|r| r.iter().map(|c| c.to_string()))
            .collect();
        assert!(text.iter().any(|t| t.contains("2026年11月")), "{text:?}");
        assert!(
            text.iter().any(|t| t.contains("东胜区（150602）")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.contains("少于") || t.contains("低于 20 件")),
            "{text:?}"
        );
    }
}
