//! `whistle report monthly`: the monthly assessment report (月度考核通报) of an area, an XLSX
//! workbook and a PDF with charts, from the query service's scoreboards read with the operator's
//! token (crates/report; docs/report.md).

use std::path::PathBuf;

use anyhow::{bail, Context as _};

use crate::Connection;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The month, `YYYY-MM` (Asia/Shanghai); default the current one.
    #[arg(long, default_value = "")]
    month: String,
    /// The area: the city (default), a district, or a street (a street has no department board:
    /// give its district).
    #[arg(long, default_value = "")]
    area: String,
    /// The folder the files are written to (created if missing).
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// Which files: xlsx, pdf or both.
    #[arg(long, value_enum, default_value_t = Formats::Both)]
    format: Formats,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Formats {
    Xlsx,
    Pdf,
    Both,
}

pub async fn run(conn: &Connection, args: Args) -> anyhow::Result<()> {
    // Found before any call, so a machine without the font fails at once and says what to install.
    let font = match args.format {
        Formats::Xlsx => None,
        Formats::Pdf | Formats::Both => Some(whistle_report::Font::load()?),
    };
    let mut client = conn.query().await?;
    let report =
        whistle_report::gather(&mut client, &args.area, &args.month, chrono::Utc::now()).await?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut written = Vec::new();
    if args.format != Formats::Pdf {
        written.push(write(
            &args.out,
            &whistle_report::file_name(&report, "xlsx"),
            &whistle_report::xlsx(&report)?,
        )?);
    }
    if let Some(font) = &font {
        written.push(write(
            &args.out,
            &whistle_report::file_name(&report, "pdf"),
            &whistle_report::pdf(&report, font)?,
        )?);
    }
    if written.is_empty() {
        bail!("nothing to write");
    }
    println!(
        "{} {}: {} departments, {} streets",
        report.area_name,
        report.month,
        report.departments.rows.len(),
        report.streets.rows.len()
    );
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}

/// Writes `bytes` to `dir/name` through a temporary file, so a crash never leaves half a report
/// under the final name.
fn write(dir: &std::path::Path, name: &str, bytes: &[u8]) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    let partial = dir.join(format!(".{name}.partial"));
    std::fs::write(&partial, bytes).with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}
