use anyhow::Context as _;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use whistle_dispatch::Options;

/// glibc's malloc and free were a fifth of dispatch's CPU under load; with mimalloc dispatch spends
/// about 8 % less CPU a report (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// whistle-dispatch: consumes reports, records incidents, publishes events.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// NATS server, or a comma-separated list of a cluster's nodes.
    #[arg(
        long,
        env = "WHISTLE_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    nats_url: String,
    /// The service's nkey seed file (`dispatch.nk` in the deployment's secrets directory).
    #[arg(long, env = "WHISTLE_DISPATCH_NKEY_FILE")]
    nats_nkey_file: Option<std::path::PathBuf>,
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/whistle"
    )]
    database_url: String,
    /// Builtin policy (ordos, ordos-demo) or a policy TOML file.
    #[arg(long, env = "WHISTLE_POLICY", default_value = "ordos")]
    policy: String,
    /// A directory of holiday calendar years (cn-YEAR.toml) instead of the shipped ones.
    #[arg(long, env = "WHISTLE_CALENDAR")]
    calendar: Option<std::path::PathBuf>,
    /// Do not apply database migrations at start.
    #[arg(long, env = "WHISTLE_NO_MIGRATE")]
    no_migrate: bool,
    /// Most reports recorded in one transaction.
    #[arg(long, env = "WHISTLE_BATCH_SIZE", default_value_t = 500)]
    batch_size: usize,
    /// Transactions a batch is recorded in at once, on as many connections (reports divided by
    /// category).
    #[arg(long, env = "WHISTLE_INTAKE_LANES", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    intake_lanes: u16,
    /// How long the intake lease runs unrenewed, in milliseconds: one replica at a time records
    /// reports, and a standby takes over this long after it dies or is cut off.
    #[arg(long, env = "WHISTLE_INTAKE_LEASE_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(250..))]
    intake_lease_ms: u64,
    /// Deliveries after which a report that keeps failing on its own is rejected as
    /// `processing_failed`.
    #[arg(long, env = "WHISTLE_MAX_REPORT_FAILURES", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    max_report_failures: u32,
    /// How long JetStream waits for a report's ack before redelivering it to another replica: how
    /// soon a killed replica's reports come back (set on the intake consumer at every start).
    #[arg(long, env = "WHISTLE_ACK_WAIT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    ack_wait_secs: u64,
    /// How often to check whether tables need ANALYZE or VACUUM, done only when the server's
    /// autovacuum is off; 0 never checks.
    #[arg(long, env = "WHISTLE_MAINTENANCE_INTERVAL_SECS", default_value_t = 10)]
    maintenance_interval_secs: u64,
    /// How often to erase residents' contacts past the policy's `[retention]` (docs/privacy.md);
    /// 0 never erases.
    #[arg(long, env = "WHISTLE_RETENTION_INTERVAL_SECS", default_value_t = 3600)]
    retention_interval_secs: u64,
    /// Commands one person may send per second, sustained; over it they are refused
    /// `rate_limited`. 0 switches the limit off.
    #[arg(long, env = "WHISTLE_COMMAND_RATE", default_value_t = 10.0)]
    command_rate: f64,
    /// Commands one person may send at once above the sustained rate.
    #[arg(long, env = "WHISTLE_COMMAND_BURST", default_value_t = 60)]
    command_burst: u32,
    /// Keyring file sealing residents' contacts (lines `key_id base64-key`, the first seals; see
    /// docs/operations.md).
    #[arg(long, env = "WHISTLE_CONTACT_KEYS")]
    contact_keys: Option<std::path::PathBuf>,
    /// Without a keyring, drop residents' contacts instead of refusing to start.
    #[arg(long, env = "WHISTLE_NO_CONTACTS", conflicts_with = "contact_keys")]
    no_contacts: bool,
    /// Take the Open311 door's reports from grid subjects too, as query replicas of an older
    /// release publish them: only while upgrading across the channel subjects (docs/operations.md).
    #[arg(long, env = "WHISTLE_LEGACY_CHANNEL_SUBJECTS")]
    legacy_channel_subjects: bool,
    /// Outbound notification channels (SMS gateway, 企业微信/钉钉 group robots), TOML; see
    /// docs/operations.md. Without it people are notified in the console only.
    #[arg(long, env = "WHISTLE_NOTIFY_CONFIG")]
    notify_config: Option<std::path::PathBuf>,
    /// Serve `/metrics` (Prometheus), `/livez` and `/readyz` over HTTP on this address, e.g.
    /// `0.0.0.0:9464`. Without it no listener opens.
    #[arg(long, env = "WHISTLE_DISPATCH_HTTP_LISTEN")]
    http_listen: Option<std::net::SocketAddr>,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "WHISTLE_LOG_JSON")]
    log_json: bool,
    /// For benchmarks only: run on an accelerated clock, `start=RFC3339,anchor=RFC3339,speed=N`
    /// (`whistle bench year`; docs/benchmarks.md). Default: the system clock.
    #[arg(long, env = "WHISTLE_BENCH_CLOCK")]
    bench_clock: Option<whistle_wire::ScaledClock>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_tracing(args.log_json);
    let options = Options {
        nats_url: args.nats_url,
        nkey_file: args.nats_nkey_file,
        database_url: args.database_url,
        policy: args.policy,
        calendar: args.calendar,
        migrate: !args.no_migrate,
        batch_size: args.batch_size,
        intake_lanes: usize::from(args.intake_lanes),
        intake_lease: std::time::Duration::from_millis(args.intake_lease_ms),
        max_report_failures: args.max_report_failures,
        ack_wait: std::time::Duration::from_secs(args.ack_wait_secs),
        maintenance_interval: std::time::Duration::from_secs(args.maintenance_interval_secs),
        retention_interval: std::time::Duration::from_secs(args.retention_interval_secs),
        command_rate: args.command_rate,
        command_burst: args.command_burst,
        contact_keys: args.contact_keys,
        no_contacts: args.no_contacts,
        legacy_channel_subjects: args.legacy_channel_subjects,
        notify_config: args.notify_config,
        http_listen: args.http_listen,
        ..Options::default()
    };
    let service = match args.bench_clock {
        Some(clock) => {
            tracing::warn!(%clock, "running on an accelerated benchmark clock");
            options.build_with_clock(std::sync::Arc::new(clock)).await
        }
        None => options.build().await,
    }
    .context("starting whistle-dispatch")?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    service
        .run(shutdown)
        .await
        .context("whistle-dispatch failed")
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,async_nats=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutdown requested: finishing the batch in hand");
    shutdown.cancel();
}
