//! `whistle leaders`: 领导结对联系 — which leaders are paired with which streets and communities
//! (docs/leaders.md). Admin commands: they write the database directly, as its owner, each change
//! checked against the org tree and on the audit log. `whistle seed` pairs the Ordos leaders.

use anyhow::Context as _;
use whistle_domain::{leaders::Pairing, AreaCode, PersonId};

use crate::{connect_db, Connection};

#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// Pair a leader (role leader) with a street (a city leader) or a street or community of
    /// their district (a banner/district leader).
    Pair {
        /// The leader's person id, e.g. ld-150602-01.
        leader: PersonId,
        /// The street or community, e.g. 150602001001.
        area: AreaCode,
    },
    /// End a pairing.
    Unpair { leader: PersonId, area: AreaCode },
    /// The pairings, or one leader's.
    List {
        #[arg(long)]
        leader: Option<PersonId>,
    },
}

pub async fn run(conn: &Connection, args: Args) -> anyhow::Result<()> {
    let pool = connect_db(conn).await?;
    let actor = conn.audit_actor();
    match args {
        Args::Pair { leader, area } => {
            let pairing = Pairing { leader, area };
            let added = whistle_store::leaders::pair(&pool, std::slice::from_ref(&pairing), &actor)
                .await
                .context("pairing")?;
            if added == 0 {
                println!("{} is already paired with {}", pairing.leader, pairing.area);
            } else {
                println!("paired {} with {}", pairing.leader, pairing.area);
            }
        }
        Args::Unpair { leader, area } => {
            let pairing = Pairing { leader, area };
            if whistle_store::leaders::unpair(&pool, &pairing, &actor).await? {
                println!("unpaired {} from {}", pairing.leader, pairing.area);
            } else {
                anyhow::bail!("{} is not paired with {}", pairing.leader, pairing.area);
            }
        }
        Args::List { leader } => {
            for p in whistle_store::leaders::list(&pool, leader.as_ref()).await? {
                println!("{}\t{}", p.leader, p.area);
            }
        }
    }
    Ok(())
}

/// Writes the Ordos dataset's leaders and their pairings (part of `whistle seed`; idempotent).
pub async fn seed(conn: &Connection) -> anyhow::Result<()> {
    let pool = connect_db(conn).await?;
    let leaders = whistle_domain::ordos::leaders(&whistle_domain::ordos::dataset());
    let added = whistle_store::leaders::seed(&pool, &leaders, &conn.audit_actor())
        .await
        .context("seeding the paired leaders")?;
    println!(
        "{} leaders, {} pairings ({added} new)",
        leaders.people.len(),
        leaders.pairings.len()
    );
    Ok(())
}
