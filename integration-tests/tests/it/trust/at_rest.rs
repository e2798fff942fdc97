//! JetStream's encryption at rest: a report's contact phone never appears in plaintext in the
//! server's store files.

use walk::files;

use crate::harness::*;

const GRID: &str = "150602001001001";
const PHONE: &str = "13987650123";

mod walk {
    use std::path::{Path, PathBuf};

    /// Every file below `dir`.
    pub fn files(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut pending = vec![dir.to_owned()];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    pending.push(path);
                } else {
                    out.push(path);
                }
            }
        }
        out
    }
}

#[tokio::test]
async fn no_contact_phone_is_stored_in_plaintext_by_jetstream() {
    let stack = Stack::start().await;
    let mut sent = report("at-rest-1", GRID);
    sent.contact_phone = PHONE.into();
    stack.file(&sent).await;
    stack.intake_drained().await;

    let store = files(stack.server().store_dir());
    let sizes: u64 = store
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    assert!(sizes > 0, "the store holds the report");
    for file in store {
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(
            !bytes.windows(PHONE.len()).any(|w| w == PHONE.as_bytes()),
            "{} holds the phone number in plaintext",
            file.display()
        );
    }
}
