//! Residents' tracking codes (查询码): the key to the public page of one report's incident.
//!
//! A code is 12 characters of Crockford's base32 (`0-9`, `A-Z` without `I L O U`), 60 random bits,
//! shown in groups of four (`7K3M-Q9XD-2HPA`): short enough to read out over the phone or send as
//! a text, and typed back forgivingly ([`normalize`]: lower case, spaces, dashes, `O` for `0`,
//! `I`/`L` for `1`). Intake makes one for every report it records (a new incident or an attached
//! duplicate) from the thread-local CSPRNG, in memory, and writes it in the batch's statement.
//!
//! At rest a code is two things ([`SealedCode`]): its HMAC-SHA256 under a key derived from the
//! contact keyring's first key (`code_mac`, unique, how a lookup finds it) and the code sealed
//! under that key (for the grid worker who reported to read again). A dump of the database without
//! the keyring therefore gives neither codes nor a way to test guesses offline.

use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use crate::{contacts::Keyring, Result};

/// Characters of a code: Crockford's base32.
pub const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Characters of a code, without its dashes.
pub const CODE_CHARS: usize = 12;
/// Random bits of a code: 5 a character.
pub const CODE_BITS: u32 = 60;
/// The associated data a code is sealed with, before the report id: a sealed contact cannot be
/// passed off as a code, nor a code moved to another report.
const AAD_PREFIX: &[u8] = b"tracking code of ";
const MAC_KEY_LABEL: &[u8] = b"whistle tracking code mac v1";

/// The HMAC key a keyring key derives for codes.
pub(crate) fn derive_mac_key(key: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(MAC_KEY_LABEL);
    mac.finalize().into_bytes().into()
}

fn mac(key: &[u8; 32], code: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(code.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// A new code, canonical (12 characters, no dashes).
pub fn generate() -> String {
    let bits: u64 = rand::random();
    (0..CODE_CHARS)
        .map(|i| ALPHABET[((bits >> (5 * i)) & 31) as usize] as char)
        .collect()
}

/// A code as people read it: three groups of four joined by hyphens, e.g. `8HB3-20JR-6C9A`.
pub fn display(code: &str) -> String {
    code.as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("-")
}

/// The canonical form of what someone typed, or `None` if it cannot be a code.
pub fn normalize(typed: &str) -> Option<String> {
    let mut code = String::with_capacity(CODE_CHARS);
    for c in typed.chars() {
        let c = match c.to_ascii_uppercase() {
            ' ' | '-' => continue,
            'O' => '0',
            'I' | 'L' => '1',
            c if c.is_ascii() && ALPHABET.contains(&(c as u8)) => c,
            _ => return None,
        };
        if code.len() == CODE_CHARS {
            return None;
        }
        code.push(c);
    }
    (code.len() == CODE_CHARS).then_some(code)
}

/// A code as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedCode {
    pub key_id: String,
    pub code_mac: Vec<u8>,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

fn aad(report_id: &str) -> Vec<u8> {
    [AAD_PREFIX, report_id.as_bytes()].concat()
}

/// Seals the canonical `code` of `report_id` under the keyring's first key.
pub fn seal(keyring: &Keyring, report_id: &str, code: &str) -> SealedCode {
    let (key_id, mac_key) = keyring.sealing_mac();
    let code_mac = mac(mac_key, code);
    let key_id = key_id.to_owned();
    let (sealed_key, nonce, ciphertext) = keyring.seal_bytes(&aad(report_id), code.as_bytes());
    debug_assert_eq!(sealed_key, key_id);
    SealedCode {
        key_id,
        code_mac,
        nonce,
        ciphertext,
    }
}

/// The code of `report_id` as its grid worker sees it (grouped as [`display`] does), `None` if the keyring
/// does not open it.
pub fn open(
    keyring: &Keyring,
    report_id: &str,
    key_id: &str,
    nonce: &[u8],
    ciphertext: &[u8],
) -> Option<String> {
    let plain = keyring.open_bytes(&aad(report_id), key_id, nonce, ciphertext)?;
    String::from_utf8(plain).ok().map(|c| display(&c))
}

/// Codes not yet sealed under the keyring's first key.
pub async fn count_to_rekey(pool: &PgPool, keyring: &Keyring) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM tracking_codes WHERE key_id <> $1")
            .bind(keyring.sealing_key_id())
            .fetch_one(pool)
            .await?,
    )
}

/// Re-seals up to `batch` codes stored under older keys — their MAC and sealed copy — under the
/// keyring's first key, in one transaction, as `contacts::rekey` does contacts; returns how
/// many. The codes themselves do not change: residents keep the ones they were given. A code
/// sealed under a key the keyring lacks fails the whole batch (nothing is changed).
pub async fn rekey(pool: &PgPool, keyring: &Keyring, batch: u32) -> Result<usize> {
    let mut tx = pool.begin().await?;
    let rows: Vec<(String, String, Vec<u8>, Vec<u8>)> = sqlx::query_as(
        "SELECT report_id, key_id, nonce, ciphertext FROM tracking_codes
         WHERE key_id <> $1 ORDER BY report_id LIMIT $2 FOR UPDATE SKIP LOCKED",
    )
    .bind(keyring.sealing_key_id())
    .bind(i64::from(batch))
    .fetch_all(&mut *tx)
    .await?;
    let mut sealed = Vec::with_capacity(rows.len());
    for (report_id, key_id, nonce, ciphertext) in &rows {
        let code = keyring
            .open_bytes(&aad(report_id), key_id, nonce, ciphertext)
            .and_then(|plain| String::from_utf8(plain).ok())
            .ok_or_else(|| {
                crate::Error::Keyring(format!(
                    "the tracking code of report {report_id} is sealed under key {key_id}, which \
                     the keyring does not hold or which does not open it"
                ))
            })?;
        sealed.push(seal(keyring, report_id, &code));
    }
    sqlx::query(
        "UPDATE tracking_codes c
         SET key_id = t.key_id, code_mac = t.code_mac, nonce = t.nonce, ciphertext = t.ciphertext
         FROM UNNEST($1::text[], $2::text[], $3::bytea[], $4::bytea[], $5::bytea[])
             AS t(report_id, key_id, code_mac, nonce, ciphertext)
         WHERE c.report_id = t.report_id",
    )
    .bind(rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>())
    .bind(sealed.iter().map(|s| s.key_id.as_str()).collect::<Vec<_>>())
    .bind(
        sealed
            .iter()
            .map(|s| s.code_mac.as_slice())
            .collect::<Vec<_>>(),
    )
    .bind(
        sealed
            .iter()
            .map(|s| s.nonce.as_slice())
            .collect::<Vec<_>>(),
    )
    .bind(
        sealed
            .iter()
            .map(|s| s.ciphertext.as_slice())
            .collect::<Vec<_>>(),
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(rows.len())
}

/// What a code opens: its report and incident.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Found {
    pub report_id: String,
    pub incident_id: Uuid,
    pub created_at: DateTime<Utc>,
}

/// The report and incident of a code someone typed, if it names one whose incident did not
/// settle (close, close unverified, or merge as a duplicate) `expire_after` or longer before
/// `now`. The code is looked up by its MAC under every key of the keyring. A code that does not
/// parse, is unknown or expired is `None` alike.
pub async fn find<'e>(
    db: impl PgExecutor<'e>,
    keyring: &Keyring,
    typed: &str,
    expire_after: TimeDelta,
    now: DateTime<Utc>,
) -> Result<Option<Found>> {
    let Some(code) = normalize(typed) else {
        return Ok(None);
    };
    let macs: Vec<Vec<u8>> = keyring.macs().map(|key| mac(key, &code)).collect();
    Ok(sqlx::query_as::<_, Found>(
        "SELECT c.report_id, c.incident_id, c.created_at
         FROM tracking_codes c JOIN incidents i ON i.id = c.incident_id
         WHERE c.code_mac = ANY($1)
           AND NOT (i.status IN ('closed', 'closed_unverified', 'duplicate')
                    AND coalesce(i.closed_at, i.updated_at) + $2 <= $3)",
    )
    .bind(&macs)
    .bind(expire_after)
    .bind(now)
    .fetch_optional(db)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring() -> Keyring {
        Keyring::parse(&Keyring::generate_line("k1")).unwrap()
    }

    #[test]
    fn a_code_is_twelve_characters_of_the_alphabet_and_reads_back_however_it_is_typed() {
        let code = generate();
        assert_eq!(code.len(), CODE_CHARS);
        assert!(code.bytes().all(|b| ALPHABET.contains(&b)));
        let shown = display(&code);
        assert_eq!(shown.len(), 14);
        assert_eq!(normalize(&shown).as_deref(), Some(code.as_str()));
        assert_eq!(
            normalize(&format!(" {} ", shown.to_lowercase())).as_deref(),
            Some(code.as_str())
        );
        assert_eq!(normalize("0O1I-L234-5678").as_deref(), Some("001112345678"));
        for bad in [
            "",
            "ABCD-EFGH-JKM",
            "ABCD-EFGH-JKMNP",
            "ABCD-EFGH-JKMU",
            "ABCD-EFGH-JKM!",
        ] {
            assert_eq!(normalize(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn codes_differ() {
        let codes: std::collections::HashSet<String> = (0..1000).map(|_| generate()).collect();
        assert_eq!(codes.len(), 1000);
    }

    #[test]
    fn a_sealed_code_opens_only_for_its_report_and_its_mac_needs_the_key() {
        let keys = keyring();
        let code = generate();
        let sealed = seal(&keys, "r-1", &code);
        assert_eq!(
            open(
                &keys,
                "r-1",
                &sealed.key_id,
                &sealed.nonce,
                &sealed.ciphertext
            ),
            Some(display(&code))
        );
        assert_eq!(
            open(
                &keys,
                "r-2",
                &sealed.key_id,
                &sealed.nonce,
                &sealed.ciphertext
            ),
            None
        );
        // The same code under another keyring has another MAC.
        assert_ne!(seal(&keyring(), "r-1", &code).code_mac, sealed.code_mac);
        assert_eq!(seal(&keys, "r-9", &code).code_mac, sealed.code_mac);
    }
}
