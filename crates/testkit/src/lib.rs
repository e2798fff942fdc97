//! The servers Whistle's tests start for themselves: a private nats-server with JetStream on a
//! free loopback port (configured by the caller, restartable, killed on drop), a fresh migrated
//! and seeded PostgreSQL database per test on the server of `DATABASE_URL`, with its own owner,
//! dispatch and query roles (dropped on drop), and
//! a private PostgreSQL cluster the fault suite can crash. The integration harness and the chaos
//! suite both start their servers here, so there is one readiness wait and one port picker.

mod contact_keys;
mod database;
mod error;
mod nats;
mod pg_cluster;
mod port;
mod temp_dir;

pub use contact_keys::{write_contact_keyring, write_keyring, TEST_KEY_ID};
pub use database::{create_database, create_database_with, with_database, Database, TestDb};
pub use error::Error;
pub use nats::{NatsConfig, NatsServer};
pub use pg_cluster::{find_pg_bindir, give_to_cluster_user, PgCluster};
pub use port::free_port;
pub use temp_dir::TempDir;
