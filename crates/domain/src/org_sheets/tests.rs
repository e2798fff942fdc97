use super::*;
use crate::ordos;

fn sheet(name: &str, headers: &[&str], rows: &[&[&str]]) -> Sheet {
    Sheet {
        name: name.into(),
        header_row: 1,
        headers: headers.iter().map(|h| (*h).to_owned()).collect(),
        rows: rows
            .iter()
            .enumerate()
            .map(|(i, cells)| SheetRow {
                number: i as u32 + 2,
                cells: cells.iter().map(|c| (*c).to_owned()).collect(),
            })
            .collect(),
    }
}

/// A small consistent org: the city, one district, street, community and grid, a department and
/// a grid worker.
fn small() -> OrgInput {
    OrgInput {
        units: Some(sheet(
            UNITS,
            &UNIT_COLUMNS,
            &[
                &["150600", "", "城市", "鄂尔多斯市", "", "39.6", "109.8"],
                &["150602", "150600", "旗区", "东胜区", "", "39.8", "109.9"],
                &[
                    "150602001",
                    "150602",
                    "街道",
                    "交通街道",
                    "建制街道",
                    "39.81",
                    "109.95",
                ],
                &[
                    "150602001001",
                    "150602001",
                    "社区",
                    "甲社区",
                    "城镇社区",
                    "39.811",
                    "109.951",
                ],
                &[
                    "150602001001001",
                    "150602001001",
                    "网格",
                    "一号网格",
                    "",
                    "39.8111",
                    "109.9511",
                ],
            ],
        )),
        departments: Some(sheet(
            DEPARTMENTS,
            &DEPARTMENT_COLUMNS,
            &[&[
                "150602-urban_management",
                "东胜区城市管理综合执法局",
                "城市管理综合执法局",
                "150602",
            ]],
        )),
        people: Some(sheet(
            PEOPLE,
            &PEOPLE_COLUMNS,
            &[
                &["gw-1", "张三", "13800000001", "网格员", "150602001001001"],
                &[
                    "li-1",
                    "李四",
                    "13800000002",
                    "部门报到人",
                    "150602-urban_management",
                ],
            ],
        )),
        boundaries: None,
    }
}

fn square(lon: f64, lat: f64) -> Boundary {
    let d = 0.001;
    Boundary::Polygon(vec![vec![
        vec![lon - d, lat - d],
        vec![lon + d, lat - d],
        vec![lon + d, lat + d],
        vec![lon - d, lat + d],
        vec![lon - d, lat - d],
    ]])
}

#[test]
fn a_consistent_org_plans_everything_as_added_and_then_nothing() {
    let first = plan(&small(), &OrgState::default()).expect("the small org is valid");
    assert_eq!(first.upsert.units.len(), 5);
    assert_eq!(first.upsert.departments.len(), 1);
    assert_eq!(first.upsert.people.len(), 2);
    assert_eq!(
        first.diff.summary(),
        "单位 +5 ~0 -0; 部门 +1 ~0 -0; 人员 +2 ~0 -0; 网格边界 +0 ~0 -0"
    );
    assert!(crate::OrgIndex::build(first.proposed.dataset.clone()).is_ok());

    let again = plan(&small(), &first.proposed).unwrap();
    assert!(again.diff.is_empty(), "{:?}", again.diff);
    assert_eq!(again.upsert, OrgDataset::default());
}

#[test]
fn a_changed_file_shows_only_its_changes_before_and_after() {
    let current = plan(&small(), &OrgState::default()).unwrap().proposed;
    let mut input = small();
    let units = input.units.as_mut().unwrap();
    units.rows[4].cells[3] = "一号网格（新）".into();
    units.rows[4].cells[5] = "39.8112".into();
    units.rows.remove(3); // the community and…
    units.rows.remove(3); // …its grid: refused, its grid worker (not in this import) works there
    input.people = None;
    let refused = plan(&input, &current).unwrap_err();
    assert_eq!(
        refused.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["单位 (不在文件中) 编码 \"150602001001001\": 不能删除：人员 gw-1（张三）的岗位在此"]
    );

    let mut input = small();
    input.units.as_mut().unwrap().rows[4].cells[3] = "一号网格（新）".into();
    input.people.as_mut().unwrap().rows[0].cells[2] = "13900000009".into();
    input.people.as_mut().unwrap().rows.remove(1);
    input.boundaries = Some(vec![BoundaryFeature {
        file: "网格边界.geojson".into(),
        number: 1,
        code: "150602001001001".into(),
        geometry: Ok(square(109.9511, 39.8111)),
    }]);
    let plan = plan(&input, &current).unwrap();
    let lines: Vec<String> = plan
        .diff
        .parts()
        .iter()
        .flat_map(|(_, changes)| changes.iter().map(ToString::to_string))
        .collect();
    assert_eq!(
        lines,
        [
            "~ 150602001001001 一号网格（新）: 名称 \"一号网格\" → \"一号网格（新）\"",
            "~ gw-1 张三: 电话 \"138****0001\" → \"139****0009\"",
            "= li-1 李四: 不在文件中，保留 (not in the file, kept; use `whistle people offboard`)",
            "+ 150602001001001 一号网格（新）",
        ]
    );
    assert_eq!(plan.upsert.people.len(), 1);
    assert_eq!(plan.proposed.dataset.people.len(), 2, "li-1 is kept");
    assert_eq!(plan.boundaries.len(), 1);
}

#[test]
fn a_malformed_template_is_answered_with_every_bad_cell() {
    let input = OrgInput {
        units: Some(sheet(
            UNITS,
            &UNIT_COLUMNS,
            &[
                &["150600", "", "城市", "鄂尔多斯市", "", "39.6", "109.8"],
                &["150602", "150600", "旗区", "东胜区", "", "39.8", "109.9"],
                &["150602", "150600", "旗区", "东胜区", "", "39.8", "109.9"],
                &["150603001", "150602", "街道", "错街道", "", "39.8", "109.9"],
                &[
                    "150602001001",
                    "150602",
                    "社区",
                    "跳级社区",
                    "",
                    "39.8",
                    "109.9",
                ],
                &["150602002", "150602", "社区", "层级错", "", "95", "200"],
                &["150602003", "150602", "街道", "", "", "北纬", ""],
                &["150699001", "150699", "街道", "无上级", "", "39.8", "109.9"],
                &[],
                &["15060200A", "150602", "街道", "坏编码", "", "39.8", "109.9"],
            ],
        )),
        departments: Some(sheet(
            DEPARTMENTS,
            &DEPARTMENT_COLUMNS,
            &[
                &[
                    "150602-urban_management",
                    "城管",
                    "城市管理综合执法局",
                    "150602",
                ],
                &["150621-police", "公安", "公安局", "150621"],
                &["150602-water", "水利", "水务", "150602003"],
            ],
        )),
        people: Some(sheet(
            PEOPLE,
            &["编号", "姓名", "电话", "角色", "岗位"],
            &[
                &["gw-1", "张三", "13800000001", "网格员", ""],
                &["gw-2", "李四", "call me", "网格员", "150602"],
                &[
                    "li-1",
                    "王五",
                    "13800000003",
                    "部门报到人",
                    "150602-heating",
                ],
                &["x-1", "赵六", "13800000004", "队长", "150602"],
            ],
        )),
        boundaries: Some(vec![
            BoundaryFeature {
                file: "边界.geojson".into(),
                number: 1,
                code: "150602".into(),
                geometry: Ok(square(109.9, 39.8)),
            },
            BoundaryFeature {
                file: "边界.geojson".into(),
                number: 2,
                code: "150602001001009".into(),
                geometry: Ok(Boundary::Polygon(vec![vec![
                    vec![109.9, 39.8],
                    vec![109.91, 39.8],
                    vec![109.91, 39.81],
                    vec![109.9, 39.81],
                ]])),
            },
        ]),
    };
    let problems = plan(&input, &OrgState::default()).unwrap_err();
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "单位 第4行 编码 \"150602\": 编码重复（与第3行相同）",
            "单位 第5行 编码 \"150603001\": 未以上级编码 150602 开头",
            "单位 第6行 上级编码 \"150602\": 层级顺序不对：社区的上级应为街道（150602001），不是旗区",
            "单位 第7行 层级 \"社区\": 与编码的位数不符：编码 150602002 是街道",
            "单位 第7行 纬度 \"95\": 超出范围（-90～90）",
            "单位 第7行 经度 \"200\": 超出范围（-180～180）",
            "单位 第8行 名称 \"\": 不能为空",
            "单位 第8行 纬度 \"北纬\": 不是数字",
            "单位 第8行 经度 \"\": 不能为空",
            "单位 第9行 上级编码 \"150699\": 上级单位不存在（不在单位中）",
            "单位 第11行 编码 \"15060200A\": invalid area code \"15060200A\": expected digits only",
            "部门 第3行 所属区域 \"150621\": 区域不存在（不在单位中）",
            "部门 第4行 类型 \"水务\": 未知的部门类型（应为如 城市管理综合执法局 或 urban_management）",
            "部门 第4行 所属区域 \"150602003\": 应为旗区或城市，不是街道",
            "人员 第2行 岗位 \"\": 角色网格员须填写岗位（网格编码）",
            "人员 第3行 电话 \"call me\": 不是电话号码（5–20位数字，可含 + - 空格）",
            "人员 第3行 岗位 \"150602\": 网格员的岗位应为网格编码，不是旗区",
            "人员 第4行 岗位 \"150602-heating\": 部门不存在（不在部门中）",
            "人员 第5行 角色 \"队长\": 应为 网格员/部门报到人/指挥中心/街道社区干部/结对领导 或 grid_worker/liaison/operator/handler/leader",
            "边界.geojson 第1个要素 properties.code \"150602\": 边界只用于网格，这是旗区",
            "边界.geojson 第2个要素 properties.code \"150602001001009\": 网格不存在（不在单位中）",
            "边界.geojson 第2个要素 geometry \"\": 第1个环未闭合：首末点不同",
        ]
    );
}

#[test]
fn missing_columns_are_named_on_the_header_row() {
    let input = OrgInput {
        departments: Some(sheet(DEPARTMENTS, &["编码", "名称"], &[&["a", "b"]])),
        ..OrgInput::default()
    };
    let lines: Vec<String> = plan(&input, &OrgState::default())
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        lines,
        [
            "部门 第1行 类型 \"\": 缺少此列",
            "部门 第1行 所属区域 \"\": 缺少此列",
        ]
    );
}

#[test]
fn boundaries_must_be_closed_rings_of_four_points_in_range() {
    let open = Boundary::Polygon(vec![vec![
        vec![109.0, 39.0],
        vec![109.1, 39.0],
        vec![109.1, 39.1],
        vec![109.0, 39.1],
    ]]);
    assert_eq!(open.check().unwrap_err(), "第1个环未闭合：首末点不同");
    let short = Boundary::Polygon(vec![vec![
        vec![109.0, 39.0],
        vec![109.1, 39.0],
        vec![109.0, 39.0],
    ]]);
    assert_eq!(short.check().unwrap_err(), "第1个环只有3个点，至少需要4个");
    let far = Boundary::MultiPolygon(vec![vec![vec![
        vec![109.0, 39.0],
        vec![209.0, 39.0],
        vec![109.1, 39.1],
        vec![109.0, 39.0],
    ]]]);
    assert_eq!(
        far.check().unwrap_err(),
        "第1个多边形第1个环第2个点 [209, 39] 超出范围（经度±180，纬度±90）"
    );
    assert!(square(109.9, 39.8).check().is_ok());
}

#[test]
fn the_ordos_data_as_sheets_plans_back_to_itself() {
    let data = ordos::dataset();
    let [units, departments, people] = to_sheets(&data);
    let input = OrgInput {
        units: Some(units),
        departments: Some(departments),
        people: Some(people),
        boundaries: None,
    };
    let plan = plan(&input, &OrgState::default()).expect("the Ordos sheets are valid");
    assert_eq!(plan.upsert.units, data.units);
    assert_eq!(plan.upsert.departments, data.departments);
    let mut people = data.people.clone();
    people.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(plan.proposed.dataset.people, people);
}
