//! The monthly assessment report (月度考核通报, crates/report) of a simulated month: November 2026
//! played by a real dispatch from reports and random commands (the scoreboard tests' random
//! history), then the report of the district read through the query service as
//! `whistle report monthly` reads it. The workbook is opened with calamine and every figure
//! checked against `GetScoreboard`'s own answer; the PDF's text is extracted with poppler's
//! pdftotext (every department and street name there) and its fonts listed with pdffonts (every
//! one embedded, as a subset).
//!
//! `WHISTLE_REPORT_DOCS=docs/report` also writes the PDF and its pages rendered as PNG there
//! (pdftoppm), for docs/report.md.

use std::{collections::BTreeMap, path::Path, process::Command};

use calamine::{Data, Reader as _, Xlsx};
use chrono::{DateTime, TimeDelta, Utc};
use rand::{rngs::StdRng, Rng as _, SeedableRng as _};
use whistle_proto::v1::{self, ScoreboardKind};

use crate::{
    harness::{places, Stack},
    scoreboard::{random_pause, random_round},
};

const MONTH: &str = "2026-11";

async fn board(stack: &Stack, area: &str, kind: ScoreboardKind) -> v1::Scoreboard {
    stack
        .client()
        .get_scoreboard(v1::GetScoreboardRequest {
            area_code: area.into(),
            month: MONTH.into(),
            kind: kind as i32,
        })
        .await
        .expect("GetScoreboard")
        .into_inner()
}

fn number(cell: &Data) -> f64 {
    match cell {
        Data::Float(x) => *x,
        Data::Int(n) => *n as f64,
        other => panic!("{other:?} is not a number"),
    }
}

fn text(cell: &Data) -> String {
    match cell {
        Data::String(s) => s.clone(),
        Data::Empty => String::new(),
        other => panic!("{other:?} is not text"),
    }
}

/// The sheet's rows as header → cell maps, checked cell by cell against the board's rows, field
/// by field, in rank order.
fn check_sheet(book: &mut Xlsx<std::io::Cursor<Vec<u8>>>, sheet: &str, board: &v1::Scoreboard) {
    let range = book.worksheet_range(sheet).expect(sheet);
    let mut lines = range.rows();
    let headers: Vec<String> = lines
        .next()
        .expect("a header row")
        .iter()
        .map(text)
        .collect();
    let lines: Vec<BTreeMap<&str, &Data>> = lines
        .map(|line| headers.iter().map(String::as_str).zip(line).collect())
        .collect();
    assert_eq!(
        lines.len(),
        board.rows.len(),
        "{sheet}: one line per row of the board"
    );
    for (line, row) in lines.iter().zip(&board.rows) {
        let at = |header: &str| {
            *line
                .get(header)
                .unwrap_or_else(|| panic!("{sheet}: no column {header}"))
        };
        let rates = row.rates.as_ref().expect("rates");
        let what = format!("{sheet} {}", row.code);
        assert_eq!(number(at("排名")), f64::from(row.rank), "{what}");
        assert_eq!(text(at("代码")), row.code, "{what}");
        assert_eq!(text(at("名称")), row.name, "{what}");
        assert_eq!(number(at("样本量")), row.sample as f64, "{what}");
        assert_eq!(
            text(at("样本不足")),
            if row.small_sample { "是" } else { "" },
            "{what}"
        );
        for (header, count) in [
            ("派单数", rates.dispatched),
            ("按时报到", rates.accepted_in_time),
            ("应办结", rates.due),
            ("按时办结", rates.resolved_in_time),
            ("回访数", rates.followed_up),
            ("满意数", rates.satisfied),
        ] {
            assert_eq!(number(at(header)), count as f64, "{what} {header}");
        }
        for (header, value) in [
            ("响应率", rates.response_rate),
            ("办结率", rates.resolution_rate),
            ("满意率", rates.satisfaction_rate),
            ("综合得分", row.composite_score),
            ("退单率", row.return_rate),
            ("重办率", row.redo_rate),
            ("吹哨率", row.whistle_rate),
            ("派单异议率", row.dispute_rate),
        ] {
            assert_eq!(number(at(header)), value, "{what} {header}");
        }
        match &row.median_time_to_accept {
            Some(d) => {
                let minutes = (d.seconds as f64 + f64::from(d.nanos) / 1e9) / 60.0;
                assert_eq!(number(at("报到用时中位数(分钟)")), minutes, "{what}");
            }
            None => assert_eq!(at("报到用时中位数(分钟)"), &Data::Empty, "{what}"),
        }
    }
}

fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("{program} (poppler-utils, installed by deploy/local/env.sh): {e}")
        });
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8")
}

#[tokio::test]
async fn the_monthly_report_of_a_simulated_month_carries_the_scoreboard() {
    let seed: u64 = std::env::var("WHISTLE_REPORT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("report history seed {seed} (WHISTLE_REPORT_SEED={seed} replays it)");
    let mut rng = StdRng::seed_from_u64(seed);
    let start: DateTime<Utc> = DateTime::parse_from_rfc3339("2026-11-02T09:00:00+08:00")
        .unwrap()
        .to_utc();
    let stack = Stack::builder().with_query().at(start).start().await;
    let (district, grids, _, _) = places();
    let mut incidents = Vec::new();
    for round in 0..14 {
        random_round(&stack, &mut rng, round, &grids, &mut incidents).await;
        random_pause(&stack, &mut rng).await;
    }
    // The report is made after the month, as a command centre makes it.
    let december = DateTime::parse_from_rfc3339("2026-12-01T10:00:00+08:00")
        .unwrap()
        .to_utc();
    if stack.now() < december {
        stack.advance(december - stack.now());
    }
    stack.advance(TimeDelta::minutes(1));
    stack.settle().await;
    stack.caught_up().await;

    let report = whistle_report::gather(&mut stack.client(), &district, MONTH, Utc::now())
        .await
        .expect("the report's figures");
    let departments = board(&stack, &district, ScoreboardKind::Departments).await;
    let streets = board(&stack, &district, ScoreboardKind::Streets).await;
    let channels = board(&stack, &district, ScoreboardKind::Channels).await;
    assert_eq!(report.month, MONTH);
    assert!(!report.area_name.is_empty());
    assert_eq!(report.trend.len(), whistle_report::TREND_MONTHS as usize);
    let active = |b: &v1::Scoreboard| b.rows.iter().filter(|r| r.sample > 0).count();
    // Every incident of the month came from a grid worker's report: the channel board's one
    // active row holds the street board's totals, by the same definitions.
    assert_eq!(
        whistle_report::Totals::of(&channels),
        whistle_report::Totals::of(&streets)
    );
    assert_eq!(active(&channels), 1, "seed {seed}: {channels:?}");
    assert_eq!(channels.rows[0].code, "grid_worker");
    assert_eq!(report.channels, channels);
    assert!(
        active(&departments) > 0,
        "seed {seed}: no department had a task in November"
    );
    assert!(
        active(&streets) > 0,
        "seed {seed}: no street had a report in November"
    );
    assert!(
        departments
            .rows
            .iter()
            .chain(&streets.rows)
            .any(|r| r.small_sample),
        "a month this small marks small samples"
    );

    // The workbook: every figure equals GetScoreboard's.
    let xlsx = whistle_report::xlsx(&report).expect("the workbook");
    let mut book: Xlsx<_> =
        calamine::open_workbook_from_rs(std::io::Cursor::new(xlsx.clone())).expect("an XLSX");
    assert_eq!(
        book.sheet_names(),
        ["部门", "街道", "渠道", "类别构成", "说明"]
    );
    check_sheet(&mut book, "部门", &departments);
    check_sheet(&mut book, "街道", &streets);
    check_sheet(&mut book, "渠道", &channels);
    // The category mix: the street board's counts, with the catalogue's names, summing to the
    // month's incidents.
    assert!(!streets.categories.is_empty(), "seed {seed}: no category");
    let mix = book.worksheet_range("类别构成").unwrap();
    let read: Vec<(String, u64)> = mix
        .rows()
        .skip(1)
        .map(|r| (r[1].to_string(), number(&r[2]) as u64))
        .collect();
    let expected: Vec<(String, u64)> = streets
        .categories
        .iter()
        .map(|c| (c.key.clone(), c.count))
        .collect();
    assert_eq!(read, expected);
    assert_eq!(
        expected.iter().map(|(_, n)| n).sum::<u64>(),
        streets.rows.iter().map(|r| r.sample).sum::<u64>(),
        "every incident of the month has one category"
    );
    let names: Vec<String> = mix.rows().skip(1).map(|r| r[0].to_string()).collect();
    assert!(
        names.iter().all(|n| !n.contains('.')),
        "Chinese names, not codes: {names:?}"
    );
    let notes = book.worksheet_range("说明").unwrap();
    let notes: String = notes
        .rows()
        .flat_map(|r| r.iter().map(|c| c.to_string()))
        .collect();
    assert!(
        notes.contains("2026年11月") && notes.contains(&report.area_name),
        "{notes}"
    );

    // The PDF: the names as text, every font embedded as a subset.
    let font = whistle_report::Font::load().expect("a CJK font (deploy/local/env.sh installs one)");
    let pdf = whistle_report::pdf(&report, &font).expect("the PDF");
    let dir = tempdir();
    let path = dir.join("report.pdf");
    std::fs::write(&path, &pdf).unwrap();
    let path = path.to_str().unwrap();
    let words = run("pdftotext", &["-layout", path, "-"]);
    assert!(
        words.contains("月度考核通报") && words.contains(&report.area_name),
        "{words}"
    );
    for row in departments.rows.iter().chain(&streets.rows) {
        assert!(
            words.contains(&row.name),
            "{} is not in the PDF's text",
            row.name
        );
    }
    assert!(
        words.contains("样本不足"),
        "the small-sample mark is in the text"
    );
    assert!(
        words.contains("事项类别构成")
            && report
                .categories
                .iter()
                .take(15)
                .all(|c| words.contains(&c.name)),
        "the category mix and its names are in the text"
    );
    let fonts = run("pdffonts", &[path]);
    let lines: Vec<&str> = fonts.lines().skip(2).collect();
    assert!(!lines.is_empty(), "{fonts}");
    for line in &lines {
        // name type encoding emb sub uni object ID
        let columns: Vec<&str> = line.split_whitespace().collect();
        let n = columns.len();
        assert!(n >= 7, "{line}");
        assert_eq!(
            &columns[n - 5..n - 2],
            ["yes", "yes", "yes"],
            "embedded, subset, with Unicode: {line}"
        );
    }

    if let Some(docs) = std::env::var_os("WHISTLE_REPORT_DOCS") {
        let docs = Path::new(&docs);
        std::fs::create_dir_all(docs).unwrap();
        std::fs::write(docs.join("monthly-sample.pdf"), &pdf).unwrap();
        std::fs::write(docs.join("monthly-sample.xlsx"), &xlsx).unwrap();
        let prefix = docs.join("monthly-page");
        run(
            "pdftoppm",
            &[
                "-png",
                "-r",
                "80",
                "-f",
                "1",
                "-l",
                "4",
                path,
                prefix.to_str().unwrap(),
            ],
        );
        eprintln!(
            "wrote the sample report and its pages to {}",
            docs.display()
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A fresh folder under the system's temporary directory.
fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("whistle-report-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
