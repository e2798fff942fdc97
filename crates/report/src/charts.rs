//! The report's charts, drawn by plotters as SVG (turned into PDF vector graphics with real text
//! by krilla-svg): the composite-score ranking of a board, the area's three rates month by month,
//! and the month's category mix.

use plotters::{
    coord::{ranged1d::SegmentedCoord, types::RangedCoordusize, Shift},
    prelude::*,
    style::{
        text_anchor::{HPos, Pos, VPos},
        FontFamily, RGBColor,
    },
};
use whistle_proto::v1;

use crate::{month_zh, CategoryShare, Totals};

const BLUE: RGBColor = RGBColor(0x2F, 0x5D, 0xA8);
const AMBER: RGBColor = RGBColor(0xC9, 0x8A, 0x1B);
const GREEN: RGBColor = RGBColor(0x2E, 0x8B, 0x57);
const RED: RGBColor = RGBColor(0xC0, 0x39, 0x2B);
const GREY: RGBColor = RGBColor(0x88, 0x88, 0x88);

/// A line of the trend: its name, colour and the rate it draws.
type Series = (&'static str, RGBColor, fn(&v1::Rates) -> f64);

/// A chart's SVG, or plotters' error in words.
pub(crate) type Svg = anyhow::Result<String>;

fn error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing a chart: {e:?}")
}

/// `n` (at least one) equal segments 0..n − 1 (a segmented range includes its end).
fn segments(n: usize) -> SegmentedCoord<RangedCoordusize> {
    (0..n.max(1) - 1).into_segmented()
}

/// An SVG of `size` drawn by `draw` on a white ground.
fn drawn(
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> anyhow::Result<()>,
) -> Svg {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(error)?;
        draw(&root)?;
        root.present().map_err(error)?;
    }
    Ok(svg)
}

/// Whether a row had anything happen in the month (the scoreboard ranks such rows last).
pub(crate) fn active(row: &v1::ScoreboardRow) -> bool {
    let rates = row.rates.unwrap_or_default();
    row.sample > 0 || rates.dispatched > 0 || rates.due > 0 || rates.followed_up > 0
}

/// Horizontal bars of the composite score of `rows` (the board's first, in rank order), the best
/// at the top; small-sample rows in amber with a `*`.
pub(crate) fn ranking(
    family: &str,
    title: &str,
    rows: &[v1::ScoreboardRow],
    (width, height): (u32, u32),
) -> Svg {
    drawn((width, height), |root| {
        draw_ranking(root, family, title, rows)
    })
}

fn draw_ranking(
    root: &DrawingArea<SVGBackend, Shift>,
    family: &str,
    title: &str,
    rows: &[v1::ScoreboardRow],
) -> anyhow::Result<()> {
    let font = |size: f64| (FontFamily::Name(family), size);
    let n = rows.len().max(1);
    // Row i (rank order) is drawn in segment n - 1 - i, so the first is at the top.
    let slot = |i: usize| n - 1 - i;
    let label = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(s) if *s < rows.len() => {
            let row = &rows[n - 1 - s];
            let mark = if row.small_sample { "*" } else { "" };
            format!("{}. {}{mark}", row.rank, row.name)
        }
        _ => String::new(),
    };
    let mut chart = ChartBuilder::on(root)
        .caption(title, font(17.0))
        .margin(8)
        .x_label_area_size(26)
        .y_label_area_size(190)
        .build_cartesian_2d(0f64..110f64, segments(n))
        .map_err(error)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&label)
        .y_label_style(font(11.0))
        .x_labels(12)
        .x_label_formatter(&|x| {
            if *x <= 100.0 {
                format!("{x:.0}")
            } else {
                String::new()
            }
        })
        .x_label_style(font(10.0))
        .x_desc("综合得分")
        .axis_desc_style(font(11.0))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(error)?;
    chart
        .draw_series(rows.iter().enumerate().map(|(i, row)| {
            let color = if row.small_sample { AMBER } else { BLUE };
            let mut bar = Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(slot(i))),
                    (row.composite_score, SegmentValue::Exact(slot(i) + 1)),
                ],
                color.filled(),
            );
            bar.set_margin(2, 2, 0, 0);
            bar
        }))
        .map_err(error)?;
    chart
        .draw_series(rows.iter().enumerate().map(|(i, row)| {
            Text::new(
                format!("{:.1}", row.composite_score),
                (row.composite_score + 1.0, SegmentValue::CenterOf(slot(i))),
                font(10.0)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Left, VPos::Center)),
            )
        }))
        .map_err(error)?;
    Ok(())
}

/// The area's response, resolution and satisfaction rates over `trend` (oldest first), in %.
pub(crate) fn trend(
    family: &str,
    title: &str,
    trend: &[Totals],
    (width, height): (u32, u32),
) -> Svg {
    drawn((width, height), |root| {
        let font = |size: f64| (FontFamily::Name(family), size);
        let n = trend.len().max(1);
        let mut chart = ChartBuilder::on(root)
            .caption(title, font(17.0))
            .margin(10)
            .x_label_area_size(28)
            .y_label_area_size(44)
            .build_cartesian_2d(segments(n), 0f64..105f64)
            .map_err(error)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) if *i < trend.len() => month_zh(&trend[*i].month),
                _ => String::new(),
            })
            .x_label_style(font(10.0))
            .y_labels(6)
            .y_label_formatter(&|y| {
                if *y <= 100.0 {
                    format!("{y:.0}%")
                } else {
                    String::new()
                }
            })
            .y_label_style(font(10.0))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(error)?;
        let series: [Series; 3] = [
            ("响应率", BLUE, |r| r.response_rate),
            ("办结率", GREEN, |r| r.resolution_rate),
            ("满意率", RED, |r| r.satisfaction_rate),
        ];
        for (name, color, rate) in series {
            let points: Vec<(SegmentValue<usize>, f64)> = trend
                .iter()
                .enumerate()
                .map(|(i, t)| (SegmentValue::CenterOf(i), 100.0 * rate(&t.rates)))
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(error)?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            chart
                .draw_series(
                    points
                        .into_iter()
                        .map(|p| Circle::new(p, 3, color.filled())),
                )
                .map_err(error)?;
        }
        chart
            .configure_series_labels()
            .label_font(font(11.0))
            .background_style(WHITE.mix(0.6))
            .border_style(GREY)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(error)?;
        Ok(())
    })
}

/// Incidents reported in each month of `trend` (oldest first), as columns.
pub(crate) fn volume(
    family: &str,
    title: &str,
    trend: &[Totals],
    (width, height): (u32, u32),
) -> Svg {
    drawn((width, height), |root| {
        let font = |size: f64| (FontFamily::Name(family), size);
        let n = trend.len().max(1);
        let top = trend.iter().map(|t| t.reported).max().unwrap_or(0).max(1) as f64 * 1.15;
        let mut chart = ChartBuilder::on(root)
            .caption(title, font(17.0))
            .margin(10)
            .x_label_area_size(28)
            .y_label_area_size(44)
            .build_cartesian_2d(segments(n), 0f64..top)
            .map_err(error)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) if *i < trend.len() => month_zh(&trend[*i].month),
                _ => String::new(),
            })
            .x_label_style(font(10.0))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .y_label_style(font(10.0))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(error)?;
        chart
            .draw_series(trend.iter().enumerate().map(|(i, t)| {
                let mut bar = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), 0.0),
                        (SegmentValue::Exact(i + 1), t.reported as f64),
                    ],
                    BLUE.mix(0.8).filled(),
                );
                bar.set_margin(0, 0, 14, 14);
                bar
            }))
            .map_err(error)?;
        chart
            .draw_series(trend.iter().enumerate().map(|(i, t)| {
                Text::new(
                    t.reported.to_string(),
                    (SegmentValue::CenterOf(i), t.reported as f64),
                    font(10.0)
                        .into_font()
                        .color(&BLACK)
                        .pos(Pos::new(HPos::Center, VPos::Bottom)),
                )
            }))
            .map_err(error)?;
        Ok(())
    })
}

/// Horizontal bars of the month's incidents by category (`shares`, most first), the largest at the
/// top, each labelled with its count and share of the month's incidents.
pub(crate) fn mix(
    family: &str,
    title: &str,
    shares: &[CategoryShare],
    (width, height): (u32, u32),
) -> Svg {
    drawn((width, height), |root| {
        let font = |size: f64| (FontFamily::Name(family), size);
        let n = shares.len().max(1);
        let total: u64 = shares.iter().map(|s| s.count).sum();
        let top = shares.iter().map(|s| s.count).max().unwrap_or(0).max(1) as f64 * 1.3;
        // Share i (largest first) is drawn in segment n - 1 - i, so the largest is at the top.
        let slot = |i: usize| n - 1 - i;
        let mut chart = ChartBuilder::on(root)
            .caption(title, font(17.0))
            .margin(8)
            .x_label_area_size(26)
            .y_label_area_size(170)
            .build_cartesian_2d(0f64..top, segments(n))
            .map_err(error)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(s) if *s < shares.len() => shares[n - 1 - s].name.clone(),
                _ => String::new(),
            })
            .y_label_style(font(11.0))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .x_label_style(font(10.0))
            .x_desc("事项数")
            .axis_desc_style(font(11.0))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(error)?;
        chart
            .draw_series(shares.iter().enumerate().map(|(i, share)| {
                let mut bar = Rectangle::new(
                    [
                        (0.0, SegmentValue::Exact(slot(i))),
                        (share.count as f64, SegmentValue::Exact(slot(i) + 1)),
                    ],
                    GREEN.mix(0.85).filled(),
                );
                bar.set_margin(2, 2, 0, 0);
                bar
            }))
            .map_err(error)?;
        chart
            .draw_series(shares.iter().enumerate().map(|(i, share)| {
                let percent = 100.0 * crate::ratio(share.count, total);
                Text::new(
                    format!("{} 件 · {percent:.1}%", share.count),
                    (
                        share.count as f64 + top / 100.0,
                        SegmentValue::CenterOf(slot(i)),
                    ),
                    font(10.0)
                        .into_font()
                        .color(&BLACK)
                        .pos(Pos::new(HPos::Left, VPos::Center)),
                )
            }))
            .map_err(error)?;
        Ok(())
    })
}
