//! Test servers and the running platform, isolated per test.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::bail;
use async_nats::{
    header::NATS_MESSAGE_ID,
    jetstream::{self, consumer},
    HeaderMap,
};
use futures::StreamExt;
use prost::Message as _;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use whistle_proto::v1;

/// A private nats-server with JetStream, killed on drop.
pub struct NatsServer {
    child: Child,
    pub port: u16,
    store_dir: PathBuf,
    _dir: TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("binding a free port")
        .local_addr()
        .expect("local addr")
        .port()
}

impl NatsServer {
    pub async fn start() -> NatsServer {
        let dir = TempDir::new("nats");
        let store_dir = dir.path.join("jetstream");
        let port = free_port();
        let child = spawn_nats(port, &store_dir);
        let server = NatsServer {
            child,
            port,
            store_dir,
            _dir: dir,
        };
        server.wait_ready().await;
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server and starts it again on the same port and store.
    pub async fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn_nats(self.port, &self.store_dir);
        self.wait_ready().await;
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(client) = async_nats::connect(self.url()).await {
                // JetStream answers its API only once the server has recovered its streams. (A raw
                // request: async-nats cannot parse the account info of nats-server 2.9.)
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
        panic!("nats-server on port {} did not become ready", self.port);
    }
}

fn spawn_nats(port: u16, store_dir: &std::path::Path) -> Child {
    let bin = std::env::var("WHISTLE_NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".into());
    Command::new(&bin)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(store_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("starting {bin} (set WHISTLE_NATS_SERVER_BIN or run deploy/local/test.sh): {e}")
        })
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let path =
            std::env::temp_dir().join(format!("whistle-it-{prefix}-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&path).expect("creating a temp dir");
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A fresh database on the server of `DATABASE_URL`, migrated and seeded with the Ordos data,
/// dropped at the end of the test.
pub struct TestDb {
    pub url: String,
    pub pool: PgPool,
    admin_url: String,
    name: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let admin_url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("whistle_it_{}", uuid::Uuid::now_v7().simple());
        let admin = whistle_store::connect(&admin_url, 1)
            .await
            .unwrap_or_else(|e| {
                panic!("connecting to DATABASE_URL {admin_url} (run deploy/local/test.sh): {e}")
            });
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .expect("creating the test database");
        admin.close().await;
        let url = with_database(&admin_url, &name);
        let pool = whistle_store::connect(&url, 4)
            .await
            .expect("connecting to the test database");
        whistle_store::migrate(&pool).await.expect("migrating");
        whistle_store::org::seed(&pool, &whistle_domain::ordos::dataset())
            .await
            .expect("seeding");
        TestDb {
            url,
            pool,
            admin_url,
            name,
        }
    }

    /// A bearer token for the query service, made as `whistle token create` makes it. `scope`
    /// is an area code, or a department code for liaisons.
    pub async fn token(&self, role: whistle_store::tokens::Role, scope: &str) -> String {
        use whistle_store::tokens::{NewToken, Role};
        let department = scope.contains('-') || role == Role::Liaison;
        let new = NewToken {
            role: Some(role),
            area_code: (!department).then(|| scope.to_owned()),
            department_code: department.then(|| scope.to_owned()),
            ..Default::default()
        };
        whistle_store::tokens::create(&self.pool, &new, chrono::Utc::now())
            .await
            .unwrap_or_else(|e| panic!("creating a {role:?} token for {scope}: {e}"))
            .1
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

/// Replaces the database name in a PostgreSQL URL.
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
        // Drop runs outside async, and the test's runtime is blocked here: a short-lived runtime
        // on its own thread drops the database (FORCE ends this pool's connections).
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let admin = whistle_store::connect(&admin_url, 1).await.ok()?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&admin)
                    .await
                    .ok()
            })
        })
        .join();
    }
}

/// Dispatch settings for tests: quick redelivery so crash tests finish fast.
pub fn dispatch_options(nats: &NatsServer, db: &TestDb) -> whistle_dispatch::Options {
    whistle_dispatch::Options {
        nats_url: nats.url(),
        database_url: db.url.clone(),
        ack_wait: Duration::from_secs(2),
        retry_delay: Duration::from_millis(200),
        relay_poll_interval: Duration::from_millis(100),
        timer_poll_interval: Duration::from_millis(50),
        max_db_connections: 4,
        ..Default::default()
    }
}

/// A dispatch service running in this process.
pub struct Dispatch {
    pub shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), whistle_dispatch::Error>>,
}

/// Logs of the code under test, shown for failing tests (`RUST_LOG` to change the level).
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,whistle_dispatch=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

impl Dispatch {
    pub async fn start(options: whistle_dispatch::Options) -> Dispatch {
        Dispatch::start_with_clock(options, std::sync::Arc::new(whistle_wire::SystemClock)).await
    }

    /// With a clock the test moves: deadlines fire when the test says so, without sleeping.
    pub async fn start_with_clock(
        options: whistle_dispatch::Options,
        clock: std::sync::Arc<dyn whistle_wire::Clock>,
    ) -> Dispatch {
        init_logs();
        let service = options
            .build_with_clock(clock)
            .await
            .expect("building dispatch");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(service.run(shutdown.clone()));
        Dispatch { shutdown, task }
    }

    /// Graceful stop: finish the batch in hand, commit, ack, relay.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task
            .await
            .expect("dispatch task")
            .expect("dispatch ran cleanly");
    }
}

/// A grid worker's client.
pub struct Reporter {
    pub js: jetstream::Context,
}

impl Reporter {
    pub async fn connect(nats: &NatsServer) -> Reporter {
        let client = async_nats::connect(nats.url())
            .await
            .expect("connecting to nats");
        Reporter {
            js: jetstream::new(client),
        }
    }

    /// Publishes raw bytes with optional headers and waits for JetStream to store them.
    pub async fn publish_raw(
        &self,
        subject: &str,
        headers: HeaderMap,
        payload: Vec<u8>,
    ) -> jetstream::publish::PublishAck {
        self.js
            .publish_with_headers(subject.to_owned(), headers, payload.into())
            .await
            .expect("publish")
            .await
            .expect("publish ack")
    }

    pub async fn publish(&self, report: &v1::Report) -> jetstream::publish::PublishAck {
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, report.report_id.as_str());
        self.publish_raw(
            &subject_for(&report.grid_code),
            headers,
            report.encode_to_vec(),
        )
        .await
    }
}

pub fn subject_for(grid: &str) -> String {
    whistle_wire::subject::report(&grid.parse().expect("a grid code"))
}

/// Grids of the Ordos dataset, for picking valid places.
pub fn grids() -> Vec<String> {
    whistle_domain::ordos::dataset()
        .units
        .into_iter()
        .filter(|u| u.level() == whistle_domain::Level::Grid)
        .map(|u| u.code.to_string())
        .collect()
}

/// A valid report from the worker of `grid`.
pub fn report(report_id: &str, grid: &str) -> v1::Report {
    v1::Report {
        report_id: report_id.into(),
        reporter_id: format!("gw-{grid}"),
        grid_code: grid.into(),
        category: "heating.no_heat".into(),
        urgency: v1::Urgency::Urgent as i32,
        title: "3号楼室内温度只有12度".into(),
        description: "居民反映连续两天室内温度不达标".into(),
        // No coordinates: duplicate detection then compares grids, so reports from different
        // grids are different incidents.
        location: None,
        occurred_at: Some(whistle_proto::timestamp_from_unix_millis(
            chrono::Utc::now().timestamp_millis() - 3_600_000,
        )),
        reported_at: Some(whistle_proto::timestamp_from_unix_millis(
            chrono::Utc::now().timestamp_millis(),
        )),
        attachments: vec![v1::Attachment {
            uri: "https://oss.example/a.jpg".into(),
            media_type: "image/jpeg".into(),
            size_bytes: 1,
            caption: String::new(),
        }],
        contact_phone: String::new(),
    }
}

/// A message read back from a stream.
#[derive(Debug, Clone)]
pub struct Stored {
    pub subject: String,
    pub headers: HeaderMap,
    pub payload: bytes::Bytes,
}

/// Every message currently in `stream`, in order.
pub async fn read_stream(js: &jetstream::Context, stream: &str) -> Vec<Stored> {
    let mut stream = js.get_stream(stream).await.expect("stream exists");
    let last = stream
        .info()
        .await
        .expect("stream info")
        .state
        .last_sequence;
    let mut out = Vec::new();
    if last == 0 {
        return out;
    }
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .expect("ordered consumer");
    let mut messages = consumer.messages().await.expect("messages");
    while let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_secs(5), messages.next()).await
    {
        let message = message.expect("message");
        let sequence = message.info().expect("info").stream_sequence;
        out.push(Stored {
            subject: message.subject.to_string(),
            headers: message.headers.clone().unwrap_or_default(),
            payload: message.payload.clone(),
        });
        if sequence >= last {
            break;
        }
    }
    out
}

/// Every event in `WHISTLE_EVENTS`, decoded.
pub async fn events(js: &jetstream::Context) -> Vec<(String, v1::Event)> {
    read_stream(js, "WHISTLE_EVENTS")
        .await
        .into_iter()
        .map(|m| {
            (
                m.subject,
                v1::Event::decode(m.payload).expect("events are whistle.v1.Event"),
            )
        })
        .collect()
}

/// Polls `check` until it returns true, failing the test after `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The state of dispatch's intake consumer.
pub async fn intake_consumer(js: &jetstream::Context) -> jetstream::consumer::Info {
    js.get_stream(whistle_wire::names::REPORTS_STREAM)
        .await
        .unwrap()
        .consumer_info("whistle-dispatch")
        .await
        .unwrap()
}

/// Waits until dispatch's intake consumer has nothing pending and nothing awaiting an ack.
pub async fn intake_drained(js: &jetstream::Context) {
    eventually(
        "the intake consumer drained",
        Duration::from_secs(20),
        || async {
            let info = intake_consumer(js).await;
            info.num_pending == 0 && info.num_ack_pending == 0
        },
    )
    .await
    .unwrap();
}

/// Number of messages in a stream (0 if it does not exist yet).
pub async fn stream_len(js: &jetstream::Context, name: &str) -> u64 {
    match js.get_stream(name).await {
        Ok(mut stream) => stream.info().await.map(|i| i.state.messages).unwrap_or(0),
        Err(_) => 0,
    }
}

pub use whistle_proto::Bearer;

pub type Authed =
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>;

/// A `CommandCenter` client of the query service at `url` sending `token`.
pub async fn command_center(
    url: &str,
    token: &str,
) -> whistle_proto::v1::command_center_client::CommandCenterClient<Authed> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .expect("a query URL")
        .connect()
        .await
        .expect("connecting to the query service");
    whistle_proto::v1::command_center_client::CommandCenterClient::with_interceptor(
        channel,
        Bearer::new(token).expect("an ASCII token"),
    )
}
