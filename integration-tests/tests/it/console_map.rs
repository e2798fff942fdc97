//! The command screen's base map (`console/maps/ordos.geojson`, docs/console.md "The map") covers
//! the org tree: every district and the city have a polygon under their code and name, and every
//! district's seat lies inside its district's polygon. (Streets are not checked: the Ordos dataset
//! scatters them round their seat — made-up positions — and four of 59 fall across a district line,
//! 王爱召镇 north of the Yellow River outside the city; see console/maps/README.md.) A city that loads its own approved map runs the same check by pointing
//! WHISTLE_MAP_FILE at it.

use std::path::{Path, PathBuf};

use serde_json::Value;
use whistle_domain::{ordos, Level};

fn map_file() -> PathBuf {
    std::env::var_os("WHISTLE_MAP_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../services/whistle-query/console/maps/ordos.geojson")
        })
}

/// The outer rings of a feature's Polygon or MultiPolygon, as (lon, lat) points.
fn outer_rings(feature: &Value) -> Vec<Vec<(f64, f64)>> {
    let geometry = &feature["geometry"];
    let polygons: Vec<&Value> = match geometry["type"].as_str() {
        Some("Polygon") => vec![&geometry["coordinates"]],
        Some("MultiPolygon") => geometry["coordinates"].as_array().unwrap().iter().collect(),
        other => panic!("feature {} has geometry {other:?}", feature["properties"]),
    };
    polygons
        .into_iter()
        .map(|polygon| {
            polygon[0]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_f64().unwrap(), p[1].as_f64().unwrap()))
                .collect()
        })
        .collect()
}

/// Even-odd ray casting.
fn inside(rings: &[Vec<(f64, f64)>], lon: f64, lat: f64) -> bool {
    rings.iter().any(|ring| {
        let mut hit = false;
        for pair in ring.windows(2) {
            let ((x1, y1), (x2, y2)) = (pair[0], pair[1]);
            if (y1 > lat) != (y2 > lat) && lon < (x2 - x1) * (lat - y1) / (y2 - y1) + x1 {
                hit = !hit;
            }
        }
        hit
    })
}

#[test]
fn every_district_of_the_org_tree_has_a_polygon_holding_its_seat() {
    let path = map_file();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let map: Value = serde_json::from_str(&text).expect("the map is JSON");
    assert_eq!(map["type"], "FeatureCollection");
    assert!(
        map["whistle"]["version"]
            .as_str()
            .is_some_and(|v| !v.is_empty()),
        "the map names its version"
    );
    let features = map["features"].as_array().expect("features");
    let feature = |code: &str| {
        features
            .iter()
            .find(|f| f["properties"]["code"] == code)
            .unwrap_or_else(|| panic!("no polygon for {code} in {}", path.display()))
    };

    let dataset = ordos::dataset();
    let mut districts = 0;
    for unit in &dataset.units {
        let code = unit.code.as_str();
        match unit.level() {
            Level::City | Level::District => {
                let f = feature(code);
                assert_eq!(
                    f["properties"]["name"],
                    unit.name.as_str(),
                    "the name of {code}"
                );
                let rings = outer_rings(f);
                assert!(
                    rings.iter().all(|r| r.len() >= 4 && r.first() == r.last()),
                    "{code}: closed rings"
                );
                if unit.level() == Level::District {
                    districts += 1;
                    assert!(
                        inside(&rings, unit.lon, unit.lat),
                        "the seat of {} lies outside its polygon",
                        unit.name
                    );
                }
            }
            _ => {}
        }
    }
    assert_eq!(districts, 9, "Ordos has nine banners and districts");
}
