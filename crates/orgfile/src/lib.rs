//! The city's organisation as files its staff keep (docs/operations.md, "The city's
//! organisation"): one XLSX workbook with the sheets 单位, 部门 and 人员 (or the same as CSV files,
//! UTF-8 with a BOM so that Excel opens them), and GeoJSON FeatureCollections of grid boundaries
//! (`properties.code`). Reading turns them into [`OrgInput`] — cells as text with the row number
//! Excel shows — which `whistle_domain::org_sheets::plan` checks; writing is export and the empty
//! templates. Export then import is "no changes": codes are written as text, coordinates as the
//! numbers stored.

use std::{
    collections::BTreeMap,
    io::Cursor,
    path::{Path, PathBuf},
};

use anyhow::{anyhow, bail, Context as _};
use calamine::{Data, Reader as _, Xlsx};
use rust_xlsxwriter::{DocProperties, ExcelDateTime, Format as CellFormat, Workbook};
use sha2::{Digest as _, Sha256};
use whistle_domain::{
    org_sheets::{
        self, Boundary, BoundaryFeature, OrgInput, OrgState, Sheet, SheetRow, DEPARTMENTS, PEOPLE,
        UNITS,
    },
    AreaCode,
};

/// The sheet that explains the columns, in workbooks written here; import ignores it.
pub const GUIDE: &str = "填写说明";
/// The GeoJSON file of an export.
pub const BOUNDARIES_FILE: &str = "网格边界.geojson";
/// The workbook of an export or template.
pub const WORKBOOK_FILE: &str = "组织机构.xlsx";

pub mod ordos;

const UTF8_BOM: &str = "\u{feff}";

/// An import's input read from files, with the hash of what was read.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub org: OrgInput,
    /// SHA-256 over the files' names and bytes, in name order: the version's input hash.
    pub sha256: String,
    pub files: Vec<String>,
}

/// Reads files — `.xlsx`, `.csv` named after its sheet (单位.csv, 部门.csv, 人员.csv), `.geojson` or
/// `.json` — or directories of them (their files of those kinds, in name order).
pub fn read_files(paths: &[PathBuf]) -> anyhow::Result<Input> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("reading the directory {}", path.display()))?
                .map(|e| e.map(|e| e.path()))
                .collect::<Result<_, _>>()?;
            entries.retain(|p| kind(p).is_some());
            entries.sort();
            if entries.is_empty() {
                bail!("{} has no .xlsx, .csv or .geojson file", path.display());
            }
            files.extend(entries);
        } else {
            files.push(path.clone());
        }
    }
    if files.is_empty() {
        bail!("no file given");
    }
    let mut read = Vec::new();
    for path in &files {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        read.push((name, bytes));
    }
    read_named(read.iter().map(|(n, b)| (n.as_str(), b.as_slice())))
}

/// Reads files given as (name, bytes): the name says the format (and, for CSV, the sheet).
pub fn read_named<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> anyhow::Result<Input> {
    let mut files: Vec<(&str, &[u8])> = files.into_iter().collect();
    files.sort_by(|a, b| a.0.cmp(b.0));
    let mut org = OrgInput::default();
    let mut hash = Sha256::new();
    let mut names = Vec::new();
    for (name, bytes) in &files {
        hash.update((name.len() as u64).to_be_bytes());
        hash.update(name.as_bytes());
        hash.update((bytes.len() as u64).to_be_bytes());
        hash.update(bytes);
        names.push((*name).to_owned());
        match kind(Path::new(name)) {
            Some(Kind::Xlsx) => {
                for sheet in read_xlsx(bytes).with_context(|| format!("reading {name}"))? {
                    put(&mut org, sheet, name)?;
                }
            }
            Some(Kind::Csv) => {
                let sheet = read_csv(name, bytes).with_context(|| format!("reading {name}"))?;
                put(&mut org, sheet, name)?;
            }
            Some(Kind::GeoJson) => {
                let features =
                    read_geojson(name, bytes).with_context(|| format!("reading {name}"))?;
                org.boundaries.get_or_insert_with(Vec::new).extend(features);
            }
            None => bail!("{name}: not an .xlsx, .csv or .geojson file"),
        }
    }
    if org.units.is_none()
        && org.departments.is_none()
        && org.people.is_none()
        && org.boundaries.is_none()
    {
        bail!("none of the files has a sheet {UNITS}, {DEPARTMENTS} or {PEOPLE}, or boundaries");
    }
    let digest = hash.finalize();
    Ok(Input {
        org,
        sha256: digest.iter().map(|b| format!("{b:02x}")).collect(),
        files: names,
    })
}

enum Kind {
    Xlsx,
    Csv,
    GeoJson,
}

fn kind(path: &Path) -> Option<Kind> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "xlsx" => Some(Kind::Xlsx),
        "csv" => Some(Kind::Csv),
        "geojson" | "json" => Some(Kind::GeoJson),
        _ => None,
    }
}

fn put(org: &mut OrgInput, sheet: Sheet, file: &str) -> anyhow::Result<()> {
    let slot = match sheet.name.as_str() {
        UNITS => &mut org.units,
        DEPARTMENTS => &mut org.departments,
        PEOPLE => &mut org.people,
        other => bail!(
            "{file}: unknown sheet {other:?}; the sheets are {UNITS}, {DEPARTMENTS} and {PEOPLE}"
        ),
    };
    if slot.is_some() {
        bail!("{file}: the sheet {} is given twice", sheet.name);
    }
    *slot = Some(sheet);
    Ok(())
}

/// The sheets 单位, 部门 and 人员 of a workbook (others, such as 填写说明, are not read).
pub fn read_xlsx(bytes: &[u8]) -> anyhow::Result<Vec<Sheet>> {
    let mut workbook: Xlsx<_> = calamine::open_workbook_from_rs(Cursor::new(bytes))
        .map_err(|e| anyhow!("not a readable XLSX workbook: {e}"))?;
    let mut sheets = Vec::new();
    for name in [UNITS, DEPARTMENTS, PEOPLE] {
        if !workbook.sheet_names().iter().any(|n| n == name) {
            continue;
        }
        let range = workbook
            .worksheet_range(name)
            .map_err(|e| anyhow!("sheet {name}: {e}"))?;
        let (first_row, first_column) = range.start().unwrap_or((0, 0));
        // Cells left of the range are empty: pad so that column positions match the headers.
        let pad = first_column as usize;
        let mut rows = range.rows().enumerate().map(|(i, cells)| SheetRow {
            number: first_row + i as u32 + 1,
            cells: std::iter::repeat_n(String::new(), pad)
                .chain(cells.iter().map(cell_text))
                .collect(),
        });
        let header = rows.next();
        sheets.push(Sheet {
            name: name.to_owned(),
            header_row: header.as_ref().map_or(1, |h| h.number),
            headers: header.map(|h| h.cells).unwrap_or_default(),
            rows: rows.collect(),
        });
    }
    if sheets.is_empty() {
        bail!("the workbook has no sheet named {UNITS}, {DEPARTMENTS} or {PEOPLE}");
    }
    Ok(sheets)
}

/// A cell as text: numbers as Rust writes them (whole numbers without `.0`, so a code typed as a
/// number reads as its digits; coordinates exactly as stored).
fn cell_text(cell: &Data) -> String {
    match cell {
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e17 => format!("{}", *f as i64),
        other => other.to_string(),
    }
}

/// A CSV file named after its sheet (`单位.csv`): UTF-8, with or without a BOM, RFC 4180 quoting.
pub fn read_csv(file: &str, bytes: &[u8]) -> anyhow::Result<Sheet> {
    let name = Path::new(file)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_owned();
    let text = std::str::from_utf8(bytes)
        .map_err(|e| anyhow!("not UTF-8 text ({e}); save it from Excel as \"CSV UTF-8\""))?;
    let text = text.strip_prefix(UTF8_BOM).unwrap_or(text);
    let mut records = parse_csv(text)?
        .into_iter()
        .enumerate()
        .map(|(i, cells)| SheetRow {
            number: i as u32 + 1,
            cells,
        });
    let header = records.next();
    Ok(Sheet {
        name,
        header_row: 1,
        headers: header.map(|h| h.cells).unwrap_or_default(),
        rows: records.collect(),
    })
}

/// RFC 4180 records: fields separated by commas, quoted with `"` when they hold a comma, quote or
/// line break (a quote inside doubled); CRLF or LF line ends.
fn parse_csv(text: &str) -> anyhow::Result<Vec<Vec<String>>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    let mut quoted_from = None;
    while let Some(c) = chars.next() {
        if quoted_from.is_some() {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted_from = None,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => quoted_from = Some(line),
            ',' => record.push(std::mem::take(&mut field)),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                line += 1;
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            _ => field.push(c),
        }
    }
    if let Some(from) = quoted_from {
        bail!("line {from}: a quoted field is not closed");
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    Ok(records)
}

/// A GeoJSON FeatureCollection: each feature's `properties.code` and its Polygon or MultiPolygon.
pub fn read_geojson(file: &str, bytes: &[u8]) -> anyhow::Result<Vec<BoundaryFeature>> {
    let json: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| anyhow!("not JSON: {e}"))?;
    if json.get("type").and_then(|t| t.as_str()) != Some("FeatureCollection") {
        bail!("not a GeoJSON FeatureCollection (\"type\": \"FeatureCollection\")");
    }
    let features = json
        .get("features")
        .and_then(|f| f.as_array())
        .ok_or_else(|| anyhow!("a FeatureCollection without \"features\""))?;
    Ok(features
        .iter()
        .enumerate()
        .map(|(i, feature)| {
            let code = match feature.pointer("/properties/code") {
                Some(serde_json::Value::String(s)) => s.trim().to_owned(),
                Some(serde_json::Value::Number(n)) => n.to_string(),
                _ => String::new(),
            };
            let geometry = match feature.get("geometry") {
                None | Some(serde_json::Value::Null) => Err("没有几何（geometry）".to_owned()),
                Some(g) => serde_json::from_value::<Boundary>(g.clone())
                    .map_err(|e| format!("不是 Polygon 或 MultiPolygon 的坐标（{e}）")),
            };
            BoundaryFeature {
                file: file.to_owned(),
                number: i as u32 + 1,
                code,
                geometry,
            }
        })
        .collect())
}

/// The format of an export or template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Xlsx,
    Csv,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "xlsx" => Ok(Format::Xlsx),
            "csv" => Ok(Format::Csv),
            other => Err(format!("unknown format {other:?}; use xlsx or csv")),
        }
    }
}

/// Writes the org into `dir` (created if missing) in `format`, and the boundaries as GeoJSON;
/// returns the files written. Files already there are replaced.
pub fn export(state: &OrgState, dir: &Path, format: Format) -> anyhow::Result<Vec<PathBuf>> {
    let sheets = org_sheets::to_sheets(&state.dataset);
    let mut written = write_sheets(&sheets, dir, format)?;
    let names: BTreeMap<&AreaCode, &str> = state
        .dataset
        .units
        .iter()
        .map(|u| (&u.code, u.name.as_str()))
        .collect();
    let path = dir.join(BOUNDARIES_FILE);
    std::fs::write(&path, geojson(&state.boundaries, &names))
        .with_context(|| format!("writing {}", path.display()))?;
    written.push(path);
    Ok(written)
}

/// Writes empty templates into `dir`: the sheets with their headers (the workbook with its
/// 填写说明 sheet of every column with an example), and an empty boundaries file.
pub fn template(dir: &Path, format: Format) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = write_sheets(&template_sheets(), dir, format)?;
    if format == Format::Csv {
        let path = dir.join(format!("{GUIDE}.txt"));
        let mut text = String::new();
        for (sheet, column, meaning, example) in guide_rows() {
            text.push_str(&format!("{sheet}\t{column}\t{meaning}\t示例：{example}\n"));
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    let path = dir.join(BOUNDARIES_FILE);
    std::fs::write(&path, template_geojson())
        .with_context(|| format!("writing {}", path.display()))?;
    written.push(path);
    Ok(written)
}

/// The empty sheets, with their headers.
fn template_sheets() -> [Sheet; 3] {
    org_sheets::to_sheets(&Default::default())
}

/// The template workbook ([`WORKBOOK_FILE`]): the empty sheets and 填写说明, as the console offers
/// it for download.
pub fn template_xlsx() -> anyhow::Result<Vec<u8>> {
    xlsx(&template_sheets())
}

/// The empty boundaries file ([`BOUNDARIES_FILE`]).
pub fn template_geojson() -> Vec<u8> {
    geojson(&BTreeMap::new(), &BTreeMap::new())
}

fn write_sheets(sheets: &[Sheet; 3], dir: &Path, format: Format) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    match format {
        Format::Xlsx => {
            let path = dir.join(WORKBOOK_FILE);
            std::fs::write(&path, xlsx(sheets)?)
                .with_context(|| format!("writing {}", path.display()))?;
            written.push(path);
        }
        Format::Csv => {
            for sheet in sheets {
                let path = dir.join(format!("{}.csv", sheet.name));
                std::fs::write(&path, csv(sheet))
                    .with_context(|| format!("writing {}", path.display()))?;
                written.push(path);
            }
        }
    }
    Ok(written)
}

/// Every column of every sheet: what it holds and an example.
fn guide_rows() -> Vec<(&'static str, &'static str, &'static str, &'static str)> {
    vec![
        (UNITS, "编码", "行政区划代码：市、旗区6位，街道/乡镇9位，社区12位，网格15位；下级编码以上级编码开头", "150602001001001"),
        (UNITS, "上级编码", "上一级单位的编码；城市留空", "150602001001"),
        (UNITS, "层级", "城市/旗区/街道/社区/网格（或 city/district/street/community/grid），须与编码位数一致", "网格"),
        (UNITS, "名称", "单位名称", "交通街道第一社区第一网格"),
        (UNITS, "分类", "街道：建制街道/旗设街道/参照街道/城关中心镇；社区：所在地分类；其他可留空", ""),
        (UNITS, "纬度", "中心点纬度（WGS-84，-90～90）", "39.8167"),
        (UNITS, "经度", "中心点经度（WGS-84，-180～180）", "109.9774"),
        (DEPARTMENTS, "编码", "所属区域编码-类型代码", "150602-urban_management"),
        (DEPARTMENTS, "名称", "部门全称", "东胜区城市管理综合执法局"),
        (DEPARTMENTS, "类型", "部门类型（如 城市管理综合执法局，或其代码 urban_management），每个区域每类一个", "城市管理综合执法局"),
        (DEPARTMENTS, "所属区域", "服务的旗区或城市的编码", "150602"),
        (PEOPLE, "编号", "人员编号（字母、数字、. _ : -），不可重复；导入不会删除人员，离岗请用 whistle people offboard", "gw-150602001001001-1"),
        (PEOPLE, "姓名", "姓名", "张三"),
        (PEOPLE, "电话", "手机或座机号码", "13800000000"),
        (PEOPLE, "角色", "网格员/部门报到人/指挥中心/街道社区干部（或 grid_worker/liaison/operator/handler）", "网格员"),
        (PEOPLE, "岗位", "网格员填网格编码，部门报到人填部门编码，指挥中心填旗区或城市编码，街道社区干部填街道或社区编码", "150602001001001"),
        ("网格边界", "GeoJSON", "FeatureCollection，每个要素 properties.code 为网格编码，geometry 为闭合的 Polygon 或 MultiPolygon（经度, 纬度），每环至少4个点", BOUNDARIES_FILE),
    ]
}

/// The workbook: the three sheets (codes as text, coordinates as numbers) and 填写说明.
pub fn xlsx(sheets: &[Sheet; 3]) -> anyhow::Result<Vec<u8>> {
    let mut workbook = Workbook::new();
    // A fixed creation time: the same org gives the same bytes (the repo's Ordos files).
    let created = ExcelDateTime::from_ymd(2026, 1, 1).context("a fixed date")?;
    workbook.set_properties(&DocProperties::new().set_creation_datetime(&created));
    let bold = CellFormat::new().set_bold();
    for sheet in sheets {
        let worksheet = workbook.add_worksheet();
        worksheet.set_name(&sheet.name)?;
        for (c, header) in sheet.headers.iter().enumerate() {
            worksheet.write_string_with_format(0, c as u16, header, &bold)?;
            let width = if matches!(header.as_str(), "名称" | "岗位" | "编码") {
                28
            } else {
                14
            };
            worksheet.set_column_width(c as u16, width)?;
        }
        for (r, row) in sheet.rows.iter().enumerate() {
            for (c, value) in row.cells.iter().enumerate() {
                let numeric = matches!(sheet.headers[c].as_str(), "纬度" | "经度");
                match value.parse::<f64>() {
                    Ok(number) if numeric => {
                        worksheet.write_number(r as u32 + 1, c as u16, number)?
                    }
                    _ if value.is_empty() => worksheet,
                    _ => worksheet.write_string(r as u32 + 1, c as u16, value)?,
                };
            }
        }
        worksheet.set_freeze_panes(1, 0)?;
    }
    let guide = workbook.add_worksheet();
    guide.set_name(GUIDE)?;
    for (c, header) in ["工作表", "列", "说明", "示例"].iter().enumerate() {
        guide.write_string_with_format(0, c as u16, *header, &bold)?;
    }
    guide.set_column_width(2, 80)?;
    guide.set_column_width(3, 28)?;
    for (r, (sheet, column, meaning, example)) in guide_rows().into_iter().enumerate() {
        let r = r as u32 + 1;
        guide.write_string(r, 0, sheet)?;
        guide.write_string(r, 1, column)?;
        guide.write_string(r, 2, meaning)?;
        guide.write_string(r, 3, example)?;
    }
    Ok(workbook.save_to_buffer()?)
}

/// A sheet as CSV: UTF-8 with a BOM (Excel then reads the Chinese right), CRLF line ends.
pub fn csv(sheet: &Sheet) -> Vec<u8> {
    let mut out = String::from(UTF8_BOM);
    let mut line = |cells: &[String]| {
        let fields: Vec<String> = cells
            .iter()
            .map(|c| {
                if c.contains([',', '"', '\n', '\r']) {
                    format!("\"{}\"", c.replace('"', "\"\""))
                } else {
                    c.clone()
                }
            })
            .collect();
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    };
    line(&sheet.headers);
    for row in &sheet.rows {
        line(&row.cells);
    }
    out.into_bytes()
}

/// The boundaries as a FeatureCollection, one feature a line in code order (`properties.code`
/// and `name`), so that a change shows as a one-line diff.
pub fn geojson(
    boundaries: &BTreeMap<AreaCode, Boundary>,
    names: &BTreeMap<&AreaCode, &str>,
) -> Vec<u8> {
    let features: Vec<String> = boundaries
        .iter()
        .map(|(code, boundary)| {
            serde_json::json!({
                "type": "Feature",
                "properties": {"code": code.as_str(), "name": names.get(code).copied().unwrap_or_default()},
                "geometry": boundary,
            })
            .to_string()
        })
        .collect();
    let body = if features.is_empty() {
        String::new()
    } else {
        format!("\n{}\n", features.join(",\n"))
    };
    format!("{{\"type\":\"FeatureCollection\",\"features\":[{body}]}}\n").into_bytes()
}

#[cfg(test)]
mod tests;
