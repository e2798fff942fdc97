//! `whistle db roles`: the database's separate roles (docs/security.md, "Database roles") — the
//! owner that migrates, dispatch that writes rows, query that reads — provisioned by the
//! cluster's administrator (`DATABASE_URL`), with their passwords kept in a secrets directory as
//! one pgpass file per role, which the programs read through `PGPASSFILE`.

use std::{
    os::unix::fs::DirBuilderExt as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use whistle_store::roles::{self, Passwords, Roles};

use crate::{admin::write_private, connect_db, Connection};

#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// Create or update the owner, dispatch and query roles (as a superuser, DATABASE_URL) and
    /// print the URL each connects with, without its password: `owner|dispatch|query URL
    /// PGPASSFILE`. Passwords stay those of the secrets directory unless --rotate.
    Roles(RolesArgs),
}

#[derive(Debug, clap::Args)]
pub struct RolesArgs {
    /// Directory (mode 0700) of the roles' passwords: `<role>.pgpass`, mode 0600, one per role.
    #[arg(long)]
    pub secrets: PathBuf,
    /// New random passwords for the three roles. Open sessions keep working; dispatch and
    /// query must be restarted to connect with the new ones.
    #[arg(long)]
    pub rotate: bool,
}

pub async fn run(conn: &Connection, args: Args) -> anyhow::Result<()> {
    match args {
        Args::Roles(args) => {
            for (kind, url, file) in provision(conn, &args).await? {
                println!("{kind} {url} {}", file.display());
            }
            Ok(())
        }
    }
}

/// The roles `--db-roles` names.
pub fn roles(conn: &Connection) -> anyhow::Result<Roles> {
    Roles::with_prefix(&conn.db_roles).context("--db-roles")
}

/// Provisions the roles; returns `(kind, URL without password, pgpass file)` of each.
async fn provision(
    conn: &Connection,
    args: &RolesArgs,
) -> anyhow::Result<Vec<(&'static str, String, PathBuf)>> {
    let roles = roles(conn)?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&args.secrets)
        .with_context(|| format!("creating {}", args.secrets.display()))?;
    let file = |role: &str| args.secrets.join(format!("{role}.pgpass"));
    let password = |role: &str| -> anyhow::Result<String> {
        match read_password(&file(role))? {
            Some(password) if !args.rotate => Ok(password),
            _ => Ok(roles::generate_password()),
        }
    };
    let passwords = Passwords {
        owner: password(&roles.owner)?,
        dispatch: password(&roles.dispatch)?,
        query: password(&roles.query)?,
    };
    // Written before the server is told: if provisioning fails, the next run sets these.
    for (role, password) in roles.names().into_iter().zip(passwords.all()) {
        write_private(&file(role), &pgpass_line(role, password))?;
    }
    let admin = connect_db(conn).await?;
    roles::provision(&admin, &roles, &passwords)
        .await
        .context("provisioning the database roles")?;
    // On the audit log once it exists (roles are provisioned before the first migration).
    // Never a password: only which roles, and whether theirs were replaced.
    if whistle_store::audit::exists(&admin).await? {
        let entry = whistle_store::audit::Entry {
            action: whistle_store::audit::action::DB_ROLES,
            target: roles.owner.trim_end_matches("_owner").to_owned(),
            area_code: String::new(),
            before: None,
            after: Some(serde_json::json!({
                "roles": roles.names(),
                "passwords_rotated": args.rotate,
            })),
        };
        let mut db = admin.acquire().await?;
        whistle_store::audit::record(&mut db, &conn.audit_actor(), chrono::Utc::now(), &[entry])
            .await
            .context("recording the provisioning on the audit log")?;
    }
    admin.close().await;
    Ok(["owner", "dispatch", "query"]
        .into_iter()
        .zip(roles.names())
        .map(|(kind, role)| {
            let url = roles::login_url(&conn.database_url, role, None);
            (kind, url, file(role))
        })
        .collect())
}

/// A pgpass line valid for any host, port and database: the file names one role.
fn pgpass_line(role: &str, password: &str) -> String {
    format!("*:*:*:{role}:{password}\n")
}

/// The password of a pgpass file this command wrote, if there is one.
fn read_password(path: &Path) -> anyhow::Result<Option<String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    Ok(text
        .lines()
        .find_map(|line| line.rsplit_once(':'))
        .map(|(_, password)| password.to_owned())
        .filter(|password| !password.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pgpass_file_is_read_back() {
        let dir = std::env::temp_dir().join(format!("whistle-cli-db-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("whistle_query.pgpass");
        assert_eq!(read_password(&path).unwrap(), None);
        write_private(&path, &pgpass_line("whistle_query", "abc123")).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "*:*:*:whistle_query:abc123\n"
        );
        assert_eq!(read_password(&path).unwrap().as_deref(), Some("abc123"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
