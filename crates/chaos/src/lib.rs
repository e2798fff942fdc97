//! The fault-injection suite of Whistle: the runner owns a private nats-server and a private
//! PostgreSQL cluster (started through `whistle-testkit`), runs dispatch replicas as child processes, publishes uniquely identified
//! reports while it kills, pauses and restarts things, then reads everything back and hands the
//! history to a pure Jepsen-style [`checker`]. `whistle chaos` runs it long; the integration test
//! `chaos::faults_of_every_kind_lose_and_duplicate_nothing` runs it short. See docs/reliability.md.

pub mod checker;
pub mod runner;

pub use checker::{check, History, Verdict};
pub use runner::{plan, run, Config, Fault, Launcher, Report, Upgrade};
