use super::*;
use crate::ordos as files_of;
use whistle_domain::{ordos, org_sheets::plan};

#[test]
fn csv_fields_with_commas_quotes_and_line_breaks_round_trip() {
    let sheet = Sheet {
        name: PEOPLE.into(),
        header_row: 1,
        headers: vec!["编号".into(), "姓名".into()],
        rows: vec![
            SheetRow {
                number: 2,
                cells: vec!["a,1".into(), "说\"明\"".into()],
            },
            SheetRow {
                number: 3,
                cells: vec!["b".into(), "两\n行".into()],
            },
            SheetRow {
                number: 4,
                cells: vec!["c".into(), "".into()],
            },
        ],
    };
    let bytes = csv(&sheet);
    assert!(
        bytes.starts_with(UTF8_BOM.as_bytes()),
        "Excel needs the BOM"
    );
    let back = read_csv("人员.csv", &bytes).unwrap();
    assert_eq!(back, sheet);
    // Without a BOM and with LF line ends, as other tools save it.
    let back = read_csv("人员.csv", "编号,姓名\na,b\n".as_bytes()).unwrap();
    assert_eq!(
        back.rows,
        [SheetRow {
            number: 2,
            cells: vec!["a".into(), "b".into()]
        }]
    );
    let err = read_csv("人员.csv", "编号,姓名\n\"a,b\n".as_bytes()).unwrap_err();
    assert_eq!(err.to_string(), "line 2: a quoted field is not closed");
    let err = read_csv("人员.csv", &[0xff, 0xfe, 0x00]).unwrap_err();
    assert!(err.to_string().starts_with("not UTF-8 text"), "{err}");
}

fn ordos_state() -> OrgState {
    let dataset = ordos::dataset();
    let boundaries = dataset
        .units
        .iter()
        .filter(|u| u.level() == whistle_domain::Level::Grid)
        .take(3)
        .map(|u| {
            let (x, y, d) = (u.lon, u.lat, 0.002);
            let ring = vec![
                vec![x - d, y - d],
                vec![x + d, y - d],
                vec![x + d, y + d],
                vec![x - d, y + d],
                vec![x - d, y - d],
            ];
            (u.code.clone(), Boundary::Polygon(vec![ring]))
        })
        .collect();
    OrgState {
        dataset,
        boundaries,
    }
}

/// Export in either format, then import into the exported org: nothing changes.
#[test]
fn an_export_imports_back_as_no_changes() {
    let state = ordos_state();
    for format in [Format::Xlsx, Format::Csv] {
        let dir =
            std::env::temp_dir().join(format!("whistle-orgfile-{}-{format:?}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let files = export(&state, &dir, format).unwrap();
        assert_eq!(files.len(), if format == Format::Xlsx { 2 } else { 4 });
        let input = read_files(std::slice::from_ref(&dir)).unwrap();
        let from_empty = plan(&input.org, &OrgState::default()).expect("the export is valid");
        assert_eq!(from_empty.upsert.units, state.dataset.units, "{format:?}");
        assert_eq!(from_empty.upsert.departments, state.dataset.departments);
        assert_eq!(from_empty.proposed.boundaries, state.boundaries);
        let again = plan(&input.org, &from_empty.proposed).unwrap();
        assert!(
            again.diff.is_empty(),
            "{format:?}: {}",
            again.diff.summary()
        );
        // Same files, same hash; the bytes of an XLSX export do not depend on when it ran.
        assert_eq!(
            read_files(std::slice::from_ref(&dir)).unwrap().sha256,
            input.sha256
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
    let sheets = org_sheets::to_sheets(&state.dataset);
    assert_eq!(xlsx(&sheets).unwrap(), xlsx(&sheets).unwrap());
}

#[test]
fn a_template_has_the_headers_and_imports_as_nothing() {
    let dir = std::env::temp_dir().join(format!("whistle-orgfile-template-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    template(&dir, Format::Xlsx).unwrap();
    let sheets = read_xlsx(&std::fs::read(dir.join(WORKBOOK_FILE)).unwrap()).unwrap();
    let headers: Vec<(String, Vec<String>)> = sheets
        .iter()
        .map(|s| (s.name.clone(), s.headers.clone()))
        .collect();
    assert_eq!(
        headers,
        [
            (
                UNITS.to_owned(),
                org_sheets::UNIT_COLUMNS.map(String::from).to_vec()
            ),
            (
                DEPARTMENTS.to_owned(),
                org_sheets::DEPARTMENT_COLUMNS.map(String::from).to_vec()
            ),
            (
                PEOPLE.to_owned(),
                org_sheets::PEOPLE_COLUMNS.map(String::from).to_vec()
            ),
        ]
    );
    assert!(sheets.iter().all(|s| s.rows.is_empty()));
    template(&dir, Format::Csv).unwrap();
    assert!(dir.join("填写说明.txt").exists());
    let input = read_files(&[dir.join("单位.csv"), dir.join(BOUNDARIES_FILE)]).unwrap();
    assert_eq!(input.org.units.unwrap().headers, org_sheets::UNIT_COLUMNS);
    assert_eq!(input.org.boundaries, Some(vec![]));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn geojson_features_are_read_with_their_position_and_code() {
    let text = r#"{"type":"FeatureCollection","features":[
        {"type":"Feature","properties":{"code":"150602001001001"},"geometry":{"type":"Polygon","coordinates":[[[1,2],[3,2],[3,4],[1,2]]]}},
        {"type":"Feature","properties":{"code":150602001001002},"geometry":{"type":"Point","coordinates":[1,2]}},
        {"type":"Feature","properties":{},"geometry":null}
    ]}"#;
    let features = read_geojson("b.geojson", text.as_bytes()).unwrap();
    assert_eq!(features.len(), 3);
    assert_eq!(features[0].code, "150602001001001");
    assert!(matches!(features[0].geometry, Ok(Boundary::Polygon(_))));
    assert_eq!(features[1].code, "150602001001002");
    assert!(features[1]
        .geometry
        .as_ref()
        .unwrap_err()
        .starts_with("不是 Polygon 或 MultiPolygon"));
    assert_eq!((features[2].number, features[2].code.as_str()), (3, ""));
    assert_eq!(features[2].geometry, Err("没有几何（geometry）".to_owned()));
    let err = read_geojson("b.geojson", br#"{"type":"Feature"}"#).unwrap_err();
    assert!(err.to_string().contains("FeatureCollection"));
}

#[test]
fn a_file_of_an_unknown_sheet_or_kind_is_refused_by_name() {
    let err = read_named([("岗位.csv", "a\n".as_bytes())]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "岗位.csv: unknown sheet \"岗位\"; the sheets are 单位, 部门 and 人员"
    );
    let err = read_named([("org.txt", "a".as_bytes())]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "org.txt: not an .xlsx, .csv or .geojson file"
    );
    let err = read_named([
        ("单位.csv", "a\n".as_bytes()),
        ("x/单位.csv", "a\n".as_bytes()),
    ]);
    assert!(err.is_err());
}

/// deploy/ordos/ holds what `ordos::files` produces from the compiled dataset; regenerate with
/// `WHISTLE_REGENERATE=1 cargo test -p whistle-orgfile repo_ordos_files`.
#[test]
fn the_repo_ordos_files_are_the_compiled_dataset() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/ordos");
    let files = files_of::files().unwrap();
    if std::env::var_os("WHISTLE_REGENERATE").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in &files {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    for (name, bytes) in &files {
        let stored = std::fs::read(dir.join(name)).unwrap();
        assert!(
            stored == *bytes,
            "deploy/ordos/{name} is stale: regenerate it (see this test)"
        );
    }
    // And they read back as the dataset, every grid with its boundary.
    let input = read_files(&[dir]).unwrap();
    let plan = plan(&input.org, &OrgState::default()).unwrap();
    let dataset = files_of::dataset_sorted();
    assert_eq!(plan.proposed.dataset, dataset);
    assert_eq!(plan.proposed.boundaries.len(), 1_564);
}
