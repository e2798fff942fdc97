//! `whistle policy propose|diff|approve|reject|list|show|status`: the dispatch policy as
//! versions (docs/policy.md, "Changing the policy"). Admin commands on the database
//! (`DATABASE_URL` as the owner); the actor is the global `--actor`, and every step is on the
//! audit log. An approval reaches every dispatch replica without a restart.

use anyhow::Context as _;
use chrono::{TimeDelta, Utc};
use whistle_domain::policy::{Change, Source};
use whistle_store::policies::{self, Decision, Refused, Version};

use crate::{connect_db, Connection};

#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// Validate a policy file and store it as a proposed version (refused with the validator's
    /// message otherwise); prints how it differs from the running version.
    Propose {
        /// The policy TOML file (its `base`, if any, is read next to it and stored with it).
        #[arg(long)]
        file: std::path::PathBuf,
        /// Why the policy changes (required; on the audit log).
        #[arg(long)]
        note: String,
    },
    /// How a version (or, with --file, a file not yet proposed) differs from the running
    /// version, or from --against.
    Diff {
        /// A stored version.
        #[arg(long, conflicts_with = "file", required_unless_present = "file")]
        version: Option<String>,
        /// A policy file.
        #[arg(long)]
        file: Option<std::path::PathBuf>,
        /// The version to compare with; default the running one.
        #[arg(long)]
        against: Option<String>,
    },
    /// Approve a proposed version; it must be someone other than its proposer (--actor). Every
    /// dispatch replica switches to it within seconds.
    Approve {
        #[arg(long)]
        version: String,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Reject a proposed version (its proposer may withdraw it this way).
    Reject {
        #[arg(long)]
        version: String,
        /// Why (required).
        #[arg(long)]
        note: String,
    },
    /// Every version: state, who proposed and decided it, when.
    List,
    /// One version's record and its policy text as stored.
    Show {
        #[arg(long)]
        version: String,
    },
    /// The running version and which version each dispatch replica applies.
    Status,
}

pub async fn run(conn: &Connection, args: Args) -> anyhow::Result<()> {
    let pool = connect_db(conn).await?;
    let actor = conn.audit_actor();
    let now = Utc::now();
    let refused = |e: Refused, doing: &str| match e {
        Refused::Invalid(message) => anyhow::anyhow!("{message}"),
        Refused::Store(e) => anyhow::Error::new(e).context(doing.to_owned()),
    };
    match args {
        Args::Propose { file, note } => {
            let source = read(&file)?;
            let proposed = policies::propose(&pool, &source, &note, &actor, now)
                .await
                .map_err(|e| refused(e, "storing the proposal"))
                .with_context(|| format!("{} not proposed", file.display()))?;
            println!(
                "proposed {} by {}",
                proposed.version.version, proposed.version.proposed_by
            );
            match &proposed.against {
                Some(running) => {
                    println!("changes against the running {running}:");
                    print_changes(&proposed.changes);
                }
                None => println!("no version runs yet"),
            }
            println!(
                "another operator approves it: whistle --actor NAME policy approve --version {}",
                proposed.version.version
            );
        }
        Args::Diff {
            version,
            file,
            against,
        } => {
            let new = match (version, file) {
                (Some(version), _) => stored(&pool, &version).await?.source,
                (None, Some(file)) => read(&file)?,
                (None, None) => unreachable!("clap requires one"),
            };
            let old = match against {
                Some(version) => stored(&pool, &version).await?,
                None => running(&pool)
                    .await?
                    .context("no version runs yet: nothing to compare with")?,
            };
            println!("against {}:", old.version);
            let changes =
                whistle_domain::policy::diff(&old.source, &new).context("reading the policies")?;
            print_changes(&changes);
        }
        Args::Approve { version, note } => {
            let decided = policies::decide(&pool, &version, Decision::Approve, &note, &actor, now)
                .await
                .map_err(|e| refused(e, "approving"))
                .with_context(|| format!("{version} not approved"))?;
            println!(
                "approved {version} by {} (replaces {}); dispatch replicas switch to it now",
                actor.name,
                decided.replaced.as_deref().unwrap_or("nothing")
            );
        }
        Args::Reject { version, note } => {
            if note.trim().is_empty() {
                anyhow::bail!("{version} not rejected: say why (--note)");
            }
            policies::decide(&pool, &version, Decision::Reject, &note, &actor, now)
                .await
                .map_err(|e| refused(e, "rejecting"))
                .with_context(|| format!("{version} not rejected"))?;
            println!("rejected {version} by {}", actor.name);
        }
        Args::List => {
            for version in policies::list(&pool).await.context("listing versions")? {
                println!("{}", describe(&version));
            }
        }
        Args::Show { version } => {
            let version = stored(&pool, &version).await?;
            println!("{}", describe(&version));
            println!("note: {}", version.note);
            if let Some(note) = version.decision_note.as_deref().filter(|n| !n.is_empty()) {
                println!("decision: {note}");
            }
            println!("sha256: {}", version.sha256);
            println!("---");
            print!("{}", version.source.text);
            if let Some((name, text)) = &version.source.base {
                println!("--- base {name}");
                print!("{text}");
            }
        }
        Args::Status => {
            let running = running(&pool).await?;
            match &running {
                Some(version) => println!("running {}", describe(version)),
                None => println!("no version runs yet (dispatch stores its --policy at start)"),
            }
            // Replicas report at every poll (2 s by default); a minute unseen is a stopped one.
            let replicas = policies::replicas(&pool, now - TimeDelta::minutes(1))
                .await
                .context("listing replicas")?;
            for replica in &replicas {
                let mark = match &running {
                    Some(version) if version.version != replica.version => "  (not yet switched)",
                    _ => "",
                };
                println!(
                    "replica {}  {}  since {}{mark}",
                    replica.holder,
                    replica.version,
                    replica.loaded_at.format("%F %T UTC")
                );
            }
            if replicas.is_empty() {
                println!("no dispatch replica seen in the last minute");
            }
        }
    }
    Ok(())
}

fn read(file: &std::path::Path) -> anyhow::Result<Source> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let dir = file
        .parent()
        .map(std::path::PathBuf::from)
        .unwrap_or_default();
    Source::read(&text, |base| std::fs::read_to_string(dir.join(base)).ok())
        .with_context(|| format!("{} not proposed: the policy is invalid", file.display()))
}

async fn stored(pool: &sqlx::PgPool, version: &str) -> anyhow::Result<Version> {
    policies::get(pool, version)
        .await
        .context("reading the version")?
        .with_context(|| format!("no policy version {version:?} (whistle policy list)"))
}

async fn running(pool: &sqlx::PgPool) -> anyhow::Result<Option<Version>> {
    let mut conn = pool.acquire().await?;
    policies::active(&mut conn)
        .await
        .context("reading the running version")
}

fn print_changes(changes: &[Change]) {
    if changes.is_empty() {
        println!("  (no difference)");
    }
    for change in changes {
        println!("  {change}");
    }
}

fn describe(version: &Version) -> String {
    let decided = match (&version.decided_by, version.decided_at) {
        (Some(by), Some(at)) => format!(
            ", {} by {by} at {}",
            version.state.as_str(),
            at.format("%F %T UTC")
        ),
        _ if version.bootstrap => ", the first version (dispatch's --policy)".to_owned(),
        _ => String::new(),
    };
    let superseded = version
        .superseded_at
        .map(|at| format!(", superseded at {}", at.format("%F %T UTC")))
        .unwrap_or_default();
    format!(
        "{:<24} {:<10} proposed by {} at {}{decided}{superseded}",
        version.version,
        version.state.as_str(),
        version.proposed_by,
        version.proposed_at.format("%F %T UTC"),
    )
}
