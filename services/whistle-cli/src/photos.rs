//! `whistle photos`: a person's request about the photos of incidents (个人信息保护法 articles 45
//! and 47): the photos incidents show (`find`) and their erasure (`erase`). Admin commands: they
//! read and write the database directly; the erasure wakes dispatch's retention job, which takes
//! the erased photos' bytes out of the bucket at once (docs/privacy.md).

use anyhow::Context as _;
use chrono::Utc;
use uuid::Uuid;
use whistle_domain::photo::PhotoId;
use whistle_store::{
    audit,
    photos::{self, Why},
};

use crate::{connect_db, Connection};

#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// The photos the incidents show, as JSON lines (incident, photo, the report it came with
    /// or empty for a resolution's, title, status, grid, when it was erased if it was).
    Find {
        /// An incident the request is about; repeat for several.
        #[arg(long = "incident", required = true)]
        incidents: Vec<Uuid>,
        /// The request, e.g. its reference number, recorded on the audit log.
        #[arg(long)]
        reason: String,
    },
    /// Erase photos on a person's request: each from every incident showing it (a photo is
    /// stored once however many incidents show it). The incidents and their history stay, and
    /// each timeline records the erasure.
    Erase {
        /// The incident the person named, which must show every photo given.
        #[arg(long)]
        incident: Uuid,
        /// A photo's id (its SHA-256, as `find` lists it); repeat for several.
        #[arg(long = "photo", required = true)]
        photos: Vec<String>,
        /// The request, e.g. its reference number, recorded on the timelines and the audit log
        /// (with `--actor`, the person handling it).
        #[arg(long)]
        reason: String,
    },
}

fn reason_given(reason: &str) -> anyhow::Result<&str> {
    let reason = reason.trim();
    anyhow::ensure!(!reason.is_empty(), "--reason must say what the request is");
    Ok(reason)
}

pub async fn run(conn: &Connection, args: Args) -> anyhow::Result<()> {
    match args {
        Args::Find { incidents, reason } => {
            let reason = reason_given(&reason)?;
            let pool = connect_db(conn).await?;
            let shown = photos::shown_by(&pool, &incidents).await?;
            let entry = audit::Entry {
                action: audit::action::PHOTOS_FIND,
                target: String::new(),
                area_code: String::new(),
                before: None,
                after: Some(serde_json::json!({
                    "reason": reason,
                    "incidents": incidents,
                    "photos": shown.len(),
                })),
            };
            let mut db = pool.acquire().await?;
            audit::record(&mut db, &conn.audit_actor(), Utc::now(), &[entry])
                .await
                .context("recording the request on the audit log")?;
            for photo in shown {
                let line = serde_json::json!({
                    "incident_id": photo.incident_id,
                    "photo_id": photo.photo_id,
                    "report_id": photo.report_id,
                    "title": photo.title,
                    "status": photo.status,
                    "grid_code": photo.grid_code,
                    "erased_at": photo.erased_at,
                });
                println!("{line}");
            }
        }
        Args::Erase {
            incident,
            photos: given,
            reason,
        } => {
            let reason = reason_given(&reason)?;
            let mut ids = Vec::with_capacity(given.len());
            for raw in &given {
                let id: PhotoId = raw.trim().parse()?;
                ids.push(id.to_string());
            }
            ids.sort();
            ids.dedup();
            let pool = connect_db(conn).await?;
            let shown = photos::shown_by(&pool, &[incident]).await?;
            let unknown: Vec<&str> = ids
                .iter()
                .filter(|id| !shown.iter().any(|s| s.photo_id == **id))
                .map(String::as_str)
                .collect();
            anyhow::ensure!(
                unknown.is_empty(),
                "incident {incident} shows no photo {} (see `whistle photos find --incident {incident}`); nothing was erased",
                unknown.join(", ")
            );
            let note = format!("依申请（{reason}）");
            let erased = photos::erase(
                &pool,
                &ids,
                Why::Request,
                &conn.audit_actor(),
                &note,
                Utc::now(),
            )
            .await
            .context("erasing the photos")?;
            let already = ids.len() - erased.photos.len();
            println!(
                "erased {} photos from {} incidents{}; dispatch takes their bytes out of the photo bucket now",
                erased.photos.len(),
                erased.incidents.len(),
                if already > 0 {
                    format!(" ({already} erased before)")
                } else {
                    String::new()
                }
            );
        }
    }
    Ok(())
}
