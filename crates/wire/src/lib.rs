//! whistle-wire, the contract between Whistle's processes and with outside clients: the JetStream
//! stream and consumer names, every subject (built and parsed here and nowhere else), the header
//! names, the command verbs and event kinds, the domain ↔ `whistle.v1` conversions, the injected
//! clock, policy loading, and the one client that sends commands to whistle-dispatch.
//!
//! The service crates depend on this one, never on each other: the query service and the CLI speak
//! to dispatch only through what is defined here. `docs/ARCHITECTURE.md`'s contract table is checked
//! against it by `tests/contract.rs`.

pub mod client;
pub mod clock;
pub mod connect;
pub mod convert;
mod error;
pub mod headers;
pub mod kind;
pub mod names;
pub mod policy;
pub mod subject;
pub mod verb;

pub use client::CommandClient;
pub use clock::{Clock, ManualClock, ScaledClock, SystemClock};
pub use connect::Credentials;
pub use error::{chain, Error, PolicyError};
pub use verb::Verb;
