//! A `LISTEN` that survives its connection. Each holds a connection of its pool for as long as it
//! runs, so a service keeps few: dispatch one for all its channels (its hub: policy approvals, org
//! and people changes, photo erasures on request), the query service one for token revocations
//! and one for org imports.
//!
//! A notification sent while the listening connection is down is lost, so a follower treats
//! [`Notice::Connected`] (the first connection and every reconnection) as "anything may have
//! changed" and reads again.

use std::time::Duration;

use sqlx::{postgres::PgListener, PgPool};

/// What [`Listener::next`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Listening (again): notifications sent before may have been missed.
    Connected,
    /// A notification on one of the channels, with its payload.
    Notified { channel: String, payload: String },
}

/// A `LISTEN` on some channels that reconnects by itself.
pub struct Listener {
    pool: PgPool,
    channels: Vec<&'static str>,
    retry: Duration,
    /// For the log lines: what the notifications are.
    what: &'static str,
    listener: Option<PgListener>,
}

impl Listener {
    /// Not connected until the first [`Listener::next`]; a failed connection is retried every
    /// `retry`, each failure logged as a warning naming `what` is followed.
    pub fn new(
        pool: PgPool,
        channels: &[&'static str],
        retry: Duration,
        what: &'static str,
    ) -> Listener {
        Listener {
            pool,
            channels: channels.to_vec(),
            retry,
            what,
            listener: None,
        }
    }

    /// The next notice, waiting as long as it takes (meant for a `select!` beside a shutdown
    /// and a poll).
    pub async fn next(&mut self) -> Notice {
        loop {
            match &mut self.listener {
                None => match self.connect().await {
                    Ok(listener) => {
                        self.listener = Some(listener);
                        return Notice::Connected;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, what = self.what, "listening failed; retrying");
                        tokio::time::sleep(self.retry).await;
                    }
                },
                // `try_recv`, not `recv`: `recv` reconnects silently, and the caller would never
                // learn that notifications were lost meanwhile.
                Some(listener) => match listener.try_recv().await {
                    Ok(Some(notification)) => {
                        return Notice::Notified {
                            channel: notification.channel().to_owned(),
                            payload: notification.payload().to_owned(),
                        }
                    }
                    Ok(None) => {
                        tracing::warn!(
                            what = self.what,
                            "the listening connection was lost; listening again"
                        );
                        return Notice::Connected;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, what = self.what, "the listening connection failed; reconnecting");
                        self.listener = None;
                    }
                },
            }
        }
    }

    async fn connect(&self) -> Result<PgListener, sqlx::Error> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen_all(self.channels.iter().copied()).await?;
        Ok(listener)
    }
}
