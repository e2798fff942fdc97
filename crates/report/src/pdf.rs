//! The PDF: A4 pages set in the CJK font (embedded and subset by krilla). The first pages carry
//! the area's totals and the charts (the department and street rankings by composite score, the
//! three rates and the incidents reported over the last months, the month's category mix), the
//! rest the full rankings as tables, small-sample rows marked.

use anyhow::Context as _;
use krilla::{
    color::rgb,
    geom::{PathBuilder, Point, Rect, Size},
    page::PageSettings,
    paint::Fill,
    surface::Surface,
    text::TextDirection,
    Document,
};
use krilla_svg::{SurfaceExt as _, SvgSettings};
use whistle_proto::v1;

use crate::{
    charts::{self, active},
    month_zh, CategoryShare, Font, Monthly, Totals,
};

const WIDTH: f32 = 595.28;
const HEIGHT: f32 = 841.89;
const MARGIN: f32 = 40.0;
/// Rows of the ranking charts; the tables list every row.
const CHART_ROWS: usize = 20;
/// Categories the mix chart names; the rest are summed as 其他.
const MIX_ROWS: usize = 15;

/// Colours as RGB triples (krilla's constructor is not a const fn).
type Rgb = (u8, u8, u8);
const INK: Rgb = (0x1F, 0x24, 0x2E);
const MUTED: Rgb = (0x6B, 0x72, 0x80);
const AMBER: Rgb = (0x9C, 0x57, 0x00);
const RULE: Rgb = (0xD0, 0xD5, 0xDD);
const BAND: Rgb = (0xF2, 0xF5, 0xF9);

/// The report as the bytes of a PDF file.
pub fn pdf(report: &Monthly, font: &Font) -> anyhow::Result<Vec<u8>> {
    let mut document = Document::new();
    document.set_metadata(
        krilla::metadata::Metadata::new()
            .title(title(report))
            .language("zh-CN".into())
            .creator("whistle report monthly".into()),
    );
    let totals = report
        .trend
        .last()
        .cloned()
        .unwrap_or_else(|| Totals::of(&report.streets));
    let min_sample = report.departments.min_sample;

    // Page 1: the heading, the area's figures, the department ranking.
    {
        let mut page = new_page(&mut document);
        let mut pen = Pen::new(page.surface(), font);
        pen.text(MARGIN, 62.0, 20.0, INK, &title(report));
        let area = if report.area_code.is_empty() {
            String::new()
        } else {
            format!(" · 区域代码 {}", report.area_code)
        };
        let generated = report
            .generated_at
            .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).expect("UTC+8"))
            .format("%Y-%m-%d %H:%M");
        pen.text(
            MARGIN,
            84.0,
            9.5,
            MUTED,
            &format!("统计月份 {}{area} · 生成于 {generated}（北京时间） · 数据来源：考核榜单 GetScoreboard", report.month),
        );
        let figures = [
            ("上报事项", totals.reported.to_string()),
            ("响应率", percent(totals.rates.response_rate)),
            ("办结率", percent(totals.rates.resolution_rate)),
            ("满意率", percent(totals.rates.satisfaction_rate)),
        ];
        let box_width = (WIDTH - 2.0 * MARGIN - 3.0 * 10.0) / 4.0;
        for (i, (label, value)) in figures.iter().enumerate() {
            let x = MARGIN + i as f32 * (box_width + 10.0);
            pen.rect(x, 100.0, box_width, 58.0, BAND);
            pen.text(x + 10.0, 118.0, 9.5, MUTED, label);
            pen.text(x + 10.0, 147.0, 20.0, INK, value);
        }
        let rows = chart_rows(&report.departments);
        let height = chart_height(rows.len(), 600);
        let svg = charts::ranking(
            &font.family,
            &ranking_title("部门综合得分排名", &report.departments, rows.len()),
            rows,
            (515, height),
        )?;
        pen.svg(&svg, font, MARGIN, 176.0, 515.0, height as f32)?;
        pen.text(MARGIN, 796.0, 8.5, AMBER, &small_sample_note(min_sample));
        pen.footer(1);
        pen.finish();
    }

    // Page 2: the street ranking and the trend.
    {
        let mut page = new_page(&mut document);
        let mut pen = Pen::new(page.surface(), font);
        let rows = chart_rows(&report.streets);
        let height = chart_height(rows.len(), 430);
        let svg = charts::ranking(
            &font.family,
            &ranking_title("街道综合得分排名", &report.streets, rows.len()),
            rows,
            (515, height),
        )?;
        pen.svg(&svg, font, MARGIN, 40.0, 515.0, height as f32)?;
        let half = (WIDTH - 2.0 * MARGIN - 15.0) / 2.0;
        let months = report.trend.len();
        let svg = charts::trend(
            &font.family,
            &format!("三率趋势（近{months}个月）"),
            &report.trend,
            (300, 260),
        )?;
        pen.svg(&svg, font, MARGIN, 490.0, half, half * 260.0 / 300.0)?;
        let svg = charts::volume(
            &font.family,
            &format!("上报事项量（近{months}个月）"),
            &report.trend,
            (300, 260),
        )?;
        pen.svg(
            &svg,
            font,
            MARGIN + half + 15.0,
            490.0,
            half,
            half * 260.0 / 300.0,
        )?;
        pen.text(
            MARGIN,
            760.0,
            8.5,
            MUTED,
            "三率与事项量为区域内各街道当月数据之和（同一考核口径）。",
        );
        pen.text(MARGIN, 776.0, 8.5, AMBER, &small_sample_note(min_sample));
        pen.footer(2);
        pen.finish();
    }

    // Page 3: the category mix.
    {
        let mut page = new_page(&mut document);
        let mut pen = Pen::new(page.surface(), font);
        let shares = mix_shares(&report.categories);
        let height = chart_height(shares.len(), 700);
        let svg = charts::mix(
            &font.family,
            &format!(
                "事项类别构成（{}，共 {} 件）",
                month_zh(&report.month),
                totals.reported
            ),
            &shares,
            (515, height),
        )?;
        pen.svg(&svg, font, MARGIN, 40.0, 515.0, height as f32)?;
        pen.text(
            MARGIN,
            776.0,
            8.5,
            MUTED,
            &format!(
                "按当月上报事项（不含重复件）的类别统计；列出前 {MIX_ROWS} 类，其余并入“其他”。"
            ),
        );
        pen.footer(3);
        pen.finish();
    }

    // Then the tables.
    let mut number = 4;
    for (heading, board) in [
        ("部门排名表", &report.departments),
        ("街道排名表", &report.streets),
        ("渠道统计表", &report.channels),
    ] {
        for (part, rows) in board.rows.chunks(TABLE_ROWS).enumerate() {
            let mut page = new_page(&mut document);
            let mut pen = Pen::new(page.surface(), font);
            let heading = if part == 0 {
                format!("{heading}（共 {} 个）", board.rows.len())
            } else {
                format!("{heading}（续）")
            };
            pen.text(MARGIN, 56.0, 14.0, INK, &heading);
            pen.table(rows, 72.0);
            pen.footer(number);
            pen.finish();
            number += 1;
        }
    }
    document
        .finish()
        .map_err(|e| anyhow::anyhow!("writing the PDF: {e:?}"))
}

/// The largest [`MIX_ROWS`] categories, and the rest summed as 其他.
fn mix_shares(categories: &[CategoryShare]) -> Vec<CategoryShare> {
    let mut shares: Vec<CategoryShare> = categories.iter().take(MIX_ROWS).cloned().collect();
    let rest: u64 = categories.iter().skip(MIX_ROWS).map(|c| c.count).sum();
    if rest > 0 {
        shares.push(CategoryShare {
            code: String::new(),
            name: "其他".into(),
            count: rest,
        });
    }
    shares
}

fn title(report: &Monthly) -> String {
    format!(
        "{} {}月度考核通报",
        report.area_name,
        month_zh(&report.month)
    )
}

fn new_page(document: &mut Document) -> krilla::page::Page<'_> {
    document.start_page_with(PageSettings::new(
        Size::from_wh(WIDTH, HEIGHT).expect("A4 is a size"),
    ))
}

/// The first rows of a board with activity, at most [`CHART_ROWS`].
fn chart_rows(board: &v1::Scoreboard) -> &[v1::ScoreboardRow] {
    let active = board.rows.iter().take_while(|r| active(r)).count();
    &board.rows[..active.min(CHART_ROWS)]
}

/// A ranking chart's height for `rows` bars: bars of a steady thickness, at most `max`.
fn chart_height(rows: usize, max: u32) -> u32 {
    (80 + 26 * rows.max(1) as u32).min(max)
}

fn ranking_title(what: &str, board: &v1::Scoreboard, shown: usize) -> String {
    if shown < board.rows.len() {
        format!(
            "{what}（前 {shown} 名，共 {} 个，完整排名见附表）",
            board.rows.len()
        )
    } else {
        format!("{what}（共 {} 个）", board.rows.len())
    }
}

fn small_sample_note(min_sample: u32) -> String {
    format!("* 样本不足：当月样本少于 {min_sample} 件，比率参考意义有限，排在样本充足者之后。")
}

fn percent(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

/// Rows of a table page.
const TABLE_ROWS: usize = 40;
const ROW_HEIGHT: f32 = 17.0;

/// The table's columns: header, x offset from the margin, the cell of a row.
type TableColumn = (&'static str, f32, fn(&v1::ScoreboardRow) -> String);

const TABLE: &[TableColumn] = &[
    ("排名", 0.0, |r| r.rank.to_string()),
    ("名称", 30.0, |r| r.name.clone()),
    ("样本", 190.0, |r| r.sample.to_string()),
    ("响应率", 222.0, |r| rate(r, |x| x.response_rate)),
    ("办结率", 262.0, |r| rate(r, |x| x.resolution_rate)),
    ("满意率", 302.0, |r| rate(r, |x| x.satisfaction_rate)),
    ("综合得分", 342.0, |r| {
        format!("{:.1}", r.composite_score)
    }),
    ("退单率", 384.0, |r| percent(r.return_rate)),
    ("延期率", 420.0, |r| percent(r.extension_rate)),
    ("挂账", 456.0, |r| r.ledgered.to_string()),
    ("备注", 482.0, |r| {
        if r.small_sample {
            "样本不足".into()
        } else if !active(r) {
            "当月无业务".into()
        } else {
            String::new()
        }
    }),
];

fn rate(row: &v1::ScoreboardRow, pick: fn(&v1::Rates) -> f64) -> String {
    percent(row.rates.as_ref().map(pick).unwrap_or(0.0))
}

/// Draws on one page's surface in the report's font.
struct Pen<'a, 'b> {
    surface: Surface<'a>,
    font: &'b Font,
}

impl<'a, 'b> Pen<'a, 'b> {
    fn new(surface: Surface<'a>, font: &'b Font) -> Self {
        Pen { surface, font }
    }

    fn fill(&mut self, (r, g, b): Rgb) {
        self.surface.set_fill(Some(Fill {
            paint: rgb::Color::new(r, g, b).into(),
            ..Default::default()
        }));
    }

    /// Text whose baseline starts at (x, y), y from the top.
    fn text(&mut self, x: f32, y: f32, size: f32, color: Rgb, text: &str) {
        self.fill(color);
        self.surface.draw_text(
            Point::from_xy(x, y),
            self.font.face.clone(),
            size,
            text,
            false,
            TextDirection::Auto,
        );
    }

    fn rect(&mut self, x: f32, y: f32, w: f32, h: f32, color: Rgb) {
        let Some(rect) = Rect::from_xywh(x, y, w, h) else {
            return;
        };
        let mut path = PathBuilder::new();
        path.push_rect(rect);
        if let Some(path) = path.finish() {
            self.fill(color);
            self.surface.draw_path(&path);
        }
    }

    /// A chart's SVG scaled into the box at (x, y) of `w` × `h`.
    fn svg(
        &mut self,
        svg: &str,
        font: &Font,
        x: f32,
        y: f32,
        w: f32,
        h: f32,
    ) -> anyhow::Result<()> {
        let options = usvg::Options {
            fontdb: font.db.clone(),
            font_family: font.family.clone(),
            ..Default::default()
        };
        let tree = usvg::Tree::from_str(svg, &options).context("reading a chart's SVG")?;
        self.surface
            .push_transform(&krilla::geom::Transform::from_translate(x, y));
        let drawn = self.surface.draw_svg(
            &tree,
            Size::from_wh(w, h).context("an empty chart box")?,
            SvgSettings::default(),
        );
        self.surface.pop();
        drawn.context("drawing a chart")
    }

    fn table(&mut self, rows: &[v1::ScoreboardRow], top: f32) {
        let width = WIDTH - 2.0 * MARGIN;
        self.rect(MARGIN, top, width, ROW_HEIGHT, BAND);
        for (header, x, _) in TABLE {
            self.text(MARGIN + x + 2.0, top + 12.0, 9.0, INK, header);
        }
        for (i, row) in rows.iter().enumerate() {
            let y = top + (i as f32 + 1.0) * ROW_HEIGHT;
            self.rect(MARGIN, y + ROW_HEIGHT - 0.5, width, 0.5, RULE);
            let color = if row.small_sample { AMBER } else { INK };
            for (_, x, cell) in TABLE {
                self.text(MARGIN + x + 2.0, y + 12.0, 9.0, color, &cell(row));
            }
        }
    }

    fn footer(&mut self, page: usize) {
        self.text(
            WIDTH - MARGIN - 30.0,
            HEIGHT - 20.0,
            8.5,
            MUTED,
            &format!("第 {page} 页"),
        );
    }

    fn finish(self) {
        self.surface.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fonts a PDF uses, each with whether its program is embedded.
    pub(crate) fn fonts(bytes: &[u8]) -> Vec<(String, bool)> {
        let document = lopdf::Document::load_mem(bytes).unwrap();
        let mut fonts = Vec::new();
        for object in document.objects.values() {
            let Ok(dict) = object.as_dict() else { continue };
            if dict.get(b"Type").and_then(|t| t.as_name()).ok() != Some(b"FontDescriptor") {
                continue;
            }
            let name = dict
                .get(b"FontName")
                .and_then(|n| n.as_name())
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .unwrap_or_default();
            let embedded = [b"FontFile".as_slice(), b"FontFile2", b"FontFile3"]
                .iter()
                .any(|key| dict.has(key));
            fonts.push((name, embedded));
        }
        fonts
    }

    #[test]
    fn the_pdf_embeds_its_font_subset() {
        let font = Font::load().expect("a CJK font (deploy/local/env.sh installs fonts-noto-cjk)");
        let bytes = pdf(&crate::sample(), &font).unwrap();
        assert!(bytes.starts_with(b"%PDF-"));
        // To look at it: WHISTLE_REPORT_SAMPLE_PDF=/tmp/sample.pdf cargo test -p whistle-report
        if let Some(path) = std::env::var_os("WHISTLE_REPORT_SAMPLE_PDF") {
            std::fs::write(path, &bytes).unwrap();
        }
        let document = lopdf::Document::load_mem(&bytes).unwrap();
        // Three pages of charts, one table page per board (departments, streets, channels).
        assert_eq!(document.get_pages().len(), 6);
        let fonts = fonts(&bytes);
        assert!(!fonts.is_empty());
        for (name, embedded) in &fonts {
            assert!(embedded, "{name} is not embedded");
            // A subset's name carries a six-letter tag: ABCDEF+NotoSansCJKsc-Regular.
            assert_eq!(name.find('+'), Some(6), "{name} is not a subset");
        }
        // Subset: far smaller than the 19 MB collection it comes from.
        assert!(bytes.len() < 1_500_000, "{} bytes", bytes.len());
    }
}
