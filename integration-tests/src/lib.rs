//! End-to-end tests of Whistle against a real nats-server and a real PostgreSQL; the tests live
//! in `tests/it/` (one test binary made of modules).
//!
//! Each test starts its own nats-server (from `WHISTLE_NATS_SERVER_BIN` or `nats-server` on the
//! PATH) on a free port with its own JetStream directory, and creates its own database on the
//! server named by `DATABASE_URL`, so tests never see each other's data.
