//! The Open311 GeoReport v2 door (docs/open311.md): other systems — a third-party app, an
//! existing Open311 client, the city's 12345 hotline — file residents' problems and follow them
//! without knowing Whistle. Served by the query service's listener under [`BASE`].
//!
//! A key (`api_key`) is a token of role `open311` or `hotline` (`whistle token create`), scoped
//! to an area: it files service requests inside it and reads that area's, descriptions redacted.
//! A service request is a report: filed here it is published to `WHISTLE_REPORTS` exactly as
//! `Reporting.SubmitReport` publishes a grid worker's (reports.rs), on the subject of the grid
//! whose centre is nearest, in the name of that grid's worker, who follows it up, and tagged with
//! its channel. **Invariant:** this door writes nothing; intake decides as for any report.

mod catalogue;
mod door;
mod format;
mod redact;
mod requests;
mod submit;

pub(crate) use door::{router, Open311};
