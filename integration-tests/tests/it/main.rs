//! Integration tests: real nats-server, real PostgreSQL, isolated per test.

mod crash;
mod escalation;
mod harness;
mod intake;
mod query;
mod scoreboard;
mod store;
