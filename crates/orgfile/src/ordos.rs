//! The Ordos demo organisation as files (deploy/ordos/): the tool that produced them from the
//! synthetic dataset compiled into `whistle_domain::ordos`, which `whistle seed` now imports like
//! any city's files. Boundaries are synthetic too: a square of about 440 m × 340 m around each
//! grid's centre (the survey has none).

use std::collections::BTreeMap;

use whistle_domain::{org_sheets::Boundary, AreaCode, Level, OrgDataset};

/// The workbook's file name in deploy/ordos/.
pub const WORKBOOK: &str = "ordos.xlsx";
/// The boundaries' file name in deploy/ordos/.
pub const BOUNDARIES: &str = "ordos-grids.geojson";

/// Half the side of a grid's square, in degrees.
const HALF_SIDE: f64 = 0.002;

/// Synthetic boundaries: a closed square ring around each grid's centre, to 6 decimals.
pub fn boundaries(dataset: &OrgDataset) -> BTreeMap<AreaCode, Boundary> {
    // Through the decimal text, so that the value is the f64 nearest it and prints as 6 decimals.
    let round = |v: f64| {
        format!("{v:.6}")
            .parse::<f64>()
            .expect("a formatted float parses")
    };
    dataset
        .units
        .iter()
        .filter(|u| u.level() == Level::Grid)
        .map(|u| {
            let (west, east) = (round(u.lon - HALF_SIDE), round(u.lon + HALF_SIDE));
            let (south, north) = (round(u.lat - HALF_SIDE), round(u.lat + HALF_SIDE));
            let ring = vec![
                vec![west, south],
                vec![east, south],
                vec![east, north],
                vec![west, north],
                vec![west, south],
            ];
            (u.code.clone(), Boundary::Polygon(vec![ring]))
        })
        .collect()
}

/// The files, as (name, bytes): the same bytes on every machine.
pub fn files() -> anyhow::Result<[(&'static str, Vec<u8>); 2]> {
    let dataset = whistle_domain::ordos::dataset();
    let workbook = crate::xlsx(&whistle_domain::org_sheets::to_sheets(&dataset))?;
    let names = dataset
        .units
        .iter()
        .map(|u| (&u.code, u.name.as_str()))
        .collect();
    let geojson = crate::geojson(&boundaries(&dataset), &names);
    Ok([(WORKBOOK, workbook), (BOUNDARIES, geojson)])
}

/// The compiled dataset in the order an import loads it (people by id), to compare with.
pub fn dataset_sorted() -> OrgDataset {
    let mut dataset = whistle_domain::ordos::dataset();
    dataset.people.sort_by(|a, b| a.id.cmp(&b.id));
    dataset
}
