//! Event kinds: the `kind` of a `whistle.v1.Event` and the last tokens of its subject. Kinds are
//! dotted (`incident.reported`) so `whistle.event.*.*.incident.reported` filters by kind; `task.*`
//! kinds go on `whistle.task.{department}.{kind}`, the others on
//! `whistle.event.{district}.{street}.{kind}`.

/// Intake opened an incident.
pub const INCIDENT_REPORTED: &str = "incident.reported";
/// Intake refused a report (the original bytes go to `WHISTLE_REJECTED`).
pub const REPORT_REJECTED: &str = "report.rejected";
/// Intake attached a duplicate report to an open incident.
pub const REPORT_ATTACHED: &str = "report.attached";
/// Intake saw many reports of one category in one community.
pub const CLUSTER_ALERT: &str = "cluster.alert";

pub const INCIDENT_ESCALATED: &str = "incident.escalated";
pub const INCIDENT_WHISTLED: &str = "incident.whistled";
pub const INCIDENT_RESOLVED: &str = "incident.resolved";
pub const INCIDENT_VERIFIED: &str = "incident.verified";
pub const INCIDENT_REOPENED: &str = "incident.reopened";
pub const INCIDENT_CLOSED: &str = "incident.closed";
pub const INCIDENT_CLOSED_UNVERIFIED: &str = "incident.closed_unverified";
pub const INCIDENT_OVERDUE: &str = "incident.overdue";
pub const INCIDENT_SUPERVISED: &str = "incident.supervised";
pub const INCIDENT_COMMENTED: &str = "incident.commented";
/// A provisional working-day deadline recounted on a newly loaded holiday calendar.
pub const INCIDENT_RESCHEDULED: &str = "incident.rescheduled";
/// A 延期申请 waits for the level above.
pub const INCIDENT_EXTENSION_REQUESTED: &str = "incident.extension_requested";
/// The deadline moved later.
pub const INCIDENT_EXTENSION_APPROVED: &str = "incident.extension_approved";
/// Denied, or unanswered in time (counted as denied).
pub const INCIDENT_EXTENSION_DENIED: &str = "incident.extension_denied";
/// The asker finished before an answer.
pub const INCIDENT_EXTENSION_WITHDRAWN: &str = "incident.extension_withdrawn";
/// 申请挂账: a case proposed for the long-term ledger, waiting for the approving level.
pub const INCIDENT_LEDGER_PROPOSED: &str = "incident.ledger_proposed";
/// Entered in the ledger: its deadlines stop until the review.
pub const INCIDENT_LEDGER_APPROVED: &str = "incident.ledger_approved";
/// The proposal was denied; handling goes on.
pub const INCIDENT_LEDGER_DENIED: &str = "incident.ledger_denied";
/// The incident was resolved while proposed or in the ledger.
pub const INCIDENT_LEDGER_WITHDRAWN: &str = "incident.ledger_withdrawn";
/// The review date came: the case is back with the approving level.
pub const INCIDENT_LEDGER_REVIEW_DUE: &str = "incident.ledger_review_due";
/// Reviewed and kept in the ledger until a new review date.
pub const INCIDENT_LEDGER_EXTENDED: &str = "incident.ledger_extended";
/// Reviewed and returned to handling with a fresh deadline.
pub const INCIDENT_LEDGER_RETURNED: &str = "incident.ledger_returned";
/// 主动治理: an operator adopted a hotspot topic as a proactive case (an incident with no report).
pub const INCIDENT_ADOPTED: &str = "incident.adopted";
/// A proactive case's milestone was marked done.
pub const INCIDENT_MILESTONE_DONE: &str = "incident.milestone_done";
/// 领导督办: a leader paired with the incident's street or community endorsed its supervision.
pub const INCIDENT_ENDORSED: &str = "incident.endorsed";
pub const TASK_DISPATCHED: &str = "task.dispatched";
pub const TASK_ACCEPTED: &str = "task.accepted";
pub const TASK_RETURNED: &str = "task.returned";
pub const TASK_REASSIGNED: &str = "task.reassigned";
pub const TASK_RESOLVED: &str = "task.resolved";
pub const TASK_SUPERVISED: &str = "task.supervised";
pub const TASK_REMINDED: &str = "task.reminded";
/// 派单异议: the department says the task is not its responsibility and proposes another.
pub const TASK_DISPUTED: &str = "task.disputed";
/// The dispatching level upheld the dispute; `task.reassigned` follows.
pub const TASK_DISPUTE_UPHELD: &str = "task.dispute_upheld";
/// The dispatching level rejected the dispute; the task stays.
pub const TASK_DISPUTE_REJECTED: &str = "task.dispute_rejected";
/// The task reported in, was returned or reassigned, or the incident resolved before arbitration.
pub const TASK_DISPUTE_WITHDRAWN: &str = "task.dispute_withdrawn";
/// 提交协办意见: an assisting department submitted its part.
pub const TASK_ASSIST_SUBMITTED: &str = "task.assist_submitted";
/// 免于协办: the dispatching level released an assisting department.
pub const TASK_ASSIST_RELEASED: &str = "task.assist_released";
/// 社区派单: a community offered an incident or a small wish to its volunteers.
pub const OFFER_CREATED: &str = "offer.created";
/// 抢单: a member claimed an offer.
pub const OFFER_CLAIMED: &str = "offer.claimed";
/// The claimant gave the offer back.
pub const OFFER_RELEASED: &str = "offer.released";
/// The claim's deadline passed: the offer is the community's again.
pub const OFFER_RETURNED: &str = "offer.returned";
/// The claimant marked the work done.
pub const OFFER_DONE: &str = "offer.done";
/// The community confirmed the work: the service ledger gained its hours and points.
pub const OFFER_CONFIRMED: &str = "offer.confirmed";
/// The resident's rating, recorded by the community.
pub const OFFER_RATED: &str = "offer.rated";
/// The community took the offer back.
pub const OFFER_WITHDRAWN: &str = "offer.withdrawn";

/// A device flapped and was flagged for maintenance (docs/devices.md).
pub const DEVICE_FLAGGED: &str = "device.flagged";

/// The kinds intake publishes.
pub const INTAKE: [&str; 5] = [
    INCIDENT_REPORTED,
    REPORT_REJECTED,
    REPORT_ATTACHED,
    CLUSTER_ALERT,
    DEVICE_FLAGGED,
];

/// The kinds the state machine publishes (the domain's `incident::EVENT_KINDS`, checked below).
pub const ENGINE: [&str; 38] = [
    INCIDENT_ESCALATED,
    INCIDENT_WHISTLED,
    INCIDENT_RESOLVED,
    INCIDENT_VERIFIED,
    INCIDENT_REOPENED,
    INCIDENT_CLOSED,
    INCIDENT_CLOSED_UNVERIFIED,
    INCIDENT_OVERDUE,
    INCIDENT_SUPERVISED,
    INCIDENT_COMMENTED,
    INCIDENT_RESCHEDULED,
    INCIDENT_EXTENSION_REQUESTED,
    INCIDENT_EXTENSION_APPROVED,
    INCIDENT_EXTENSION_DENIED,
    INCIDENT_EXTENSION_WITHDRAWN,
    INCIDENT_LEDGER_PROPOSED,
    INCIDENT_LEDGER_APPROVED,
    INCIDENT_LEDGER_DENIED,
    INCIDENT_LEDGER_WITHDRAWN,
    INCIDENT_LEDGER_REVIEW_DUE,
    INCIDENT_LEDGER_EXTENDED,
    INCIDENT_LEDGER_RETURNED,
    INCIDENT_ADOPTED,
    INCIDENT_MILESTONE_DONE,
    INCIDENT_ENDORSED,
    TASK_DISPATCHED,
    TASK_ACCEPTED,
    TASK_RETURNED,
    TASK_REASSIGNED,
    TASK_RESOLVED,
    TASK_SUPERVISED,
    TASK_REMINDED,
    TASK_DISPUTED,
    TASK_DISPUTE_UPHELD,
    TASK_DISPUTE_REJECTED,
    TASK_DISPUTE_WITHDRAWN,
    TASK_ASSIST_SUBMITTED,
    TASK_ASSIST_RELEASED,
];

/// The kinds of the volunteers' offers (the domain's `volunteer::EVENT_KINDS`, checked below),
/// published on `whistle.event.{district}.{street}.{kind}` of the offer's community.
pub const OFFER: [&str; 8] = [
    OFFER_CREATED,
    OFFER_CLAIMED,
    OFFER_RELEASED,
    OFFER_RETURNED,
    OFFER_DONE,
    OFFER_CONFIRMED,
    OFFER_RATED,
    OFFER_WITHDRAWN,
];

/// Every kind on `WHISTLE_EVENTS`.
pub fn all() -> impl Iterator<Item = &'static str> {
    INTAKE.into_iter().chain(ENGINE).chain(OFFER)
}

/// Whether events of `kind` go on `whistle.task.{department}.{kind}`.
pub fn is_task(kind: &str) -> bool {
    kind.starts_with("task.")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn the_engine_kinds_are_the_domains() {
        let ours: BTreeSet<_> = ENGINE.into_iter().collect();
        let domain: BTreeSet<_> = whistle_domain::incident::EVENT_KINDS.into_iter().collect();
        assert_eq!(ours, domain);
    }

    #[test]
    fn the_offer_kinds_are_the_domains() {
        let ours: BTreeSet<_> = OFFER.into_iter().collect();
        let domain: BTreeSet<_> = whistle_domain::volunteer::EVENT_KINDS.into_iter().collect();
        assert_eq!(ours, domain);
    }

    #[test]
    fn kinds_are_unique_and_dotted() {
        let all: Vec<_> = all().collect();
        let unique: BTreeSet<_> = all.iter().collect();
        assert_eq!(unique.len(), all.len());
        for kind in all {
            let (family, name) = kind.split_once('.').expect("dotted");
            assert!(
                !family.is_empty() && !name.is_empty() && !name.contains('.'),
                "{kind}"
            );
        }
    }
}
