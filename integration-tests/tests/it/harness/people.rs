//! A person's or device's NATS client, as a phone or the CLI with a bearer token connects: through
//! the auth callout, with its identity's private inbox, its connection's events kept so a test
//! can see the server's permissions violations.

use std::time::Duration;

use async_nats::{Event, ServerError};
use futures::StreamExt as _;
use sqlx::PgPool;
use tokio::sync::mpsc;
use whistle_auth::Identity;
use whistle_testkit::NatsServer;

/// A connection with a token, and what its connection reported.
pub struct Person {
    pub client: async_nats::Client,
    pub events: mpsc::UnboundedReceiver<Event>,
    /// The only inbox this identity may subscribe to.
    pub inbox_prefix: String,
}

impl Person {
    /// Connects with the bearer token `secret`; the inbox prefix is its identity's.
    pub async fn connect(
        server: &NatsServer,
        pool: &PgPool,
        secret: &str,
    ) -> Result<Person, async_nats::ConnectError> {
        let token = whistle_store::tokens::authenticate(pool, secret, chrono::Utc::now())
            .await
            .expect("the token store answers")
            .expect("a live token");
        let inbox_prefix = Identity::from_token(&token)
            .expect("a usable token")
            .inbox_prefix();
        Person::connect_with(server, secret, &inbox_prefix).await
    }

    /// Connects with any token (or none that works) and `inbox_prefix`.
    pub async fn connect_with(
        server: &NatsServer,
        secret: &str,
        inbox_prefix: &str,
    ) -> Result<Person, async_nats::ConnectError> {
        let credentials = whistle_wire::Credentials::Token {
            secret: secret.to_owned(),
            inbox_prefix: inbox_prefix.to_owned(),
        };
        Person::connect_credentials(server, &credentials).await
    }

    /// Connects with `credentials` (a service's nkey, for instance).
    pub async fn connect_credentials(
        server: &NatsServer,
        credentials: &whistle_wire::Credentials,
    ) -> Result<Person, async_nats::ConnectError> {
        let (sender, events) = mpsc::unbounded_channel();
        let inbox_prefix = credentials.inbox_prefix().unwrap_or_default();
        let client = whistle_wire::connect::options("whistle-it-person", credentials)
            .await
            .expect("token options")
            .event_callback(move |event| {
                let sender = sender.clone();
                async move {
                    let _ = sender.send(event);
                }
            })
            .connect(server.url())
            .await?;
        Ok(Person {
            client,
            events,
            inbox_prefix,
        })
    }

    /// Waits for the server's permissions violation naming `subject`.
    pub async fn expect_violation(&mut self, subject: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("no permissions violation for {subject}"))
                .expect("the connection's events ended");
            if is_violation(&event, Some(subject)) {
                return;
            }
        }
    }

    /// Asserts that no permissions violation arrived for anything sent so far: the server
    /// answers a ping only after the errors of earlier protocol lines.
    pub async fn expect_no_violation(&mut self) {
        self.client.flush().await.expect("flushing");
        while let Ok(event) = self.events.try_recv() {
            assert!(!is_violation(&event, None), "unexpected: {event:?}");
        }
    }
}

/// Whether `event` is the server's permissions violation (naming `subject`, if given).
pub fn is_violation(event: &Event, subject: Option<&str>) -> bool {
    match event {
        Event::ServerError(ServerError::Other(message)) => {
            message.to_lowercase().contains("permissions violation")
                && subject.is_none_or(|s| message.contains(s))
        }
        _ => false,
    }
}

/// Receives nothing on `subscriber` for a moment.
pub async fn expect_nothing(subscriber: &mut async_nats::Subscriber) {
    if let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_millis(300), subscriber.next()).await
    {
        panic!("{} was delivered", message.subject);
    }
}
