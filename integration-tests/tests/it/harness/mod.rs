//! The one test harness: [`Stack`] and its builder start a private nats-server and database
//! (through `whistle-testkit`) and the services a test asks for; the rest are the helpers tests
//! share (reports, command bodies, stream reads, waits, raw HTTP).

mod bodies;
mod db;
mod grpc;
mod helpers;
mod people;
mod places;
mod reports;
mod services;
mod stack;
mod streams;
mod web;

pub use bodies::*;
pub use db::*;
pub use grpc::*;
pub use people::*;
pub use places::*;
pub use reports::*;
pub use services::*;
pub use stack::*;
pub use streams::*;
pub use web::*;
pub use whistle_testkit::{NatsServer, TempDir, TestDb};

/// How long a test waits for the system to get somewhere before it fails.
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(20);
