//! A contact keyring for a test's dispatch and query service (`whistle_store::contacts`).

use std::path::{Path, PathBuf};

use whistle_store::contacts::Keyring;

use crate::Error;

/// The key id of the keyring [`write_contact_keyring`] writes.
pub const TEST_KEY_ID: &str = "test-1";

/// Writes `dir/contact-keys` holding one fresh random key ([`TEST_KEY_ID`]), readable by its
/// owner only, and returns its path.
pub fn write_contact_keyring(dir: &Path) -> Result<PathBuf, Error> {
    let path = dir.join("contact-keys");
    write_keyring(&path, &[Keyring::generate_line(TEST_KEY_ID)])?;
    Ok(path)
}

/// Writes a keyring file of `lines` (`key_id base64-key`, the first seals), as an operator
/// rotating keys would.
pub fn write_keyring(path: &Path, lines: &[String]) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| std::io::Write::write_all(&mut file, text.as_bytes()))
        .map_err(Error::io(format!("writing {}", path.display())))
}
