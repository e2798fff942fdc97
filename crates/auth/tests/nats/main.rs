//! NATS authentication against a real nats-server (`WHISTLE_NATS_SERVER_BIN`) running the
//! generated configuration, with the callout answering from a real token store (`DATABASE_URL`).

mod access;
mod harness;
mod revocation;
