//! `whistle devices`: the device registry (sensors, video-analytics systems), one grid each;
//! a device's credential is `whistle token create --role device --device ID` (docs/devices.md).
//! Admin commands: they write the database directly, on the audit log.

use anyhow::Context as _;
use chrono::Utc;
use whistle_domain::{devices::DeviceKind, AreaCode};

use crate::{connect_db, Connection};

#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// Register a device in a grid.
    Register {
        /// The device's id (1–64 of A-Z a-z 0-9 . _ : -), e.g. wl-150602001001001-01.
        #[arg(long)]
        id: String,
        /// water_level, smoke, manhole_cover or video_analytics.
        #[arg(long, value_parser = parse_kind)]
        kind: DeviceKind,
        /// The grid it reports from.
        #[arg(long)]
        grid: AreaCode,
        #[arg(long, default_value = "")]
        label: String,
    },
    /// The devices of an area (all by default), those flagged for maintenance first.
    List {
        #[arg(long)]
        area: Option<AreaCode>,
    },
    /// Clear a device's maintenance flag once it is fixed: active again, its history starts over.
    ClearFlag {
        /// The device's id.
        #[arg(long)]
        id: String,
        /// Refuse unless the device's grid lies in this area (an operator's scope).
        #[arg(long)]
        area: Option<AreaCode>,
    },
}

fn parse_kind(value: &str) -> Result<DeviceKind, String> {
    DeviceKind::from_slug(value).ok_or_else(|| {
        format!("{value:?}: expected water_level, smoke, manhole_cover or video_analytics")
    })
}

pub async fn run(conn: &Connection, args: Args) -> anyhow::Result<()> {
    let pool = connect_db(conn).await?;
    match args {
        Args::Register {
            id,
            kind,
            grid,
            label,
        } => {
            let device = whistle_store::devices::register(
                &pool,
                &id,
                kind,
                &grid,
                &label,
                Utc::now(),
                &conn.audit_actor(),
            )
            .await
            .context("registering the device")?;
            println!(
                "registered {} ({}) in grid {}; its credential: whistle token create --role device --device {}",
                device.id,
                device.kind.name_zh(),
                device.grid,
                device.id
            );
        }
        Args::List { area } => {
            for d in whistle_store::devices::list(&pool, area.as_ref()).await? {
                let flag = match (&d.flagged_at, &d.flag_reason) {
                    (Some(at), reason) => format!(
                        "\tflagged {} ({})",
                        at.to_rfc3339(),
                        reason.as_deref().unwrap_or_default()
                    ),
                    (None, _) => String::new(),
                };
                println!(
                    "{}\t{}\t{}\t{}\t{}{flag}",
                    d.id,
                    d.kind.slug(),
                    d.grid,
                    d.status,
                    d.label
                );
            }
        }
        Args::ClearFlag { id, area } => {
            let device = whistle_store::devices::clear_flag(
                &pool,
                &id,
                area.as_ref(),
                Utc::now(),
                &conn.audit_actor(),
            )
            .await
            .context("clearing the device's flag")?;
            println!(
                "{} ({}) in grid {} is active again; its readings start over from now",
                device.id,
                device.kind.name_zh(),
                device.grid
            );
        }
    }
    Ok(())
}
