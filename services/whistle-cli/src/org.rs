//! `whistle org`: the city's organisation as files (docs/operations.md, "The city's
//! organisation") — templates, import (a preview, then `--apply` as one numbered version),
//! export, and the versions applied. `whistle seed` is the import of the Ordos files in
//! deploy/ordos/, compiled into the binary. Admin commands: they write the database directly, as
//! its owner.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use whistle_domain::org_sheets::{Change, Diff, Problem};
use whistle_orgfile::{Format, Input};
use whistle_store::org::{Imported, Source};

use crate::{connect_db, Connection};

#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// Write empty templates to fill in: 组织机构.xlsx (sheets 单位, 部门, 人员 and 填写说明) or
    /// 单位.csv, 部门.csv, 人员.csv (UTF-8 with BOM) and 填写说明.txt; and 网格边界.geojson.
    Template {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "xlsx")]
        format: Format,
    },
    /// Check files (.xlsx, .csv named after its sheet, .geojson, or directories of them)
    /// against the org in the database and show the difference; with --apply, write it as the
    /// next version. Every bad cell is listed; nothing is written while any exists.
    Import {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Write the difference (one transaction, one version).
        #[arg(long)]
        apply: bool,
        /// Lines of the difference shown per part (units, departments, people, boundaries).
        #[arg(long, default_value_t = 50)]
        show: usize,
    },
    /// Write the org as it is, in the templates' form, and its grids' boundaries as GeoJSON:
    /// importing the result changes nothing.
    Export {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "xlsx")]
        format: Format,
    },
    /// The applied imports, newest first.
    Versions {
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

/// The Ordos files of deploy/ordos/, as `whistle seed` imports them.
const ORDOS: [(&str, &[u8]); 2] = [
    (
        whistle_orgfile::ordos::WORKBOOK,
        include_bytes!("../../../deploy/ordos/ordos.xlsx"),
    ),
    (
        whistle_orgfile::ordos::BOUNDARIES,
        include_bytes!("../../../deploy/ordos/ordos-grids.geojson"),
    ),
];

pub async fn run(conn: &Connection, args: Args) -> anyhow::Result<()> {
    match args {
        Args::Template { out, format } => {
            for path in whistle_orgfile::template(&out, format)? {
                println!("{}", path.display());
            }
        }
        Args::Export { out, format } => {
            let pool = connect_db(conn).await?;
            let state = whistle_store::org::load_state(&mut *pool.acquire().await?).await?;
            for path in whistle_orgfile::export(&state, &out, format)? {
                println!("{}", path.display());
            }
            println!(
                "{} units, {} departments, {} people, {} boundaries",
                state.dataset.units.len(),
                state.dataset.departments.len(),
                state.dataset.people.len(),
                state.boundaries.len()
            );
        }
        Args::Import { files, apply, show } => {
            let input = whistle_orgfile::read_files(&files)?;
            import(conn, &input, apply, show).await?;
        }
        Args::Versions { limit } => {
            let pool = connect_db(conn).await?;
            let versions = whistle_store::org::versions(&pool, limit).await?;
            if versions.is_empty() {
                println!("no import applied yet");
            }
            for v in versions {
                println!(
                    "{:>4}  {}  {}  {}  sha256 {}  {}",
                    v.number,
                    v.applied_at.format("%Y-%m-%d %H:%M:%S UTC"),
                    v.actor,
                    v.files.join(", "),
                    &v.input_sha256[..12.min(v.input_sha256.len())],
                    v.summary
                );
            }
        }
    }
    Ok(())
}

/// `whistle seed`: the Ordos files imported and applied.
pub async fn seed(conn: &Connection) -> anyhow::Result<()> {
    let input = whistle_orgfile::read_named(ORDOS)?;
    import(conn, &input, true, 0).await
}

async fn import(conn: &Connection, input: &Input, apply: bool, show: usize) -> anyhow::Result<()> {
    let pool = connect_db(conn).await?;
    let source = Source {
        sha256: input.sha256.clone(),
        files: input.files.clone(),
    };
    let imported =
        whistle_store::org::import(&pool, &input.org, &source, &conn.audit_actor(), apply)
            .await
            .context("importing the org")?;
    match imported {
        Imported::Invalid(problems) => {
            eprint!("{}", report(&problems));
            bail!(
                "{} problem(s) in {}; nothing was applied",
                problems.len(),
                input.files.join(", ")
            );
        }
        Imported::NoChanges => println!("no changes: the org is already what the files say"),
        Imported::Preview(plan) => {
            print!("{}", preview(&plan.diff, show));
            println!("not applied: run again with --apply to write this as the next version");
        }
        Imported::Applied { version, plan } => {
            print!("{}", preview(&plan.diff, show));
            println!("applied as org version {version}");
        }
    }
    Ok(())
}

/// The problems, one a line.
pub fn report(problems: &[Problem]) -> String {
    problems.iter().map(|p| format!("{p}\n")).collect()
}

/// The diff: a count line per part, then up to `show` of its changes.
pub fn preview(diff: &Diff, show: usize) -> String {
    let mut out = String::new();
    for (part, changes) in diff.parts() {
        let counts = Diff::counts(changes);
        let kept = changes
            .iter()
            .filter(|c| matches!(c, Change::Kept { .. }))
            .count();
        out.push_str(&format!(
            "{part}: {} added, {} changed, {} removed{}\n",
            counts.added,
            counts.changed,
            counts.removed,
            if kept > 0 {
                format!(", {kept} not in the file (kept)")
            } else {
                String::new()
            }
        ));
        for change in changes.iter().take(show) {
            out.push_str(&format!("  {change}\n"));
        }
        if changes.len() > show && show > 0 {
            out.push_str(&format!("  … and {} more\n", changes.len() - show));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use whistle_domain::org_sheets::{Change, Diff};

    #[test]
    fn a_preview_counts_each_part_and_shows_at_most_its_limit() {
        let added = |key: &str| Change::Added {
            key: key.into(),
            name: "网格".into(),
        };
        let diff = Diff {
            units: vec![added("1"), added("2"), added("3")],
            people: vec![Change::Kept {
                key: "p".into(),
                name: "张三".into(),
            }],
            ..Diff::default()
        };
        assert_eq!(
            super::preview(&diff, 2),
            "单位: 3 added, 0 changed, 0 removed\n  + 1 网格\n  + 2 网格\n  … and 1 more\n\
             部门: 0 added, 0 changed, 0 removed\n\
             人员: 0 added, 0 changed, 0 removed, 1 not in the file (kept)\n  \
             = p 张三: 不在文件中，保留 (not in the file, kept; use `whistle people offboard`)\n\
             网格边界: 0 added, 0 changed, 0 removed\n"
        );
    }
}
