//! The Party-building layer's volunteers (issue 21, docs/party.md): the 双报到 registry of units'
//! Party organisations, in-service Party members and volunteer teams (`registry.rs`, with the
//! Ordos registry in `ordos.rs`), the offers a community makes to them and their pure state
//! machine (`offer.rs`: 群众点单、社区派单、党员接单), and the service ledger's points and the
//! yearly evaluation of units (`service.rs`). No I/O and no clock, like the rest of the crate.

mod offer;
pub mod ordos;
mod registry;
mod service;
#[cfg(test)]
mod tests;

pub use offer::{
    apply, Accrual, Claimant, Input, NewOffer, Offer, OfferKind, OfferStatus, Refusal, Step,
    EVENT_KINDS, NOTE_MAX, TITLE_MAX,
};
pub use registry::{mask_name, Availability, Member, PartyUnit, Registry, Specialty, Team};
pub use service::{evaluate, points_for, Evaluation, Grade, UnitService};
