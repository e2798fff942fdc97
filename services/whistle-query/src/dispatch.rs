//! `whistle.v1.Dispatch`: operator and liaison commands over gRPC, forwarded to whistle-dispatch
//! as NATS requests on `whistle.cmd.{verb}`. This service never applies a command itself; the
//! acting person is the token's, so a client cannot act as someone else.

use std::time::Duration;

use prost::Message as _;
use tonic::{Request, Response, Status};
use whistle_dispatch::commands::{verb, SUBJECT_PREFIX};
use whistle_proto::v1::{self, command_reply::Outcome, CommandErrorCode};

use crate::{auth::Auth, generated::dispatch_server, Error, Result};

/// How long to wait for dispatch's answer. A command that timed out may still have been applied:
/// the client retries with the same `command_id` and gets the first outcome.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub(crate) struct Dispatch {
    pub auth: Auth,
    pub nats: async_nats::Client,
}

impl Dispatch {
    async fn forward(
        &self,
        rpc_verb: &str,
        request: Request<v1::Command>,
    ) -> Result<v1::CommandOk> {
        let principal = self.auth.principal(&request).await?;
        let actor = principal.actor()?;
        let mut command = request.into_inner();
        match &command.body {
            None => {
                return Err(Error::invalid(format!(
                    "the command has no body: this RPC takes `{rpc_verb}`"
                )))
            }
            Some(body) if verb(body) != rpc_verb => {
                return Err(Error::invalid(format!(
                    "this RPC takes a `{rpc_verb}` body, not `{}`",
                    verb(body)
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

        let request = async_nats::Request::new()
            .payload(command.encode_to_vec().into())
            .timeout(Some(REPLY_TIMEOUT));
        let reply = self
            .nats
            .send_request(format!("{SUBJECT_PREFIX}.{rpc_verb}"), request)
            .await
            .map_err(|e| {
                use async_nats::RequestErrorKind::*;
                Error::Unavailable(match e.kind() {
                    NoResponders => "no dispatch service is answering commands".to_owned(),
                    TimedOut => format!(
                        "dispatch did not answer within {}s; retry with the same command_id",
                        REPLY_TIMEOUT.as_secs()
                    ),
                    _ => format!("sending the command: {e}"),
                })
            })?;
        let reply = v1::CommandReply::decode(reply.payload)
            .map_err(|e| Error::Corrupt(format!("dispatch's reply does not decode: {e}")))?;
        match reply.outcome {
            Some(Outcome::Ok(ok)) => Ok(ok),
            Some(Outcome::Error(error)) => Err(Error::Refused(
                CommandErrorCode::try_from(error.code).unwrap_or(CommandErrorCode::Unspecified),
                error.message,
            )),
            None => Err(Error::Corrupt("dispatch replied with no outcome".into())),
        }
    }
}

macro_rules! forward {
    ($($method:ident => $verb:literal),* $(,)?) => {
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
    accept => "accept",
    r#return => "return",
    resolve => "resolve",
    escalate => "escalate",
    verify => "verify",
    supervise => "supervise",
    reassign => "reassign",
    comment => "comment",
}
