//! Dispatch and the query service running in this process, as the stack starts them.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

/// Dispatch settings for tests: quick redelivery so crash tests finish fast.
pub fn dispatch_options(nats_url: String, database_url: String) -> whistle_dispatch::Options {
    whistle_dispatch::Options {
        nats_url,
        database_url,
        ack_wait: Duration::from_secs(2),
        retry_delay: Duration::from_millis(200),
        relay_poll_interval: Duration::from_millis(100),
        timer_poll_interval: Duration::from_millis(50),
        max_db_connections: 4,
        ..Default::default()
    }
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

/// A dispatch service running in this process.
pub struct Dispatch {
    pub shutdown: CancellationToken,
    /// Where it serves `/metrics`, `/livez` and `/readyz`, when its options ask for it.
    pub http_addr: Option<SocketAddr>,
    task: tokio::task::JoinHandle<Result<(), whistle_dispatch::Error>>,
}

impl Dispatch {
    /// With `clock`: a manual one makes deadlines fire when the test says so, without sleeping.
    pub async fn start(
        options: whistle_dispatch::Options,
        clock: Arc<dyn whistle_wire::Clock>,
    ) -> Dispatch {
        init_logs();
        let service = options
            .build_with_clock(clock)
            .await
            .expect("building dispatch");
        let http_addr = service.http_addr();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(service.run(shutdown.clone()));
        Dispatch {
            shutdown,
            http_addr,
            task,
        }
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

/// A query service running in this process.
pub struct Query {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), whistle_query::Error>>,
    /// Its live aggregates, to wait until they caught up with the stream.
    pub aggregates: whistle_query::Aggregates,
}

impl Query {
    pub async fn start(
        options: whistle_query::Options,
        clock: Arc<dyn whistle_wire::Clock>,
    ) -> Query {
        let service = options
            .build_with_clock(clock)
            .await
            .expect("building query");
        let addr = service.local_addr();
        let aggregates = service.aggregates();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(service.run(shutdown.clone()));
        Query {
            addr,
            shutdown,
            task,
            aggregates,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Graceful stop, which must be clean.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task
            .await
            .expect("query task")
            .expect("query ran cleanly");
    }
}
