//! The command verbs: the last token of `whistle.cmd.{verb}` and the name of a command's body.

use std::{fmt, str::FromStr};

use whistle_proto::v1::command::Body;

use crate::Error;

/// What a command does; one NATS endpoint each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    Accept,
    Return,
    Resolve,
    Escalate,
    Verify,
    Supervise,
    Reassign,
    Comment,
    /// 延期申请.
    RequestExtension,
    /// The answer to a 延期申请.
    DecideExtension,
    /// 派单异议.
    Dispute,
    /// The arbitration of a 派单异议.
    DecideDispute,
    /// 提交协办意见.
    SubmitAssist,
    /// 免于协办.
    ReleaseAssist,
    /// 申请挂账.
    ProposeLedger,
    /// The approval or denial of a 挂账 proposal.
    DecideLedger,
    /// The review of a ledger case: kept with a new review date, or returned to handling.
    ReviewLedger,
    /// 入职: an operator onboards a person posted in their area.
    OnboardPerson,
    /// 信息变更/调岗: an operator changes a person's name, phone, role or post.
    ChangePerson,
    /// 离岗: an operator offboards a person, handing what they hold to a successor.
    OffboardPerson,
    /// 主动治理: an operator adopts a hotspot topic as a proactive case (opens an incident).
    Adopt,
    /// A proactive case's milestone done.
    CompleteMilestone,
    /// 社区派单: the community offers an incident or a small wish (微心愿) to its volunteers.
    OfferToVolunteers,
    /// 抢单/认领: a Party member claims an offer.
    ClaimOffer,
    /// The claimant gives an offer back.
    ReleaseOffer,
    /// The claimant marks the work done.
    CompleteOffer,
    /// The community confirms the work (hours and points accrue).
    ConfirmOffer,
    /// The community records the resident's rating.
    RateOffer,
    /// The community takes an offer back.
    WithdrawOffer,
    /// 领导督办: a paired leader endorses the supervision of an incident of their areas.
    Endorse,
}

impl Verb {
    /// Every verb, in the order dispatch registers its endpoints.
    pub const ALL: [Verb; 30] = [
        Verb::Accept,
        Verb::Return,
        Verb::Resolve,
        Verb::Escalate,
        Verb::Verify,
        Verb::Supervise,
        Verb::Reassign,
        Verb::Comment,
        Verb::RequestExtension,
        Verb::DecideExtension,
        Verb::Dispute,
        Verb::DecideDispute,
        Verb::SubmitAssist,
        Verb::ReleaseAssist,
        Verb::ProposeLedger,
        Verb::DecideLedger,
        Verb::ReviewLedger,
        Verb::OnboardPerson,
        Verb::ChangePerson,
        Verb::OffboardPerson,
        Verb::Adopt,
        Verb::CompleteMilestone,
        Verb::OfferToVolunteers,
        Verb::ClaimOffer,
        Verb::ReleaseOffer,
        Verb::CompleteOffer,
        Verb::ConfirmOffer,
        Verb::RateOffer,
        Verb::WithdrawOffer,
        Verb::Endorse,
    ];

    /// The volunteer verbs, which act on an offer rather than an incident (docs/party.md).
    pub const VOLUNTEER: [Verb; 7] = [
        Verb::OfferToVolunteers,
        Verb::ClaimOffer,
        Verb::ReleaseOffer,
        Verb::CompleteOffer,
        Verb::ConfirmOffer,
        Verb::RateOffer,
        Verb::WithdrawOffer,
    ];

    /// What a Party member sends, as themselves; the community's staff never does.
    pub const MEMBER: [Verb; 3] = [Verb::ClaimOffer, Verb::ReleaseOffer, Verb::CompleteOffer];

    /// What the community's staff sends about offers; a member never does.
    pub const COMMUNITY: [Verb; 4] = [
        Verb::OfferToVolunteers,
        Verb::ConfirmOffer,
        Verb::RateOffer,
        Verb::WithdrawOffer,
    ];

    pub fn is_volunteer(self) -> bool {
        Verb::VOLUNTEER.contains(&self)
    }

    /// The verbs of people's lifecycle, which act on no incident (operators only).
    pub const PEOPLE: [Verb; 3] = [
        Verb::OnboardPerson,
        Verb::ChangePerson,
        Verb::OffboardPerson,
    ];

    pub fn is_people(self) -> bool {
        Verb::PEOPLE.contains(&self)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Accept => "accept",
            Verb::Return => "return",
            Verb::Resolve => "resolve",
            Verb::Escalate => "escalate",
            Verb::Verify => "verify",
            Verb::Supervise => "supervise",
            Verb::Reassign => "reassign",
            Verb::Comment => "comment",
            Verb::RequestExtension => "request_extension",
            Verb::DecideExtension => "decide_extension",
            Verb::Dispute => "dispute",
            Verb::DecideDispute => "decide_dispute",
            Verb::SubmitAssist => "submit_assist",
            Verb::ReleaseAssist => "release_assist",
            Verb::ProposeLedger => "propose_ledger",
            Verb::DecideLedger => "decide_ledger",
            Verb::ReviewLedger => "review_ledger",
            Verb::OnboardPerson => "onboard_person",
            Verb::ChangePerson => "change_person",
            Verb::OffboardPerson => "offboard_person",
            Verb::Adopt => "adopt",
            Verb::CompleteMilestone => "complete_milestone",
            Verb::OfferToVolunteers => "offer_to_volunteers",
            Verb::ClaimOffer => "claim_offer",
            Verb::ReleaseOffer => "release_offer",
            Verb::CompleteOffer => "complete_offer",
            Verb::ConfirmOffer => "confirm_offer",
            Verb::RateOffer => "rate_offer",
            Verb::WithdrawOffer => "withdraw_offer",
            Verb::Endorse => "endorse",
        }
    }

    /// The verb a command body is sent with.
    pub fn of(body: &Body) -> Verb {
        match body {
            Body::Accept(_) => Verb::Accept,
            Body::Return(_) => Verb::Return,
            Body::Resolve(_) => Verb::Resolve,
            Body::Escalate(_) => Verb::Escalate,
            Body::Verify(_) => Verb::Verify,
            Body::Supervise(_) => Verb::Supervise,
            Body::Reassign(_) => Verb::Reassign,
            Body::Comment(_) => Verb::Comment,
            Body::RequestExtension(_) => Verb::RequestExtension,
            Body::DecideExtension(_) => Verb::DecideExtension,
            Body::Dispute(_) => Verb::Dispute,
            Body::DecideDispute(_) => Verb::DecideDispute,
            Body::SubmitAssist(_) => Verb::SubmitAssist,
            Body::ReleaseAssist(_) => Verb::ReleaseAssist,
            Body::ProposeLedger(_) => Verb::ProposeLedger,
            Body::DecideLedger(_) => Verb::DecideLedger,
            Body::ReviewLedger(_) => Verb::ReviewLedger,
            Body::OnboardPerson(_) => Verb::OnboardPerson,
            Body::ChangePerson(_) => Verb::ChangePerson,
            Body::OffboardPerson(_) => Verb::OffboardPerson,
            Body::Adopt(_) => Verb::Adopt,
            Body::CompleteMilestone(_) => Verb::CompleteMilestone,
            Body::OfferToVolunteers(_) => Verb::OfferToVolunteers,
            Body::ClaimOffer(_) => Verb::ClaimOffer,
            Body::ReleaseOffer(_) => Verb::ReleaseOffer,
            Body::CompleteOffer(_) => Verb::CompleteOffer,
            Body::ConfirmOffer(_) => Verb::ConfirmOffer,
            Body::RateOffer(_) => Verb::RateOffer,
            Body::WithdrawOffer(_) => Verb::WithdrawOffer,
            Body::Endorse(_) => Verb::Endorse,
        }
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Verb {
    type Err = Error;

    fn from_str(s: &str) -> Result<Verb, Error> {
        Verb::ALL
            .into_iter()
            .find(|verb| verb.as_str() == s)
            .ok_or_else(|| Error::UnknownVerb(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use whistle_proto::v1;

    use super::*;

    #[test]
    fn verbs_round_trip_through_their_names() {
        for verb in Verb::ALL {
            assert_eq!(verb.as_str().parse::<Verb>().unwrap(), verb);
        }
        assert!(matches!("Accept".parse::<Verb>(), Err(Error::UnknownVerb(v)) if v == "Accept"));
    }

    #[test]
    fn a_body_names_its_verb() {
        assert_eq!(Verb::of(&Body::Accept(v1::Accept::default())), Verb::Accept);
        assert_eq!(
            Verb::of(&Body::Comment(v1::Comment { text: "x".into() })),
            Verb::Comment
        );
    }
}
