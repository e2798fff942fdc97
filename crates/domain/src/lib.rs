//! The pure domain model of Whistle: identifiers, the org tree, the Ordos dataset, the dispatch
//! policy and the incident state machine. It does not check reports on the wire: that is
//! dispatch's `validate` module, which parses them into these types.
//!
//! No I/O and no clock: callers pass `now` in. Everything here is deterministic and unit-tested;
//! the store, dispatch and CLI crates build on it.

#[macro_use]
mod named;

pub mod calendar;
mod codes;
pub mod contact;
pub mod devices;
pub mod hotspot;
pub mod incident;
pub mod leaders;
pub mod ordos;
mod org;
pub mod org_sheets;
pub mod photo;
pub mod policy;
pub mod volunteer;

pub use codes::{AreaCode, CategoryCode, DepartmentCode, InvalidCode, PersonId, ReportId};
pub use org::{
    Department, DepartmentKind, Level, OrgDataset, OrgError, OrgIndex, OrgUnit, Person, Role,
};
