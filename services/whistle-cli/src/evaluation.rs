//! The yearly evaluation of units (双报到 年度考评, docs/party.md) written as files: the
//! workbook of an area's units and one notice per unit, from the service ledger and the registry
//! (`whistle volunteers evaluate`, as the database owner).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use whistle_domain::{policy::EvaluationRules, volunteer, AreaCode};
use whistle_report::evaluation::{evaluation_notice, evaluation_xlsx, UnitEvaluation};
use whistle_store::volunteers;

/// What [`write`] wrote.
#[derive(Debug, Clone)]
pub struct Written {
    pub area_name: String,
    pub units: usize,
    pub workbook: PathBuf,
}

/// Evaluates the units registered inside `area` for the Ordos calendar year `year` and writes
/// `双报到考评-{area}-{year}.xlsx` and `{unit}.md` for each into `out`, a directory it creates
/// (it must not exist, so no earlier evaluation is overwritten), graded by `rules` (the policy's).
pub async fn write(
    pool: &sqlx::PgPool,
    area: &AreaCode,
    year: i32,
    rules: &EvaluationRules,
    out: &Path,
) -> anyhow::Result<Written> {
    let area_name: String = sqlx::query_scalar("SELECT name FROM org_units WHERE code = $1")
        .bind(area.as_str())
        .fetch_optional(pool)
        .await?
        .with_context(|| format!("no area {area}"))?;
    let years = volunteers::unit_years(pool, area, year).await?;
    let units: Vec<UnitEvaluation> = years
        .into_iter()
        .map(|u| {
            let graded = volunteer::evaluate(&u.service, rules);
            UnitEvaluation {
                unit_id: u.unit_id,
                unit_name: u.unit_name,
                community: u.community_code,
                registered: u.service.registered,
                served: u.service.served,
                confirmed: u.service.confirmed,
                hours: u.service.minutes as f64 / 60.0,
                points: u.service.points,
                participation: graded.as_ref().map_or(0.0, |g| g.participation),
                hours_per_member: graded.as_ref().map_or(0.0, |g| g.hours_per_member),
                satisfaction: graded.as_ref().and_then(|g| g.satisfaction),
                grade: graded
                    .map(|g| g.grade.name_zh().to_owned())
                    .unwrap_or_default(),
            }
        })
        .collect();
    std::fs::create_dir(out)
        .with_context(|| format!("creating {} (it must not exist)", out.display()))?;
    let workbook = out.join(format!("双报到考评-{area}-{year}.xlsx"));
    std::fs::write(&workbook, evaluation_xlsx(year, &area_name, &units)?)?;
    for unit in &units {
        std::fs::write(
            out.join(format!("{}.md", unit.unit_id)),
            evaluation_notice(year, &area_name, unit),
        )?;
    }
    Ok(Written {
        area_name,
        units: units.len(),
        workbook,
    })
}
