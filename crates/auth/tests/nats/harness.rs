//! One world per test: key material, a nats-server with the rendered configuration, a fresh
//! migrated and seeded database, and the callout.

use std::{sync::Arc, time::Duration};

use async_nats::{Event, ServerError};
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use whistle_auth::{callout, Callout, Keys, Secrets, Service};
use whistle_domain::OrgIndex;
use whistle_store::tokens::{self, NewToken, Role};
use whistle_testkit::{NatsConfig, NatsServer, TempDir, TestDb};

pub struct World {
    pub url: String,
    pub pool: PgPool,
    pub org: Arc<OrgIndex>,
    pub secrets: Secrets,
    shutdown: CancellationToken,
    callout: Option<tokio::task::JoinHandle<whistle_auth::Result<()>>>,
    // Dropped in field order: the server before the key material's directory.
    _nats: NatsServer,
    _db: TestDb,
    _dir: TempDir,
}

impl World {
    pub async fn start(recheck_interval: Duration) -> World {
        let dir = TempDir::new("auth-it").expect("a temporary directory");
        let secrets = Secrets::load_or_create(&dir.path().join("secrets")).expect("key material");
        let nats =
            NatsConfig::new().secured(&secrets).start().await.expect(
                "nats-server with the rendered configuration (set WHISTLE_NATS_SERVER_BIN)",
            );
        let db = TestDb::create()
            .await
            .expect("a test database (DATABASE_URL)");
        let org = Arc::new(
            OrgIndex::build(whistle_domain::ordos::dataset()).expect("the Ordos tree indexes"),
        );
        let options = callout::Options {
            nats_url: nats.url(),
            recheck_interval,
            ..Default::default()
        };
        let keys = Keys::from_secrets(&secrets).expect("callout keys");
        // The callout runs inside whistle-query, on the query service's database role.
        let callout_pool = whistle_store::connect(&db.query_url, 2)
            .await
            .expect("connecting as the query role");
        let service = Callout::new(options, keys, callout_pool, org.clone())
            .await
            .expect("starting the callout");
        let shutdown = CancellationToken::new();
        World {
            url: nats.url(),
            pool: db.pool.clone(),
            org,
            secrets,
            callout: Some(tokio::spawn(service.run(shutdown.clone()))),
            shutdown,
            _nats: nats,
            _db: db,
            _dir: dir,
        }
    }

    /// A connection as a service's static nkey user.
    pub async fn service(
        &self,
        service: Service,
    ) -> Result<async_nats::Client, async_nats::ConnectError> {
        async_nats::ConnectOptions::with_nkey(self.secrets.service(service).seed().unwrap())
            .custom_inbox_prefix(service.inbox_prefix())
            .connect(&self.url)
            .await
    }

    /// A token as `whistle token create` makes it; `scope` is an area, or a department for
    /// liaisons. Returns the token's id and secret.
    pub async fn token(&self, role: Role, scope: &str) -> (uuid::Uuid, String) {
        let new = NewToken {
            role: Some(role),
            area_code: (role != Role::Liaison).then(|| scope.to_owned()),
            department_code: (role == Role::Liaison).then(|| scope.to_owned()),
            label: format!("test {}", role.as_str()),
            ..Default::default()
        };
        let (token, secret) = tokens::create(
            &self.pool,
            &new,
            chrono::Utc::now(),
            &whistle_store::audit::Actor::cli(Some("test")),
        )
        .await
        .expect("creating a token");
        (token.id, secret)
    }

    /// A connection with a bearer token, reporting the server's errors and its disconnections.
    pub async fn connect(
        &self,
        secret: &str,
        inbox_prefix: &str,
    ) -> Result<Probe, async_nats::ConnectError> {
        self.probe(
            async_nats::ConnectOptions::with_token(secret.to_owned())
                .custom_inbox_prefix(inbox_prefix),
        )
        .await
    }

    /// A service's connection, reporting the server's errors.
    pub async fn service_probe(&self, service: Service) -> Probe {
        self.probe(
            async_nats::ConnectOptions::with_nkey(self.secrets.service(service).seed().unwrap())
                .custom_inbox_prefix(service.inbox_prefix()),
        )
        .await
        .expect("a service connects")
    }

    async fn probe(
        &self,
        options: async_nats::ConnectOptions,
    ) -> Result<Probe, async_nats::ConnectError> {
        let (sender, events) = mpsc::unbounded_channel();
        let client = options
            .event_callback(move |event| {
                let sender = sender.clone();
                async move {
                    let _ = sender.send(event);
                }
            })
            .connect(&self.url)
            .await?;
        Ok(Probe { client, events })
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(callout) = self.callout.take() {
            callout.abort();
        }
    }
}

/// Waits until the server has processed everything `admin` sent before (a JetStream API round
/// trip; `flush` only writes the socket), so its subscriptions are in place.
pub async fn sync(admin: &async_nats::Client) {
    round_trip(admin, "$JS.API.INFO").await;
}

/// A request the server itself answers on `subject` (a JetStream API subject the client may use).
pub async fn round_trip(client: &async_nats::Client, subject: &str) {
    client
        .request(subject.to_owned(), "".into())
        .await
        .expect("a round trip through the server");
}

/// Publishes on `subject` until `subscriber` (whose subscription may not be in place yet on the
/// server) receives it.
pub async fn deliver(
    publisher: &async_nats::Client,
    subject: &str,
    subscriber: &mut async_nats::Subscriber,
) {
    use futures::StreamExt as _;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        publisher
            .publish(subject.to_owned(), "probe".into())
            .await
            .unwrap();
        publisher.flush().await.unwrap();
        if let Ok(Some(message)) =
            tokio::time::timeout(Duration::from_millis(200), subscriber.next()).await
        {
            assert_eq!(message.subject.as_str(), subject);
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing arrived on {subject}"
        );
    }
}

/// A client and the events its connection reported.
pub struct Probe {
    pub client: async_nats::Client,
    pub events: mpsc::UnboundedReceiver<Event>,
}

impl Probe {
    /// Waits for the server's permissions violation naming `subject`.
    pub async fn expect_violation(&mut self, subject: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("no permissions violation for {subject}"))
                .expect("the connection's events ended");
            if let Event::ServerError(ServerError::Other(message)) = &event {
                let lower = message.to_lowercase();
                if lower.contains("permissions violation") && message.contains(subject) {
                    return;
                }
            }
        }
    }

    /// Asserts that no permissions violation arrives while a round trip to the server completes
    /// (errors for earlier protocol lines precede the PONG).
    pub async fn expect_no_violation(&mut self) {
        self.client.flush().await.expect("flushing");
        while let Ok(event) = self.events.try_recv() {
            if let Event::ServerError(ServerError::Other(message)) = &event {
                assert!(
                    !message.to_lowercase().contains("permissions violation"),
                    "unexpected: {message}"
                );
            }
        }
    }
}
