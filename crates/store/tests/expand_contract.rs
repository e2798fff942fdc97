//! Every migration in `migrations/` follows the expand/contract rule (docs/operations.md,
//! "Upgrades"; the check is `whistle_store::expand`): it only adds, or it carries a
//! `-- contract: safe after <release>: <reason>` line. The migrations from before the rule was
//! checked cannot gain that line (sqlx refuses a changed migration on every database that applied
//! it), so their contract steps are recorded below, each with why it was acceptable.

use std::path::Path;

use whistle_store::expand;

/// The last migration written before the check existed: later ones carry a marker instead.
const BEFORE_THE_RULE: i64 = 20261207000025;

/// Contract steps of migrations before the rule: (version, how many steps, why acceptable).
const EXCEPTIONS: &[(i64, usize, &str)] = &[
    (
        20261130000002,
        4,
        "people's role and area CHECKs dropped and re-added wider (handlers admitted): every row the older version writes passes them",
    ),
    (
        20261130000005,
        2,
        "api_tokens' role CHECK dropped and re-added wider (grid_worker admitted): every token the older version writes passes it",
    ),
    (
        20261206000011,
        1,
        "tasks.grid_code SET NOT NULL: an older replica's task insert lacks it and fails, so across it every dispatch replica is replaced at once (docs/operations.md)",
    ),
];

fn migrations() -> Vec<(i64, String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut out: Vec<(i64, String, String)> = std::fs::read_dir(&dir)
        .expect("the migrations directory")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "sql"))
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let version = name
                .split('_')
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name}: not VERSION_description.sql"));
            let sql = std::fs::read_to_string(&path).expect("readable");
            (version, name, sql)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_migration_only_expands_or_says_after_which_release_it_contracts() {
    let migrations = migrations();
    let checked = expand::check(
        &migrations
            .iter()
            .map(|(v, _, sql)| (*v, sql.as_str()))
            .collect::<Vec<_>>(),
    );
    let mut failures = Vec::new();
    for ((version, name, _), checked) in migrations.iter().zip(&checked) {
        let exception = EXCEPTIONS.iter().find(|(v, ..)| v == version);
        match (&checked.marker, exception, checked.findings.len()) {
            (Some(Err(bad)), ..) => failures.push(format!("{name}: {bad}")),
            (Some(Ok(_)), _, 0) => failures.push(format!(
                "{name}: a contract marker on a migration with no contract step"
            )),
            (Some(Ok(_)), ..) => {}
            (None, Some((_, steps, _)), n) if *steps == n => {}
            (None, Some((_, steps, _)), n) => failures.push(format!(
                "{name}: {n} contract steps where its recorded exception says {steps}: {:#?}",
                checked.findings
            )),
            (None, None, 0) => {}
            (None, None, _) => failures.push(format!(
                "{name} contracts what the previous version may still use while it serves; split it \
                 (expand now, contract a release later) or add `-- contract: safe after <release>: <reason>` \
                 (docs/operations.md, \"Upgrades\"): {:#?}",
                checked.findings
            )),
        }
    }
    for (version, _, reason) in EXCEPTIONS {
        assert!(
            *version <= BEFORE_THE_RULE,
            "migration {version}: exceptions are for migrations before the rule; a new one carries a marker"
        );
        assert!(
            !reason.is_empty(),
            "migration {version}: an exception says why"
        );
        assert!(
            migrations.iter().any(|(v, ..)| v == version),
            "exception for migration {version}, which does not exist"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
