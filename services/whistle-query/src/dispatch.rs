//! `whistle.v1.Dispatch`: operator and liaison commands over gRPC, forwarded to whistle-dispatch
//! as NATS requests on `whistle.cmd.{verb}.{person}`. This service never applies a command itself; the
//! acting person is the token's, so a client cannot act as someone else.

use tonic::{Request, Response, Status};
use whistle_proto::v1::{self, command_reply::Outcome, CommandErrorCode};
use whistle_wire::{CommandClient, Verb};

use crate::{
    auth::Auth, generated::dispatch_server, photos::Photos, replica::Replica, Error, Result,
};

#[derive(Debug, Clone)]
pub(crate) struct Dispatch {
    pub auth: Auth,
    /// Waits [`CommandClient::DEFAULT_TIMEOUT`]: a command that timed out may still have been
    /// applied, and the client retries with the same `command_id` to get the first outcome.
    pub commands: CommandClient,
    pub photos: Photos,
    /// Told who acted, so their next reads see it (read-your-writes).
    pub replica: Replica,
}

impl Dispatch {
    async fn forward(
        &self,
        rpc_verb: Verb,
        request: Request<v1::Command>,
    ) -> Result<v1::CommandOk> {
        use whistle_store::tokens::Role;
        // Member tokens reach the volunteers' verbs only (docs/party.md); a leader sends 领导督办
        // and comments only, on its paired areas (dispatch checks those).
        let principal = if rpc_verb.is_volunteer() {
            self.auth.volunteer_principal(&request).await?
        } else if matches!(rpc_verb, Verb::Endorse | Verb::Comment) {
            self.auth.principal_or_leader(&request).await?
        } else {
            self.auth.principal(&request).await?
        };
        // Dispatch checks the actor's role against the org tree too; this says it in the
        // token's terms before a request is sent.
        if rpc_verb.is_people() && principal.role != Role::Operator {
            return Err(Error::PermissionDenied(format!(
                "only operator tokens manage people; this is a {} token",
                principal.role.as_str()
            )));
        }
        if rpc_verb == Verb::Adopt && principal.role != Role::Operator {
            return Err(Error::PermissionDenied(format!(
                "only operator tokens adopt topics as proactive cases; this is a {} token",
                principal.role.as_str()
            )));
        }
        if Verb::MEMBER.contains(&rpc_verb) && principal.role != Role::Member {
            return Err(Error::PermissionDenied(format!(
                "only a Party member's token claims, gives back and completes offers; this is a {} token",
                principal.role.as_str()
            )));
        }
        if Verb::COMMUNITY.contains(&rpc_verb) && principal.role != Role::Operator {
            return Err(Error::PermissionDenied(format!(
                "only operator tokens offer, confirm, rate and withdraw; this is a {} token",
                principal.role.as_str()
            )));
        }
        let actor = principal.actor()?;
        let mut command = request.into_inner();
        match &command.body {
            None => {
                return Err(Error::invalid(format!(
                    "the command has no body: this RPC takes `{rpc_verb}`"
                )))
            }
            Some(body) if Verb::of(body) != rpc_verb => {
                return Err(Error::invalid(format!(
                    "this RPC takes a `{rpc_verb}` body, not `{}`",
                    Verb::of(body)
                )))
            }
            Some(_) => {}
        }
        if !command.actor_id.is_empty() && command.actor_id != actor {
            return Err(Error::PermissionDenied(format!(
                "actor_id comes from the token, which acts as {actor}, not {}",
                command.actor_id
            )));
        }
        command.actor_id = actor.to_owned();
        if let Some(v1::command::Body::Resolve(resolve)) = &command.body {
            self.photos.check_stored(&resolve.photo_ids, actor).await?;
        }
        if let Some(v1::command::Body::CompleteOffer(done)) = &command.body {
            self.photos.check_stored(&done.photo_ids, actor).await?;
        }

        // The token goes with the command for the audit log of the people's commands.
        let token_id = principal.token_id.to_string();
        let reply = self
            .commands
            .send_for_token(&command, &token_id)
            .await
            .map_err(|e| match e {
                whistle_wire::Error::NoResponders { .. } => {
                    Error::Unavailable("no dispatch service is answering commands".to_owned())
                }
                whistle_wire::Error::TimedOut { timeout, .. } => Error::Unavailable(format!(
                    "dispatch did not answer within {}s; retry with the same command_id",
                    timeout.as_secs()
                )),
                whistle_wire::Error::Decode { source, .. } => {
                    Error::Corrupt(format!("dispatch's reply does not decode: {source}"))
                }
                e => {
                    Error::Unavailable(format!("sending the command: {}", whistle_wire::chain(&e)))
                }
            })?;
        match reply.outcome {
            Some(Outcome::Ok(ok)) => {
                // Dispatch replies after its commit: the primary is now at or past it.
                self.replica.acted(actor).await;
                Ok(ok)
            }
            Some(Outcome::Error(v1::CommandError {
                message,
                holdings: Some(holdings),
                ..
            })) => Err(Error::SuccessorNeeded(message, holdings)),
            Some(Outcome::Error(error)) => Err(Error::Refused(
                CommandErrorCode::try_from(error.code).unwrap_or(CommandErrorCode::Unspecified),
                error.message,
            )),
            None => Err(Error::Corrupt("dispatch replied with no outcome".into())),
        }
    }
}

macro_rules! forward {
    ($($method:ident => $verb:expr),* $(,)?) => {
        #[tonic::async_trait]
        impl dispatch_server::Dispatch for Dispatch {
            $(
                async fn $method(
                    &self,
                    request: Request<v1::Command>,
                ) -> Result<Response<v1::CommandOk>, Status> {
                    Ok(Response::new(self.forward($verb, request).await?))
                }
            )*
        }
    };
}

forward! {
    accept => Verb::Accept,
    r#return => Verb::Return,
    resolve => Verb::Resolve,
    escalate => Verb::Escalate,
    verify => Verb::Verify,
    supervise => Verb::Supervise,
    reassign => Verb::Reassign,
    comment => Verb::Comment,
    request_extension => Verb::RequestExtension,
    decide_extension => Verb::DecideExtension,
    dispute => Verb::Dispute,
    decide_dispute => Verb::DecideDispute,
    submit_assist => Verb::SubmitAssist,
    release_assist => Verb::ReleaseAssist,
    propose_ledger => Verb::ProposeLedger,
    decide_ledger => Verb::DecideLedger,
    review_ledger => Verb::ReviewLedger,
    endorse => Verb::Endorse,
    onboard_person => Verb::OnboardPerson,
    change_person => Verb::ChangePerson,
    offboard_person => Verb::OffboardPerson,
    adopt => Verb::Adopt,
    complete_milestone => Verb::CompleteMilestone,
    offer_to_volunteers => Verb::OfferToVolunteers,
    claim_offer => Verb::ClaimOffer,
    release_offer => Verb::ReleaseOffer,
    complete_offer => Verb::CompleteOffer,
    confirm_offer => Verb::ConfirmOffer,
    rate_offer => Verb::RateOffer,
    withdraw_offer => Verb::WithdrawOffer,
}
