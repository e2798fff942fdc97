//! The command load: comments on random incidents by their district's operator, each with its
//! own command id, retried with that id until dispatch answers (as a client that must not lose
//! a command does), so the checker can count each one's effect on the timeline.

use std::time::{Duration, Instant};

use rand::{rngs::StdRng, Rng, SeedableRng};
use sqlx::PgPool;
use whistle_proto::v1::{self, command::Body, command_reply::Outcome, CommandErrorCode};

use super::Config;
use crate::checker::{self, CommandAnswer, CommandSent};

/// Sends commands at `config.command_rate` from `start` until the load ends; each is retried
/// until answered or 60 s after the load ends.
pub(super) async fn send_commands(
    client: async_nats::Client,
    pool: PgPool,
    config: Config,
    start: Instant,
) -> anyhow::Result<Vec<CommandSent>> {
    let mut sent = Vec::new();
    if config.command_rate <= 0.0 {
        return Ok(sent);
    }
    let commands = whistle_wire::CommandClient::new(client).with_timeout(Duration::from_secs(5));
    let give_up = start + config.duration + Duration::from_secs(60);
    let mut rng = StdRng::seed_from_u64(config.seed ^ 0xc0ff_ee00);
    let mut tasks = Vec::new();
    let total = (config.duration.as_secs_f64() * config.command_rate) as u64;
    for n in 0..total {
        tokio::time::sleep_until(
            (start + Duration::from_secs_f64(n as f64 / config.command_rate)).into(),
        )
        .await;
        // A random incident; none yet, or PostgreSQL down (a fault): this tick sends nothing.
        let offset: i64 = rng.random_range(0..1_000_000);
        let Ok(Some((incident, district))) = sqlx::query_as::<_, (String, String)>(
            "SELECT id::text, district_code FROM incidents
             ORDER BY id OFFSET $1 % GREATEST((SELECT count(*) FROM incidents), 1) LIMIT 1",
        )
        .bind(offset)
        .fetch_optional(&pool)
        .await
        else {
            continue;
        };
        let command = v1::Command {
            command_id: uuid::Uuid::now_v7().to_string(),
            actor_id: format!("op-{district}"),
            incident_id: incident,
            expected_version: 0,
            body: None,
        };
        let command = v1::Command {
            body: Some(Body::Comment(v1::Comment {
                text: checker::comment_text(&command.command_id),
            })),
            ..command
        };
        let commands = commands.clone();
        tasks.push(tokio::spawn(async move {
            let answer = loop {
                if let Ok(reply) = commands.send(&command).await {
                    match reply.outcome {
                        Some(Outcome::Ok(_)) => break Some(CommandAnswer::Ok),
                        Some(Outcome::Error(e))
                            if e.code != CommandErrorCode::Unavailable as i32
                                && e.code != CommandErrorCode::RateLimited as i32 =>
                        {
                            break Some(CommandAnswer::Refused(format!(
                                "{:?}: {}",
                                CommandErrorCode::try_from(e.code)
                                    .unwrap_or(CommandErrorCode::Unspecified),
                                e.message
                            )))
                        }
                        // Retryable (or no outcome at all): again, same command id.
                        _ => {}
                    }
                }
                if Instant::now() > give_up {
                    break None;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            };
            CommandSent {
                command_id: command.command_id,
                answer,
            }
        }));
    }
    for task in tasks {
        sent.push(task.await?);
    }
    Ok(sent)
}
