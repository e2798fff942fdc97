//! End-to-end tests of Whistle against a real nats-server and a real PostgreSQL; the tests live
//! in `tests/it/` (one test binary made of modules).
//!
//! Every test starts what it needs through the one harness, `tests/it/harness`: a line such as
//! `let stack = Stack::start().await;` gives it its own nats-server (from
//! `WHISTLE_NATS_SERVER_BIN` or `nats-server` on the PATH) on a free port with its own JetStream
//! directory, and its own database on the server named by `DATABASE_URL` (both started by
//! `whistle-testkit`), so tests never see each other's data.
