//! Places and values of the Ordos dataset the tests pick from and compare with.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, NaiveTime, TimeDelta, Utc};
use tonic::Code;
use whistle_domain::{AreaCode, Level};
use whistle_proto::v1;

use super::grids;

/// 10:00 today in Ordos (UTC+8), so that the test's hours stay inside one calendar day.
pub fn ten_o_clock_in_ordos() -> DateTime<Utc> {
    let ordos = FixedOffset::east_opt(8 * 3600).unwrap();
    Utc::now()
        .with_timezone(&ordos)
        .date_naive()
        .and_time(NaiveTime::from_hms_opt(10, 0, 0).unwrap())
        .and_local_timezone(ordos)
        .unwrap()
        .to_utc()
}

/// The Ordos grids by district, in code order.
pub fn grids_by_district() -> BTreeMap<String, Vec<String>> {
    let mut by_district: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for grid in grids() {
        by_district
            .entry(grid[..6].to_owned())
            .or_default()
            .push(grid);
    }
    for grids in by_district.values_mut() {
        grids.sort();
    }
    by_district
}

/// Two districts, and in the first one grids of three different streets.
pub fn places() -> (String, [String; 3], String, String) {
    let by_district = grids_by_district();
    let mut districts = by_district.iter();
    let (first, first_grids) = districts.next().unwrap();
    let (second, second_grids) = districts.next().unwrap();
    let mut streets = Vec::<String>::new();
    for grid in first_grids {
        if !streets.iter().any(|g| g[..9] == grid[..9]) {
            streets.push(grid.clone());
        }
    }
    assert!(streets.len() >= 3, "{first} has fewer than three streets");
    (
        first.clone(),
        [streets[0].clone(), streets[1].clone(), streets[2].clone()],
        second.clone(),
        second_grids[0].clone(),
    )
}

pub fn unit(grid: &str, level: Level) -> String {
    grid.parse::<AreaCode>()
        .unwrap()
        .at_level(level)
        .unwrap()
        .to_string()
}

pub fn dept(grid: &str, kind: &str) -> String {
    format!("{}-{kind}", &grid[..6])
}

pub fn at(timestamp: &Option<prost_types::Timestamp>) -> DateTime<Utc> {
    let t = timestamp.as_ref().expect("a timestamp");
    DateTime::from_timestamp(t.seconds, t.nanos as u32).unwrap()
}

pub fn late_by(item: &v1::OverdueItem) -> TimeDelta {
    let d = item.late_by.as_ref().expect("late_by");
    TimeDelta::new(d.seconds, d.nanos as u32).unwrap()
}

pub fn counts(counts: &[v1::Count]) -> Vec<(&str, u64)> {
    counts.iter().map(|c| (c.key.as_str(), c.count)).collect()
}

pub fn code<T>(result: Result<T, tonic::Status>) -> Code {
    match result {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

pub fn whistle_proto_level(stored: &str) -> i32 {
    let level: Level = stored.parse().unwrap();
    (match level {
        Level::Grid => v1::Level::Grid,
        Level::Community => v1::Level::Community,
        Level::Street => v1::Level::Street,
        Level::District => v1::Level::District,
        Level::City => v1::Level::City,
    }) as i32
}
