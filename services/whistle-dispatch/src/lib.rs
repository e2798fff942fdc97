//! whistle-dispatch, the routing service: the only writer of incident state.
//!
//! It consumes reports from `WHISTLE_REPORTS`, validates them against the org tree and the
//! policy held in memory, records each batch in one PostgreSQL transaction, and publishes the
//! resulting events through a transactional outbox. Several replicas may run at once: they share
//! one durable consumer, and one of them at a time relays the outbox.
//!
//! Shape: [`Options`] → [`Options::build`] → [`Service::run`] with a shutdown token.

mod adopt;
mod catalog;
pub mod commands;
mod contacts;
mod devices;
mod engine;
mod error;
mod events;
mod http;
mod hub;
mod intake;
mod maintenance;
mod metrics;
pub mod notify;
mod people;
mod recalendar;
mod relay;
mod retention;
pub mod streams;
mod timers;
pub mod validate;
mod volunteers;

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use async_nats::jetstream;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use whistle_domain::{calendar::Calendar, OrgIndex};
use whistle_wire::{names::DISPATCH_CONSUMER, Clock, Credentials, SystemClock};

use crate::catalog::CatalogCell;

pub use catalog::Catalog;
pub use error::Error;
pub use metrics::Metrics;

/// Settings of the service; every field has a default suitable for one machine.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Options {
    pub nats_url: String,
    /// The service's nkey seed file (`dispatch.nk` of the deployment's secrets); without it the
    /// service connects anonymously, which only a server without authentication accepts.
    pub nkey_file: Option<PathBuf>,
    pub database_url: String,
    /// Apply pending migrations at start (as the database owner; with separate roles
    /// `whistle migrate` does it and dispatch finds none pending).
    pub migrate: bool,
    /// A builtin policy name (`ordos`, `ordos-demo`) or the path of a policy TOML file: the first
    /// policy version of a database that has none; after that the approved version of
    /// `policy_versions` runs (docs/policy.md, "Changing the policy").
    pub policy: String,
    /// A directory of holiday calendar years (`cn-YEAR.toml`, as `deploy/calendar/generate.py`
    /// writes them) to count working-day deadlines on instead of the years shipped in
    /// `policy/calendar/`: a newly published year is loaded without a new build.
    pub calendar: Option<PathBuf>,
    /// Durable consumer shared by all replicas.
    pub consumer: String,
    /// Most reports recorded in one transaction.
    pub batch_size: usize,
    /// Transactions a batch is recorded in at once, each on its own connection, the reports
    /// divided among them by category (duplicates and clusters never span categories).
    pub intake_lanes: usize,
    /// How long the intake lease runs unrenewed: one replica at a time records reports (it holds
    /// their duplicate and cluster state in memory), and a standby takes over this long after it
    /// dies or is cut off. Renewed every fifth of it.
    #[serde(with = "duration_millis")]
    pub intake_lease: Duration,
    /// How long JetStream waits for an ack before redelivering to another replica: how soon the
    /// reports a crashed replica held come back. A batch still being worked on is kept from
    /// redelivery by progress messages every third of this.
    #[serde(with = "duration_millis")]
    pub ack_wait: Duration,
    /// Delay before a batch that failed to commit is redelivered.
    #[serde(with = "duration_millis")]
    pub retry_delay: Duration,
    /// Deliveries after which a report whose recording fails on its own (not because PostgreSQL
    /// is unavailable) goes to `WHISTLE_REJECTED` as `processing_failed` instead of retrying.
    pub max_report_failures: u32,
    /// The relay also polls, to pick up events of other replicas and after a crash.
    #[serde(with = "duration_millis")]
    pub relay_poll_interval: Duration,
    /// The timer loop sleeps until the next deadline, but never longer than this (other
    /// replicas' deadlines, a clock moved by tests).
    #[serde(with = "duration_millis")]
    pub timer_poll_interval: Duration,
    /// How often the approved policy version is looked up, besides the notification of an
    /// approval (which a replica misses while its listening connection is down).
    #[serde(with = "duration_millis")]
    pub policy_poll_interval: Duration,
    /// How often the org tree is read again, besides the notification of a person onboarded,
    /// changed or offboarded (which a replica misses while its listening connection is down).
    #[serde(with = "duration_millis")]
    pub people_poll_interval: Duration,
    pub max_db_connections: u32,
    /// How often to look for tables to ANALYZE or VACUUM when the server's autovacuum is off
    /// (see `whistle_store::maintenance`); zero never looks.
    #[serde(with = "duration_millis")]
    pub maintenance_interval: Duration,
    /// How often to erase residents' contacts past the policy's `[retention]` (at start, then
    /// at this interval); zero never erases.
    #[serde(with = "duration_millis")]
    pub retention_interval: Duration,
    /// Commands one person may send per second, sustained, and at once; over that they are
    /// refused `rate_limited` before anything is written. Zero switches the limit off.
    pub command_rate: f64,
    pub command_burst: u32,
    /// The keyring residents' contacts are sealed with (`whistle_store::contacts::Keyring`);
    /// without one dispatch refuses to start unless `no_contacts`.
    pub contact_keys: Option<PathBuf>,
    /// Without a keyring, drop contacts instead of refusing to start.
    pub no_contacts: bool,
    /// Also take a report of another channel from a grid's own subject, as query replicas from
    /// before fb30c25's successor published the Open311 door's: only while upgrading across it
    /// (docs/operations.md, "Upgrades"), since a grid worker could then claim another channel.
    pub legacy_channel_subjects: bool,
    /// The outbound notification channels (`notify::Config`, TOML); without it people are
    /// notified in the console only.
    pub notify_config: Option<PathBuf>,
    /// Where to serve `/metrics`, `/livez` and `/readyz` over HTTP (port 0 picks one, see
    /// [`Service::http_addr`]); none by default, as several replicas may share a host.
    pub http_listen: Option<SocketAddr>,
    /// How often the depth gauges (intake backlog, outbox, due timers) are sampled.
    #[serde(with = "duration_millis")]
    pub metrics_sample_interval: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            nats_url: "nats://127.0.0.1:4222".into(),
            nkey_file: None,
            database_url: "postgres://postgres@127.0.0.1:5432/whistle".into(),
            migrate: true,
            policy: "ordos".into(),
            calendar: None,
            consumer: DISPATCH_CONSUMER.into(),
            batch_size: 500,
            intake_lanes: 2,
            intake_lease: Duration::from_secs(5),
            ack_wait: Duration::from_secs(10),
            retry_delay: Duration::from_secs(1),
            max_report_failures: 5,
            relay_poll_interval: Duration::from_millis(250),
            timer_poll_interval: Duration::from_secs(1),
            policy_poll_interval: Duration::from_secs(2),
            people_poll_interval: Duration::from_secs(60),
            max_db_connections: 8,
            maintenance_interval: Duration::from_secs(10),
            retention_interval: Duration::from_secs(3600),
            command_rate: 10.0,
            command_burst: 60,
            contact_keys: None,
            no_contacts: false,
            legacy_channel_subjects: false,
            notify_config: None,
            http_listen: None,
            metrics_sample_interval: Duration::from_secs(5),
        }
    }
}

/// Durations as whole milliseconds in config files, e.g. `ack_wait = 30000`.
mod duration_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// State shared by the service's tasks.
pub(crate) struct Shared {
    pub options: Options,
    pub pool: PgPool,
    pub jetstream: jetstream::Context,
    pub catalog: CatalogCell,
    /// The hash of the policy version in `catalog` (`policy_versions.sha256`).
    pub policy_sha256: std::sync::Mutex<String>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub contacts: contacts::Contacts,
    /// The device registry (docs/devices.md), followed like the org.
    pub devices: devices::RegistryCell,
}

/// A built service, connected and ready to run.
pub struct Service {
    shared: Arc<Shared>,
    client: async_nats::Client,
    events_jetstream: jetstream::Context,
    consumer: jetstream::consumer::PullConsumer,
    notify: (notify::Config, jetstream::consumer::PullConsumer),
    /// The org version the running org was read at.
    org_version: i64,
    /// Every NATS connection, for `/readyz`.
    nats_clients: Vec<async_nats::Client>,
    /// The operators' HTTP endpoint, bound at build so a taken address fails the start.
    http: Option<tokio::net::TcpListener>,
}

impl Options {
    /// What the service presents to nats-server: its nkey if a seed file is configured.
    pub fn credentials(&self) -> Credentials {
        match &self.nkey_file {
            Some(seed_file) => Credentials::Nkey {
                seed_file: seed_file.clone(),
                service: "dispatch".into(),
            },
            None => Credentials::Anonymous,
        }
    }

    /// Connects to NATS and PostgreSQL, applies migrations (unless disabled), opens the streams,
    /// ensures its consumer, and loads the org tree and policy into memory.
    pub async fn build(self) -> Result<Service, Error> {
        self.build_with_clock(Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(self, clock: Arc<dyn Clock>) -> Result<Service, Error> {
        // Read now so a bad --policy fails at once; it applies only when no version is stored.
        let bootstrap_source = whistle_wire::policy::source(&self.policy)?;
        let calendar = match &self.calendar {
            Some(dir) => catalog::load_calendar(dir)?,
            None => Calendar::builtin(),
        };
        let contacts = contacts::Contacts::from_options(&self)?;
        let notify_config = match &self.notify_config {
            Some(path) => notify::Config::load(path)?,
            None => notify::Config::default(),
        };
        let pool = whistle_store::connect(&self.database_url, self.max_db_connections).await?;
        // Checked first: dispatch's own role may read `_sqlx_migrations` but not migrate.
        if self.migrate {
            let pending = whistle_store::pending_migrations(&pool).await?;
            if pending > 0 {
                whistle_store::migrate(
                    &pool,
                    &whistle_store::audit::Actor::service("whistle-dispatch"),
                )
                .await
                .map_err(|source| Error::Migrate { pending, source })?;
            }
        }
        let running = whistle_store::policies::bootstrap(
            &pool,
            &bootstrap_source,
            &self.policy,
            &whistle_store::audit::Actor::service("whistle-dispatch"),
            clock.now(),
        )
        .await
        .map_err(|e| match e {
            whistle_store::policies::Refused::Invalid(message) => Error::PolicyVersion(message),
            whistle_store::policies::Refused::Store(e) => Error::Store(e),
        })?;
        if running.sha256 != whistle_store::policies::sha256(&bootstrap_source) {
            warn!(
                version = %running.version,
                policy = %self.policy,
                "--policy differs from the approved policy version, which runs: --policy applies only to a database without versions; to run it, `whistle policy propose` it and have it approved"
            );
        }
        let policy = running.policy().map_err(|e| {
            Error::PolicyVersion(format!(
                "the approved version {} is invalid: {e}",
                running.version
            ))
        })?;
        catalog::record_policy(&pool, &policy, "policy_versions").await?;
        // The version first: an import landing before the org is read is then loaded again.
        let org_version = whistle_store::org::current_version(&pool).await?;
        let org = OrgIndex::build(whistle_store::org::load(&pool).await?)?;
        let device_registry = devices::Registry::load(&pool).await?;
        if org.units().next().is_none() {
            tracing::warn!(
                "the org tree is empty: every report will be rejected until `whistle seed` runs"
            );
        }

        let credentials = self.credentials();
        if credentials == Credentials::Anonymous {
            warn!("no --nats-nkey-file: connecting to NATS anonymously");
        }
        let connect = |name: &'static str| {
            let (url, credentials) = (self.nats_url.clone(), credentials.clone());
            async move {
                whistle_wire::connect::options(name, &credentials)
                    .await?
                    .retry_on_initial_connect()
                    .connect(whistle_wire::connect::servers(&url))
                    .await
                    .map_err(|source| Error::Connect { url, source })
            }
        };
        let client = connect("whistle-dispatch").await?;
        let events_client = connect("whistle-dispatch-relay").await?;
        let nats_clients = vec![client.clone(), events_client.clone()];
        let http = match self.http_listen {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| Error::HttpListen { addr, source })?,
            ),
            None => None,
        };
        let context = |client| {
            jetstream::ContextBuilder::new()
                .timeout(Duration::from_secs(10))
                .max_ack_inflight(4096)
                .backpressure_on_inflight(true)
                .build(client)
        };
        let js = context(client.clone());
        streams::open(&js).await?;
        let consumer = streams::intake_consumer(&js, &self.consumer, self.ack_wait).await?;
        let notify_consumer = notify::consumer(&js).await?;
        info!(
            policy = %policy.version(),
            units = org.units().count(),
            people = org.people().count(),
            "dispatch ready"
        );
        let shared = Arc::new(Shared {
            options: self,
            pool,
            jetstream: js,
            catalog: CatalogCell::new(Catalog {
                org,
                policy,
                calendar,
            }),
            policy_sha256: std::sync::Mutex::new(running.sha256),
            clock,
            metrics: Arc::new(Metrics::default()),
            contacts,
            devices: devices::RegistryCell::new(device_registry),
        });
        Ok(Service {
            shared,
            client,
            events_jetstream: context(events_client),
            consumer,
            notify: (notify_config, notify_consumer),
            org_version,
            nats_clients,
            http,
        })
    }
}

/// The machine's name, for the intake lease's holder: `host/pid/uuid`, so an operator (or the
/// chaos runner) reading `intake_owner` knows which process records reports.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "dispatch".into())
}

impl Service {
    /// The address `/metrics`, `/livez` and `/readyz` are served on, with `http_listen` set.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Runs intake, commands, timers and the relay until `shutdown` is cancelled, then finishes
    /// the work in hand, relays what it committed, and returns.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        // Before the timers run, so none fires at a provisional deadline the calendar now moves;
        // a failure leaves the deadlines provisional, which the next start retries.
        if let Err(e) = recalendar::sweep(&self.shared).await {
            warn!(error = %whistle_wire::chain(&e), "recounting provisional deadlines failed");
        }
        let relay_wakeup = Arc::new(Notify::new());
        let timer_wakeup = Arc::new(Notify::new());
        let database_url = &self.shared.options.database_url;
        let relay = relay::Relay {
            shared: self.shared.clone(),
            jetstream: self.events_jetstream,
            db: whistle_store::Dedicated::new(database_url)?,
            wakeup: relay_wakeup.clone(),
        };
        let holder = format!(
            "{}/{}/{}",
            hostname(),
            std::process::id(),
            uuid::Uuid::now_v7()
        );
        let intake = intake::Intake {
            shared: self.shared.clone(),
            holder: holder.clone(),
            stale: false,
            devices: devices::Tracks::default(),
            consumer: self.consumer,
            lanes: (0..self.shared.options.intake_lanes.max(1))
                .map(|_| whistle_store::Dedicated::new(database_url))
                .collect::<Result<_, _>>()?,
            relay_wakeup: relay_wakeup.clone(),
            timer_wakeup: timer_wakeup.clone(),
        };
        let timers = timers::Timers {
            shared: self.shared.clone(),
            wakeup: timer_wakeup.clone(),
            relay_wakeup: relay_wakeup.clone(),
        };
        let commands = commands::Commands {
            shared: self.shared.clone(),
            client: self.client,
            relay_wakeup,
            timer_wakeup,
            limiter: whistle_auth::RateLimiter::new(
                self.shared.options.command_rate,
                self.shared.options.command_burst,
            ),
        };

        // The relay stops only after everything else, so the last events go out.
        let relay_stop = CancellationToken::new();
        let relay_task = tokio::spawn(relay.run(relay_stop.clone()));
        let timers_task = tokio::spawn(timers.run(shutdown.clone()));
        let commands_task = commands.start(shutdown.clone()).await?;
        // Every follower of a notification subscribes before the one listener starts.
        let mut hub = hub::Hub::default();
        let policy_wakeups = hub.subscribe(&[whistle_store::policies::CHANNEL]);
        let org_wakeups =
            hub.subscribe(&[whistle_store::org::CHANNEL, whistle_store::people::CHANNEL]);
        let device_wakeups = hub.subscribe(&[whistle_store::devices::CHANNEL]);
        let retention = (!self.shared.options.retention_interval.is_zero())
            .then(|| hub.subscribe(&[whistle_store::photos::ERASED_CHANNEL]));
        let hub_task = tokio::spawn(hub.run(
            self.shared.pool.clone(),
            self.shared.options.policy_poll_interval,
            shutdown.clone(),
        ));
        let policy_task = tokio::spawn(catalog::follow_policy(
            self.shared.clone(),
            holder,
            policy_wakeups,
            shutdown.clone(),
        ));
        let org_task = tokio::spawn(catalog::follow_org(
            self.shared.clone(),
            self.org_version,
            org_wakeups,
            shutdown.clone(),
        ));
        let devices_task = tokio::spawn(devices::follow(
            self.shared.clone(),
            device_wakeups,
            shutdown.clone(),
        ));
        let (notify_config, notify_consumer) = self.notify;
        let notifier = notify::Notifier::new(self.shared.clone(), notify_config)?;
        let notify_task = tokio::spawn(notifier.run(notify_consumer, shutdown.clone()));
        if !self.shared.options.maintenance_interval.is_zero() {
            tokio::spawn(maintenance::run(self.shared.clone(), shutdown.clone()));
        }
        if let Some(erasures) = retention {
            tokio::spawn(retention::run(
                self.shared.clone(),
                erasures,
                shutdown.clone(),
            ));
        }
        let sampler_task = tokio::spawn(metrics::sample(
            self.shared.clone(),
            self.shared.options.metrics_sample_interval,
            shutdown.clone(),
        ));
        // Served until everything has stopped, so a probe sees the replica to its end.
        let http_stop = CancellationToken::new();
        let http_task = self.http.map(|listener| {
            tokio::spawn(http::serve(
                listener,
                http::Probes {
                    nats: self.nats_clients,
                    pool: self.shared.pool.clone(),
                    metrics: self.shared.metrics.clone(),
                },
                http_stop.clone(),
            ))
        });
        intake.run(shutdown).await;
        let _ = tokio::join!(
            sampler_task,
            timers_task,
            commands_task,
            notify_task,
            policy_task,
            org_task,
            devices_task,
            hub_task
        );
        relay_stop.cancel();
        let relayed = relay_task.await;
        http_stop.cancel();
        if let Some(task) = http_task {
            let _ = task.await;
        }
        relayed.map_err(Error::Relay)?;
        self.shared.pool.close().await;
        info!("dispatch stopped");
        Ok(())
    }
}
