//! Integration tests: real nats-server, real PostgreSQL, isolated per test.

mod access;
mod aggregates;
mod ceiling;
mod chaos;
mod console;
mod console_api;
mod console_map;
mod console_words;
mod crash;
mod escalation;
mod fill;
mod harness;
mod intake;
mod limits;
mod notifications;
mod photos;
mod privacy;
mod query;
mod rejections;
mod report;
mod scoreboard;
mod shutdown;
mod store;
mod trust;
mod watch;
