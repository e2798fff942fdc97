//! The outbox relay: publishes committed events to `WHISTLE_EVENTS` with `Nats-Msg-Id` = event
//! id, then deletes them from the outbox.
//!
//! A crash between publish and delete republishes the same ids, which JetStream drops inside the
//! stream's duplicate window; so every event is in the stream once.

use std::{sync::Arc, time::Duration};

use async_nats::{header::NATS_MESSAGE_ID, jetstream, HeaderMap};
use futures::future::try_join_all;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use whistle_store::outbox;

use crate::Shared;

const BATCH: i64 = 1000;

pub(crate) struct Relay {
    pub shared: Arc<Shared>,
    /// Its own connection: publishing on the connection that fetches reports slows intake.
    pub jetstream: jetstream::Context,
    pub db: whistle_store::Dedicated,
    pub wakeup: Arc<Notify>,
}

impl Relay {
    pub async fn run(mut self, shutdown: CancellationToken) {
        let poll = self.shared.options.relay_poll_interval;
        loop {
            let stopping = tokio::select! {
                _ = shutdown.cancelled() => true,
                _ = self.wakeup.notified() => false,
                _ = tokio::time::sleep(poll) => false,
            };
            // On shutdown, drain once more so events committed by the last batch go out now.
            if let Err(e) = self.drain().await {
                warn!(error = %whistle_wire::chain(&e), "outbox relay round failed; retrying");
                if !stopping {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            if stopping {
                break;
            }
        }
        info!("outbox relay stopped");
    }

    /// Publishes until the outbox is empty (or another replica holds the relay lock).
    async fn drain(&mut self) -> Result<(), crate::Error> {
        loop {
            let conn = self.db.get().await?;
            let result = round(&self.jetstream, conn).await;
            let published = self.db.check(result)?;
            self.db.wrote(published as u64);
            if published == 0 {
                return Ok(());
            }
            self.shared.metrics.record_published(published);
            debug!(published, "events relayed");
        }
    }
}

/// Claims the oldest pending events, publishes them, and once JetStream has confirmed every one
/// commits the claim. Returns how many were published: none when the outbox is empty or another
/// replica is relaying.
async fn round(
    jetstream: &jetstream::Context,
    conn: &mut sqlx::PgConnection,
) -> Result<usize, crate::Error> {
    let claim = outbox::claim(conn, BATCH).await?;
    if claim.events.is_empty() {
        return Ok(0);
    }
    let mut acks = Vec::with_capacity(claim.events.len());
    for event in &claim.events {
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, event.event_id.to_string().as_str());
        let ack = jetstream
            .publish_with_headers(event.subject.clone(), headers, event.payload.clone().into())
            .await
            .map_err(|source| crate::Error::Publish {
                event_id: event.event_id,
                source,
            })?;
        acks.push(ack);
    }
    try_join_all(acks.into_iter().map(std::future::IntoFuture::into_future))
        .await
        .map_err(crate::Error::PublishAck)?;
    let published = claim.events.len();
    claim.complete().await?;
    Ok(published)
}
