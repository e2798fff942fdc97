//! One world per test: key material, a nats-server with the rendered configuration, a fresh
//! migrated and seeded database, and the callout.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use async_nats::{Event, ServerError};
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use whistle_auth::{callout, Callout, Keys, Secrets, ServerConfig, Service};
use whistle_domain::OrgIndex;
use whistle_store::tokens::{self, NewToken, Role};

pub struct World {
    pub url: String,
    pub pool: PgPool,
    pub org: Arc<OrgIndex>,
    pub secrets: Secrets,
    nats: Child,
    shutdown: CancellationToken,
    callout: Option<tokio::task::JoinHandle<whistle_auth::Result<()>>>,
    db: TestDb,
    dir: PathBuf,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("binding a free port")
        .local_addr()
        .expect("local addr")
        .port()
}

impl World {
    pub async fn start(recheck_interval: Duration) -> World {
        let dir = std::env::temp_dir().join(format!("whistle-auth-it-{}", uuid::Uuid::now_v7()));
        let secrets = Secrets::load_or_create(&dir.join("secrets")).expect("key material");
        let port = free_port();
        let config = ServerConfig::new(&secrets, "127.0.0.1", port, dir.join("jetstream"));
        let conf_path = dir.join("nats.conf");
        std::fs::write(&conf_path, config.render()).expect("writing the config");
        let bin = std::env::var("WHISTLE_NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".into());
        let log = std::fs::File::create(dir.join("nats.log")).expect("creating the server log");
        let nats = Command::new(&bin)
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {bin} (set WHISTLE_NATS_SERVER_BIN): {e}"));
        let url = format!("nats://127.0.0.1:{port}");
        let db = TestDb::create().await;
        let org = Arc::new(
            OrgIndex::build(whistle_domain::ordos::dataset()).expect("the Ordos tree indexes"),
        );
        let mut world = World {
            url: url.clone(),
            pool: db.pool.clone(),
            org: org.clone(),
            secrets,
            nats,
            shutdown: CancellationToken::new(),
            callout: None,
            db,
            dir,
        };
        world.wait_ready().await;
        let options = callout::Options {
            nats_url: url,
            recheck_interval,
            ..Default::default()
        };
        let keys = Keys::from_secrets(&world.secrets).expect("callout keys");
        let service = Callout::new(options, keys, world.pool.clone(), org)
            .await
            .expect("starting the callout");
        world.callout = Some(tokio::spawn(service.run(world.shutdown.clone())));
        world
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(client) = self.service(Service::Admin).await {
                let info = client.request("$JS.API.INFO", "".into()).await;
                if info.is_ok_and(|reply| {
                    reply.payload.starts_with(
                        b"{\"type\":\"io.nats.jetstream.api.v1.account_info_response\"",
                    )
                }) {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let log = std::fs::read_to_string(self.dir.join("nats.log")).unwrap_or_default();
        let config = std::fs::read_to_string(self.dir.join("nats.conf")).unwrap_or_default();
        panic!(
            "nats-server at {} did not become ready\n{config}\n{log}",
            self.url
        );
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
        let (token, secret) = tokens::create(&self.pool, &new, chrono::Utc::now())
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
        let _ = self.nats.kill();
        let _ = self.nats.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = &self.db;
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

/// A fresh database on the server of `DATABASE_URL`, migrated and seeded with the Ordos data.
pub struct TestDb {
    pub pool: PgPool,
    admin_url: String,
    name: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let admin_url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("whistle_auth_{}", uuid::Uuid::now_v7().simple());
        let admin = whistle_store::connect(&admin_url, 1)
            .await
            .unwrap_or_else(|e| panic!("connecting to DATABASE_URL {admin_url}: {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .expect("creating the test database");
        admin.close().await;
        let pool = whistle_store::connect(&with_database(&admin_url, &name), 4)
            .await
            .expect("connecting to the test database");
        whistle_store::migrate(&pool).await.expect("migrating");
        whistle_store::org::seed(&pool, &whistle_domain::ordos::dataset())
            .await
            .expect("seeding");
        TestDb {
            pool,
            admin_url,
            name,
        }
    }
}

/// `url` with its database replaced by `name`, keeping any query string.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Dropped inside a runtime; a thread of its own runs the DROP to completion.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                if let Ok(admin) = whistle_store::connect(&admin_url, 1).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&admin)
                        .await;
                }
            });
        })
        .join();
    }
}
