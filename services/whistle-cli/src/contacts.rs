//! `whistle contacts`: the keyring that seals residents' contacts (`keygen`, `rekey`) and the log
//! of who read them unmasked (`log`). Admin commands: they read the database directly.

use std::path::PathBuf;

use anyhow::Context as _;
use chrono::{Local, Utc};
use whistle_store::{
    audit,
    contacts::{self, AccessFilter, Keyring},
    retention::{self, Scope},
    tracking,
};

use crate::{connect_db, Connection};

#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// Print a keyring line with a new random key (`key_id base64-key`); put it first in the
    /// keyring file to seal new contacts with it.
    Keygen {
        /// The new key's id, e.g. `2026-12`.
        key_id: String,
    },
    /// Re-seal every contact and every tracking code under the keyring's first key, in batches,
    /// so the older keys can be dropped from the file afterwards.
    Rekey {
        /// The keyring file: the new key first, the old ones after it.
        #[arg(long, env = "WHISTLE_CONTACT_KEYS")]
        contact_keys: PathBuf,
        /// Contacts (and then tracking codes) re-sealed per transaction.
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        batch: u32,
    },
    /// A resident's request (个人信息保护法): the reports that hold their phone number, as JSON
    /// lines (report, incident, title, status, grid, when, the contact). Every contact is opened
    /// to compare, so this reads them all.
    Find {
        #[command(flatten)]
        resident: Resident,
        /// The request, e.g. its reference number, recorded on the audit log with the reports
        /// found (never the number).
        #[arg(long)]
        reason: String,
    },
    /// A resident's request to erase their phone number from every report holding it; the
    /// incidents and their history stay, and each timeline records the erasure.
    Erase {
        #[command(flatten)]
        resident: Resident,
        /// The request, e.g. its reference number, recorded on the timelines and the audit log
        /// (with `--actor`, the person handling it).
        #[arg(long)]
        reason: String,
    },
    /// Who read residents' contacts unmasked, newest first.
    Log {
        /// Only reads of incidents in this area (an org code).
        #[arg(long)]
        area: Option<whistle_domain::AreaCode>,
        /// Only reads of this incident.
        #[arg(long)]
        incident: Option<uuid::Uuid>,
        /// Most rows.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

#[derive(Debug, clap::Args)]
pub struct Resident {
    /// The resident's phone number; spaces, dashes and a leading +86 do not matter.
    #[arg(long)]
    phone: String,
    /// The keyring file, to open the contacts with.
    #[arg(long, env = "WHISTLE_CONTACT_KEYS")]
    contact_keys: PathBuf,
}

/// The contacts holding `resident`'s number: (report id, the contact as stored).
async fn holding(
    pool: &sqlx::PgPool,
    resident: &Resident,
) -> anyhow::Result<Vec<(String, String)>> {
    let keyring = Keyring::load(&resident.contact_keys)?;
    let found = retention::holding(pool, &keyring, &resident.phone, |read, found| {
        eprintln!("{read} contacts compared, {found} hold the number")
    })
    .await?;
    Ok(found)
}

/// Re-seals `what` batch by batch until none is left, with progress; returns how many.
async fn reseal<F, Fut>(what: &str, total: i64, mut batch: F) -> anyhow::Result<u64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = whistle_store::Result<usize>>,
{
    let mut done = 0u64;
    loop {
        let n = batch()
            .await
            .with_context(|| format!("re-sealing a batch of {what}"))?;
        if n == 0 {
            return Ok(done);
        }
        done += n as u64;
        eprintln!("re-sealed {done}/{total} {what}");
    }
}

pub async fn run(conn: &Connection, args: Args) -> anyhow::Result<()> {
    match args {
        Args::Keygen { key_id } => {
            let line = Keyring::generate_line(&key_id);
            // Checked as a keyring would read it, so a bad id fails here and not at start.
            Keyring::parse(&line)?;
            println!("{line}");
        }
        Args::Rekey {
            contact_keys,
            batch,
        } => {
            let keyring = Keyring::load(&contact_keys)?;
            let pool = connect_db(conn).await?;
            let newest = keyring.sealing_key_id();
            let total = contacts::count_to_rekey(&pool, &keyring).await?;
            let codes = tracking::count_to_rekey(&pool, &keyring).await?;
            eprintln!("{total} contacts and {codes} tracking codes to re-seal under key {newest}");
            let done = reseal("contacts", total, || {
                contacts::rekey(&pool, &keyring, batch)
            })
            .await?;
            let codes_done = reseal("tracking codes", codes, || {
                tracking::rekey(&pool, &keyring, batch)
            })
            .await?;
            if done + codes_done > 0 {
                let entry = audit::Entry {
                    action: audit::action::CONTACTS_REKEY,
                    target: "report_contacts".to_owned(),
                    area_code: String::new(),
                    before: Some(
                        serde_json::json!({ "to_reseal": total, "tracking_codes_to_reseal": codes }),
                    ),
                    after: Some(serde_json::json!({
                        "sealing_key": newest,
                        "resealed": done,
                        "tracking_codes_resealed": codes_done,
                    })),
                };
                let mut db = pool.acquire().await?;
                audit::record(&mut db, &conn.audit_actor(), Utc::now(), &[entry])
                    .await
                    .context("recording the re-sealing on the audit log")?;
            }
            println!("all contacts and tracking codes are sealed under key {newest} ({done} contacts and {codes_done} codes re-sealed); the other keys may be dropped from the keyring");
        }
        Args::Find { resident, reason } => {
            anyhow::ensure!(
                !reason.trim().is_empty(),
                "--reason must say what the request is"
            );
            let pool = connect_db(conn).await?;
            let found = holding(&pool, &resident).await?;
            let ids: Vec<String> = found.iter().map(|(id, _)| id.clone()).collect();
            let entry = audit::Entry {
                action: audit::action::CONTACTS_FIND,
                target: String::new(),
                area_code: String::new(),
                before: None,
                after: Some(serde_json::json!({ "reason": reason.trim(), "reports": ids })),
            };
            let mut db = pool.acquire().await?;
            audit::record(&mut db, &conn.audit_actor(), Utc::now(), &[entry])
                .await
                .context("recording the request on the audit log")?;
            for case in retention::cases(&pool, &ids).await? {
                let contact = found
                    .iter()
                    .find(|(id, _)| *id == case.report_id)
                    .map(|(_, c)| c.as_str());
                let line = serde_json::json!({
                    "report_id": case.report_id,
                    "incident_id": case.incident_id,
                    "title": case.title,
                    "status": case.status,
                    "grid_code": case.grid_code,
                    "received_at": case.received_at,
                    "contact": contact,
                });
                println!("{line}");
            }
        }
        Args::Erase { resident, reason } => {
            anyhow::ensure!(
                !reason.trim().is_empty(),
                "--reason must say what the request is"
            );
            let pool = connect_db(conn).await?;
            let found = holding(&pool, &resident).await?;
            let ids: Vec<String> = found.into_iter().map(|(id, _)| id).collect();
            let note = format!("依居民申请（{}）", reason.trim());
            let actor = conn.audit_actor();
            let mut erased = (0, 0);
            // In batches, so that no transaction holds many incidents at once.
            for batch in ids.chunks(200) {
                let (incidents, contacts) =
                    retention::erase(&pool, Scope::Reports(batch), &actor, &note, Utc::now())
                        .await
                        .context("erasing a batch of contacts")?;
                erased = (erased.0 + incidents, erased.1 + contacts);
            }
            println!("erased {} contacts from {} incidents", erased.1, erased.0);
        }
        Args::Log {
            area,
            incident,
            limit,
        } => {
            let pool = connect_db(conn).await?;
            let rows = contacts::list_access(
                &pool,
                &AccessFilter {
                    area_code: area.map(|a| a.prefix().to_owned()),
                    incident_id: incident,
                    before: None,
                    limit,
                },
            )
            .await?;
            for row in rows {
                let read = &row.read;
                let photo = if read.photo_id.is_empty() {
                    String::new()
                } else {
                    format!("  photo {}", read.photo_id)
                };
                println!(
                    "{}  {:<10} {:<24} {}  report {}{photo}  via {}  token {}",
                    row.at.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S"),
                    read.role,
                    read.person_id.as_deref().unwrap_or("-"),
                    read.incident_id,
                    read.report_id,
                    read.door,
                    read.token_id
                );
            }
        }
    }
    Ok(())
}
