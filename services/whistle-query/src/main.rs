use std::{net::SocketAddr, path::PathBuf};

use anyhow::Context as _;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use whistle_query::Options;

/// whistle-query: the read side for the command screens and the gRPC door for commands, over
/// gRPC and gRPC-web, with Prometheus metrics at /metrics.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address for gRPC, gRPC-web, health and reflection.
    #[arg(long, env = "WHISTLE_QUERY_LISTEN", default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/whistle"
    )]
    database_url: String,
    /// A streaming hot standby of the database (same database and role): reads that tolerate
    /// staleness go there while it lags within --max-replica-lag-ms; a person who just acted
    /// reads the primary until the standby holds it. Without it everything reads the primary.
    #[arg(long, env = "WHISTLE_QUERY_REPLICA_DATABASE_URL")]
    replica_database_url: Option<String>,
    /// The most the standby may lag, in milliseconds, and still be read.
    #[arg(long, env = "WHISTLE_QUERY_MAX_REPLICA_LAG_MS", default_value_t = whistle_query::DEFAULT_MAX_REPLICA_LAG_MS, value_parser = clap::value_parser!(u64).range(1..))]
    max_replica_lag_ms: u64,
    /// NATS server, or a comma-separated list of a cluster's nodes.
    #[arg(
        long,
        env = "WHISTLE_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    nats_url: String,
    /// The service's nkey seed file (`query.nk` in the deployment's secrets directory).
    #[arg(long, env = "WHISTLE_QUERY_NKEY_FILE")]
    nats_nkey_file: Option<PathBuf>,
    /// Run the NATS auth callout in this service, as this user (`auth-callout.nk`)…
    #[arg(
        long,
        env = "WHISTLE_CALLOUT_NKEY_FILE",
        requires = "callout_issuer_file"
    )]
    callout_nkey_file: Option<PathBuf>,
    /// …signing with this issuer account key (`auth-issuer.nk`).
    #[arg(
        long,
        env = "WHISTLE_CALLOUT_ISSUER_FILE",
        requires = "callout_nkey_file"
    )]
    callout_issuer_file: Option<PathBuf>,
    /// …and cut a revoked token's connections at once, as this system-account user
    /// (`auth-revoker.nk`); without it they last until their re-check.
    #[arg(
        long,
        env = "WHISTLE_CALLOUT_REVOKER_FILE",
        requires = "callout_nkey_file"
    )]
    callout_revoker_file: Option<PathBuf>,
    /// Seconds a person's NATS authorization lives before its token is checked again: the
    /// longest a revoked token keeps a live connection.
    #[arg(long, env = "WHISTLE_CALLOUT_RECHECK_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    callout_recheck_secs: u64,
    /// Builtin policy (ordos, ordos-demo) or a policy TOML file, for category names until the
    /// database holds an approved policy version (followed from then on).
    #[arg(long, env = "WHISTLE_POLICY", default_value = "ordos")]
    policy: String,
    /// Most PostgreSQL connections.
    #[arg(long, env = "WHISTLE_QUERY_MAX_DB_CONNECTIONS", default_value_t = 8)]
    max_db_connections: u32,
    /// Reads that may scan an area by SQL (ListOverdue while the live aggregates load, old
    /// scoreboard months) at once; more wait, so light reads always find a connection. Kept
    /// below --max-db-connections.
    #[arg(long, env = "WHISTLE_QUERY_MAX_HEAVY_READS", default_value_t = whistle_query::DEFAULT_HEAVY_READS, value_parser = clap::value_parser!(u32).range(1..))]
    max_heavy_reads: u32,
    /// Live GetScoreboard and ListOverdue calls computing at once (default: half the cores);
    /// more wait, so that their callers cannot take every worker thread from light reads.
    #[arg(long, env = "WHISTLE_QUERY_MAX_BOARD_READS", default_value_t = whistle_query::default_board_reads(), value_parser = clap::value_parser!(u32).range(1..))]
    max_board_reads: u32,
    /// Events held in memory for live WatchEvents streams; clients further behind catch up from
    /// JetStream.
    #[arg(long, env = "WHISTLE_QUERY_WATCH_BUFFER", default_value_t = whistle_query::DEFAULT_WATCH_BUFFER)]
    watch_buffer: usize,
    /// PEM certificate chain for TLS (with --tls-key); without both the listener is plaintext.
    #[arg(long, env = "WHISTLE_QUERY_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for TLS.
    #[arg(long, env = "WHISTLE_QUERY_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The built web console to serve at `/` (services/whistle-query/console/dist).
    #[arg(long, env = "WHISTLE_CONSOLE_DIR")]
    console_dir: Option<PathBuf>,
    /// Requests per second one token may sustain; above it RESOURCE_EXHAUSTED (rate_limited).
    /// 0 for no limit.
    #[arg(long, env = "WHISTLE_QUERY_RATE_LIMIT", default_value_t = whistle_query::DEFAULT_RATE)]
    rate_limit: f64,
    /// Requests one token may send at once above --rate-limit. 0 for no limit.
    #[arg(long, env = "WHISTLE_QUERY_RATE_BURST", default_value_t = whistle_query::DEFAULT_BURST)]
    rate_burst: u32,
    /// WatchEvents streams one token may hold open at once. 0 for no limit.
    #[arg(long, env = "WHISTLE_QUERY_MAX_WATCH_STREAMS", default_value_t = whistle_query::DEFAULT_WATCH_STREAMS)]
    max_watch_streams: u32,
    /// Keyring file opening residents' contacts (dispatch's; see docs/operations.md). Without it
    /// every contact is shown masked.
    #[arg(long, env = "WHISTLE_CONTACT_KEYS")]
    contact_keys: Option<PathBuf>,
    /// Lookups and answers per second one client may sustain on the resident's page
    /// (`/track`); above it 429. 0 for no limit.
    #[arg(long, env = "WHISTLE_TRACK_RATE", default_value_t = whistle_query::tracking::DEFAULT_RATE)]
    track_rate: f64,
    /// Lookups and answers one client may make at once above --track-rate.
    #[arg(long, env = "WHISTLE_TRACK_BURST", default_value_t = whistle_query::tracking::DEFAULT_BURST)]
    track_burst: u32,
    /// Addresses of the load balancers in front of this service (comma-separated): a request
    /// from one of them counts against the client it names last in X-Forwarded-For.
    #[arg(long, env = "WHISTLE_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxies: Vec<std::net::IpAddr>,
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
        listen: args.listen,
        database_url: args.database_url,
        replica_database_url: args.replica_database_url,
        max_replica_lag_ms: args.max_replica_lag_ms,
        nats_url: args.nats_url,
        nkey_file: args.nats_nkey_file,
        callout_nkey_file: args.callout_nkey_file,
        callout_issuer_file: args.callout_issuer_file,
        callout_revoker_file: args.callout_revoker_file,
        callout_recheck: std::time::Duration::from_secs(args.callout_recheck_secs),
        policy: args.policy,
        max_db_connections: args.max_db_connections,
        max_heavy_reads: args.max_heavy_reads,
        max_board_reads: args.max_board_reads,
        watch_buffer: args.watch_buffer,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        console_dir: args.console_dir,
        rate_limit: args.rate_limit,
        rate_burst: args.rate_burst,
        max_watch_streams: args.max_watch_streams,
        contact_keys: args.contact_keys,
        track_rate: args.track_rate,
        track_burst: args.track_burst,
        trusted_proxies: args.trusted_proxies,
        ..Options::default()
    };
    let service = match args.bench_clock {
        Some(clock) => {
            tracing::warn!(%clock, "running on an accelerated benchmark clock");
            options.build_with_clock(std::sync::Arc::new(clock)).await
        }
        None => options.build().await,
    }
    .context("starting whistle-query")?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    service.run(shutdown).await.context("whistle-query failed")
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,h2=warn"));
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
    shutdown.cancel();
}
