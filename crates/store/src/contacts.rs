//! Residents' contact numbers at rest, and the log of who read them.
//!
//! A report's `contact_phone` never stays in the report: intake seals it with ChaCha20-Poly1305
//! under the first key of the operator's [`Keyring`] (a random nonce per row, the report id as
//! associated data, so a sealed number cannot be moved to another report) and writes it to
//! `report_contacts` in the batch's transaction ([`crate::intake`]), with its mask beside it.
//! Only whistle-query opens them, for the roles that must call back, and records every such read
//! in `contact_access` ([`record_access`]). [`rekey`] re-seals rows under the newest key, so
//! a key can be retired (docs/operations.md).

use std::{fmt, path::Path};

use base64::Engine as _;
use chacha20poly1305::{
    aead::{Aead, KeyInit, Payload},
    ChaCha20Poly1305, Nonce,
};
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::{Error, Result};

/// Bytes of a key (ChaCha20-Poly1305 takes 256 bits).
pub const KEY_BYTES: usize = 32;
/// Bytes of a nonce.
pub const NONCE_BYTES: usize = 12;
/// Longest key id.
const MAX_KEY_ID: usize = 64;

/// The operator's contact keys, from a keyring file: one key a line, `key_id base64(32 bytes)`;
/// blank lines and lines starting with `#` are ignored. The first key seals new contacts; every
/// key opens the contacts sealed under it. Rotation: add a new first line, restart, run
/// `whistle contacts rekey`, then drop the old line.
#[derive(Clone)]
pub struct Keyring {
    /// Never empty; the first seals.
    keys: Vec<(String, ChaCha20Poly1305)>,
    /// Per key, in the same order: the HMAC key residents' tracking codes are looked up by
    /// ([`crate::tracking`]), derived from the key so that no second secret must be kept.
    macs: Vec<[u8; 32]>,
}

/// The key material stays out of logs and panics.
impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("key_ids", &self.key_ids().collect::<Vec<_>>())
            .finish()
    }
}

/// A contact as stored: sealed, and its mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedContact {
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
    /// What everyone but the callers-back sees (`whistle_domain::contact::mask`).
    pub masked: String,
}

impl Keyring {
    /// Parses a keyring file's text.
    pub fn parse(text: &str) -> Result<Keyring> {
        let mut keys: Vec<(String, ChaCha20Poly1305)> = Vec::new();
        let mut macs = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |what: &str| Error::Keyring(format!("line {}: {what}", n + 1));
            let mut fields = line.split_whitespace();
            let (Some(id), Some(key), None) = (fields.next(), fields.next(), fields.next()) else {
                return Err(bad("expected `key_id base64-key`"));
            };
            if id.len() > MAX_KEY_ID
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            {
                return Err(bad(&format!(
                    "key id {id:?} is not 1–{MAX_KEY_ID} characters of [A-Za-z0-9._-]"
                )));
            }
            if keys.iter().any(|(known, _)| known == id) {
                return Err(bad(&format!("key id {id:?} appears twice")));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(key)
                .map_err(|_| bad("the key is not base64"))?;
            if bytes.len() != KEY_BYTES {
                return Err(bad(&format!(
                    "the key is {} bytes, not {KEY_BYTES}",
                    bytes.len()
                )));
            }
            let cipher = ChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| bad("bad key"))?;
            keys.push((id.to_owned(), cipher));
            macs.push(crate::tracking::derive_mac_key(&bytes));
        }
        if keys.is_empty() {
            return Err(Error::Keyring("the keyring holds no key".into()));
        }
        Ok(Keyring { keys, macs })
    }

    /// Reads and parses a keyring file.
    pub fn load(path: &Path) -> Result<Keyring> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Keyring(format!("reading {}: {e}", path.display())))?;
        Keyring::parse(&text).map_err(|e| match e {
            Error::Keyring(message) => Error::Keyring(format!("{}: {message}", path.display())),
            other => other,
        })
    }

    /// A keyring line with a new random key, for `key_id`.
    pub fn generate_line(key_id: &str) -> String {
        let key: [u8; KEY_BYTES] = rand::random();
        format!(
            "{key_id} {}",
            base64::engine::general_purpose::STANDARD.encode(key)
        )
    }

    /// The key new contacts are sealed under.
    pub fn sealing_key_id(&self) -> &str {
        &self.keys[0].0
    }

    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(id, _)| id.as_str())
    }

    /// Seals `contact` of `report_id` under the first key.
    pub fn seal(&self, report_id: &str, contact: &str) -> SealedContact {
        let (key_id, nonce, ciphertext) = self.seal_bytes(report_id.as_bytes(), contact.as_bytes());
        SealedContact {
            key_id,
            nonce,
            ciphertext,
            masked: whistle_domain::contact::mask(contact),
        }
    }

    /// Seals `msg` under the first key with `aad`: (key id, nonce, ciphertext).
    pub(crate) fn seal_bytes(&self, aad: &[u8], msg: &[u8]) -> (String, Vec<u8>, Vec<u8>) {
        let (key_id, cipher) = &self.keys[0];
        let nonce: [u8; NONCE_BYTES] = rand::random();
        let ciphertext = cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg, aad })
            .expect("sealing a short message cannot fail");
        (key_id.clone(), nonce.to_vec(), ciphertext)
    }

    /// Opens what [`Keyring::seal_bytes`] sealed, `None` if the key is not held or it does not
    /// open.
    pub(crate) fn open_bytes(
        &self,
        aad: &[u8],
        key_id: &str,
        nonce: &[u8],
        ciphertext: &[u8],
    ) -> Option<Vec<u8>> {
        let (_, cipher) = self.keys.iter().find(|(id, _)| id == key_id)?;
        if nonce.len() != NONCE_BYTES {
            return None;
        }
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .ok()
    }

    /// The MAC key of the first key, with its id: new tracking codes are stored under it.
    pub(crate) fn sealing_mac(&self) -> (&str, &[u8; 32]) {
        (&self.keys[0].0, &self.macs[0])
    }

    /// Every key's MAC key: a code is looked up under each, so codes made before a new first key
    /// was added still work.
    pub(crate) fn macs(&self) -> impl Iterator<Item = &[u8; 32]> {
        self.macs.iter()
    }

    /// Opens the contact of `report_id` sealed under `key_id`.
    pub fn open(
        &self,
        report_id: &str,
        key_id: &str,
        nonce: &[u8],
        ciphertext: &[u8],
    ) -> Result<String> {
        let (_, cipher) = self
            .keys
            .iter()
            .find(|(id, _)| id == key_id)
            .ok_or_else(|| {
                Error::Keyring(format!(
                    "the contact of report {report_id:?} is sealed under key {key_id:?}, which the keyring does not hold"
                ))
            })?;
        if nonce.len() != NONCE_BYTES {
            return Err(Error::Corrupt(format!(
                "the contact of report {report_id:?} has a {}-byte nonce",
                nonce.len()
            )));
        }
        let plain = cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: report_id.as_bytes(),
                },
            )
            .map_err(|_| {
                Error::Corrupt(format!(
                    "the contact of report {report_id:?} does not open under key {key_id:?}"
                ))
            })?;
        String::from_utf8(plain).map_err(|_| {
            Error::Corrupt(format!("the contact of report {report_id:?} is not UTF-8"))
        })
    }
}

/// A contact row as read back.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredContact {
    pub report_id: String,
    pub incident_id: Uuid,
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub masked: String,
}

impl StoredContact {
    pub fn open(&self, keyring: &Keyring) -> Result<String> {
        keyring.open(&self.report_id, &self.key_id, &self.nonce, &self.ciphertext)
    }
}

/// The contacts of an incident's reports.
pub async fn of_incident(conn: &mut PgConnection, incident_id: Uuid) -> Result<Vec<StoredContact>> {
    Ok(sqlx::query_as(
        "SELECT report_id, incident_id, key_id, nonce, ciphertext, masked
         FROM report_contacts WHERE incident_id = $1",
    )
    .bind(incident_id)
    .fetch_all(conn)
    .await?)
}

/// One unmasked read of one report's contact.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Access {
    pub token_id: Uuid,
    pub person_id: Option<String>,
    pub role: String,
    pub incident_id: Uuid,
    pub report_id: String,
    /// Where it was shown, e.g. the RPC `GetIncident`, or `GetPhoto` for a photo.
    pub door: String,
    /// The photo served (its SHA-256); empty for a contact. A photo's `report_id` is its
    /// report's, empty for a resolution's "after" photo.
    pub photo_id: String,
}

/// Records unmasked reads in the access log and on the audit log (`contact.read`, `photo.read`),
/// in one transaction. It is opened read-write explicitly: whistle-query's sessions default to
/// read-only, and these two tables are the ones it writes.
pub async fn record_access(pool: &PgPool, at: DateTime<Utc>, reads: &[Access]) -> Result<()> {
    if reads.is_empty() {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION READ WRITE")
        .execute(&mut *tx)
        .await?;
    let ids: Vec<Uuid> = reads.iter().map(|_| Uuid::now_v7()).collect();
    sqlx::query(
        "INSERT INTO contact_access (id, at, token_id, person_id, role, incident_id, report_id, door, photo_id)
         SELECT t.id, $2, t.token_id, t.person_id, t.role, t.incident_id, t.report_id, t.door, t.photo_id
         FROM UNNEST($1::uuid[], $3::uuid[], $4::text[], $5::text[], $6::uuid[], $7::text[], $8::text[], $9::text[])
             AS t(id, token_id, person_id, role, incident_id, report_id, door, photo_id)",
    )
    .bind(ids)
    .bind(at)
    .bind(reads.iter().map(|r| r.token_id).collect::<Vec<_>>())
    .bind(reads.iter().map(|r| r.person_id.as_deref()).collect::<Vec<_>>())
    .bind(reads.iter().map(|r| r.role.as_str()).collect::<Vec<_>>())
    .bind(reads.iter().map(|r| r.incident_id).collect::<Vec<_>>())
    .bind(reads.iter().map(|r| r.report_id.as_str()).collect::<Vec<_>>())
    .bind(reads.iter().map(|r| r.door.as_str()).collect::<Vec<_>>())
    .bind(reads.iter().map(|r| r.photo_id.as_str()).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    // The same reads on the audit log of administration, in the incident's area, so operators
    // find them beside the other administrative actions (the number itself is never copied).
    sqlx::query(
        "INSERT INTO audit_log (id, at, actor, token_id, door, action, target, area_code, after)
         SELECT t.id, $2, coalesce(t.person_id, t.token_id::text), t.token_id, t.door,
                CASE WHEN t.photo_id = '' THEN 'contact.read' ELSE 'photo.read' END,
                t.incident_id::text,
                coalesce((SELECT i.grid_code FROM incidents i WHERE i.id = t.incident_id), ''),
                jsonb_build_object('role', t.role, 'report_id', t.report_id, 'photo_id', t.photo_id)
         FROM UNNEST($1::uuid[], $3::uuid[], $4::text[], $5::text[], $6::uuid[], $7::text[], $8::text[], $9::text[])
             AS t(id, token_id, person_id, role, incident_id, report_id, door, photo_id)",
    )
    .bind(reads.iter().map(|_| Uuid::now_v7()).collect::<Vec<_>>())
    .bind(at)
    .bind(reads.iter().map(|r| r.token_id).collect::<Vec<_>>())
    .bind(reads.iter().map(|r| r.person_id.as_deref()).collect::<Vec<_>>())
    .bind(reads.iter().map(|r| r.role.as_str()).collect::<Vec<_>>())
    .bind(reads.iter().map(|r| r.incident_id).collect::<Vec<_>>())
    .bind(reads.iter().map(|r| r.report_id.as_str()).collect::<Vec<_>>())
    .bind(reads.iter().map(|r| r.door.as_str()).collect::<Vec<_>>())
    .bind(reads.iter().map(|r| r.photo_id.as_str()).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// A row of the access log: a read, when it was recorded, and the row's id.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AccessRow {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    #[sqlx(flatten)]
    pub read: Access,
}

/// Which part of the access log to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct AccessFilter {
    /// Only reads of incidents whose grid code starts with this org code.
    pub area_code: Option<String>,
    pub incident_id: Option<Uuid>,
    /// Rows strictly older than this `(at, id)` (the previous page's last row).
    pub before: Option<(DateTime<Utc>, Uuid)>,
    pub limit: u32,
}

/// The access log, newest first.
pub async fn list_access(pool: &PgPool, filter: &AccessFilter) -> Result<Vec<AccessRow>> {
    Ok(sqlx::query_as(
        "SELECT a.id, a.at, a.token_id, a.person_id, a.role, a.incident_id, a.report_id, a.door,
                a.photo_id
         FROM contact_access a
         WHERE ($1::text IS NULL OR EXISTS (SELECT 1 FROM incidents i
                                            WHERE i.id = a.incident_id AND starts_with(i.grid_code, $1)))
           AND ($2::uuid IS NULL OR a.incident_id = $2)
           AND ($3::timestamptz IS NULL OR (a.at, a.id) < ($3, $4))
         ORDER BY a.at DESC, a.id DESC
         LIMIT $5",
    )
    .bind(filter.area_code.as_deref())
    .bind(filter.incident_id)
    .bind(filter.before.map(|b| b.0))
    .bind(filter.before.map(|b| b.1))
    .bind(i64::from(filter.limit))
    .fetch_all(pool)
    .await?)
}

/// Contacts not yet sealed under the keyring's first key.
pub async fn count_to_rekey(pool: &PgPool, keyring: &Keyring) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM report_contacts WHERE key_id <> $1")
            .bind(keyring.sealing_key_id())
            .fetch_one(pool)
            .await?,
    )
}

/// Re-seals up to `batch` contacts sealed under older keys with the keyring's first key, in one
/// transaction; returns how many. Rows another rekey holds are skipped, so two may run at once.
/// A row sealed under a key the keyring lacks fails the whole batch (nothing is changed).
pub async fn rekey(pool: &PgPool, keyring: &Keyring, batch: u32) -> Result<usize> {
    let mut tx = pool.begin().await?;
    let rows: Vec<StoredContact> = sqlx::query_as(
        "SELECT report_id, incident_id, key_id, nonce, ciphertext, masked FROM report_contacts
         WHERE key_id <> $1 ORDER BY report_id LIMIT $2 FOR UPDATE SKIP LOCKED",
    )
    .bind(keyring.sealing_key_id())
    .bind(i64::from(batch))
    .fetch_all(&mut *tx)
    .await?;
    let mut sealed = Vec::with_capacity(rows.len());
    for row in &rows {
        sealed.push(keyring.seal(&row.report_id, &row.open(keyring)?));
    }
    sqlx::query(
        "UPDATE report_contacts c SET key_id = t.key_id, nonce = t.nonce, ciphertext = t.ciphertext
         FROM UNNEST($1::text[], $2::text[], $3::bytea[], $4::bytea[]) AS t(report_id, key_id, nonce, ciphertext)
         WHERE c.report_id = t.report_id",
    )
    .bind(rows.iter().map(|r| r.report_id.as_str()).collect::<Vec<_>>())
    .bind(sealed.iter().map(|s| s.key_id.as_str()).collect::<Vec<_>>())
    .bind(sealed.iter().map(|s| s.nonce.as_slice()).collect::<Vec<_>>())
    .bind(sealed.iter().map(|s| s.ciphertext.as_slice()).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(lines: &[String]) -> Keyring {
        Keyring::parse(&lines.join("\n")).unwrap()
    }

    #[test]
    fn a_sealed_contact_opens_under_its_key_for_its_report_only() {
        let old = Keyring::generate_line("k1");
        let keyring = ring(std::slice::from_ref(&old));
        let sealed = keyring.seal("r-1", "13812348000");
        assert_eq!(sealed.key_id, "k1");
        assert_eq!(sealed.masked, "138****8000");
        assert_eq!(sealed.nonce.len(), NONCE_BYTES);
        assert!(!sealed.ciphertext.windows(11).any(|w| w == b"13812348000"));
        let open = |k: &Keyring, report: &str| {
            k.open(report, &sealed.key_id, &sealed.nonce, &sealed.ciphertext)
        };
        assert_eq!(open(&keyring, "r-1").unwrap(), "13812348000");
        assert!(matches!(open(&keyring, "r-2"), Err(Error::Corrupt(_))));
        // A new first key seals; the old one still opens what it sealed.
        let rotated = ring(&[Keyring::generate_line("k2"), old]);
        assert_eq!(rotated.sealing_key_id(), "k2");
        assert_eq!(open(&rotated, "r-1").unwrap(), "13812348000");
        assert_eq!(rotated.seal("r-1", "x").key_id, "k2");
        // Without the old key it cannot.
        let dropped = ring(&[Keyring::generate_line("k2")]);
        assert!(matches!(open(&dropped, "r-1"), Err(Error::Keyring(_))));
    }

    #[test]
    fn two_seals_of_one_contact_differ() {
        let keyring = ring(&[Keyring::generate_line("k1")]);
        let (a, b) = (
            keyring.seal("r", "13812348000"),
            keyring.seal("r", "13812348000"),
        );
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn keyring_files_are_checked() {
        let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let keyring =
            Keyring::parse(&format!("# rotated 2026-12\n\nnew {key}\n  old {key}  \n")).unwrap();
        assert_eq!(keyring.key_ids().collect::<Vec<_>>(), ["new", "old"]);
        assert!(!format!("{keyring:?}").contains(&key), "{keyring:?}");
        let short = base64::engine::general_purpose::STANDARD.encode([7u8; 16]);
        for bad in [
            String::new(),
            "# only a comment".into(),
            "k1".into(),
            format!("k1 {key} extra"),
            format!("k1 {short}"),
            "k1 not-base64!".into(),
            format!("k/1 {key}"),
            format!("k1 {key}\nk1 {key}"),
        ] {
            assert!(
                matches!(Keyring::parse(&bad), Err(Error::Keyring(_))),
                "{bad:?} accepted"
            );
        }
    }
}
