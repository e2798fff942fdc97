//! The escalation engine end to end: reports, commands over NATS (`whistle.cmd.*`), durable
//! timers driven by a manual clock, events in WHISTLE_EVENTS, state in PostgreSQL.

mod assisting;
mod bodies;
mod disputes;
mod extensions;
mod ledger;
mod lifecycle;
mod service;
mod timers;
