//! The one way to send a command: a `whistle.v1.Command` on `whistle.cmd.{verb}.{actor}`, answered by
//! whistle-dispatch with a `whistle.v1.CommandReply`.

use std::time::Duration;

use async_nats::RequestErrorKind;
use prost::Message as _;
use whistle_proto::v1;

use crate::{headers, subject, Error, Verb};

/// Sends commands to whistle-dispatch over a NATS connection.
#[derive(Debug, Clone)]
pub struct CommandClient {
    nats: async_nats::Client,
    timeout: Duration,
}

impl CommandClient {
    /// How long a command waits for dispatch's reply unless told otherwise. A command that timed
    /// out may still have been applied: a retry with the same `command_id` gets the first outcome.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    pub fn new(nats: async_nats::Client) -> CommandClient {
        CommandClient {
            nats,
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }

    pub fn with_timeout(self, timeout: Duration) -> CommandClient {
        CommandClient { timeout, ..self }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends `command` on the subject of its body's verb and its actor, and waits for the reply.
    /// The connection must be allowed the actor's subject (its own person, or the admin's). A
    /// refusal is a reply (its outcome is an error), not an [`Error`].
    pub async fn send(&self, command: &v1::Command) -> Result<v1::CommandReply, Error> {
        self.request(command, None).await
    }

    /// [`CommandClient::send`] on behalf of the holder of token `token_id`, named in the
    /// [`headers::TOKEN_ID`] header for dispatch's audit log.
    pub async fn send_for_token(
        &self,
        command: &v1::Command,
        token_id: &str,
    ) -> Result<v1::CommandReply, Error> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(headers::TOKEN_ID, token_id);
        self.request(command, Some(headers)).await
    }

    async fn request(
        &self,
        command: &v1::Command,
        headers: Option<async_nats::HeaderMap>,
    ) -> Result<v1::CommandReply, Error> {
        let body = command.body.as_ref().ok_or(Error::NoBody)?;
        if !subject::is_person_token(&command.actor_id) {
            return Err(Error::Actor(command.actor_id.clone()));
        }
        let subject = subject::command(Verb::of(body), &command.actor_id);
        let mut request = async_nats::Request::new()
            .payload(command.encode_to_vec().into())
            .timeout(Some(self.timeout));
        if let Some(headers) = headers {
            request = request.headers(headers);
        }
        let message = self
            .nats
            .send_request(subject.clone(), request)
            .await
            .map_err(|source| match source.kind() {
                RequestErrorKind::NoResponders => Error::NoResponders {
                    subject: subject.clone(),
                    source,
                },
                RequestErrorKind::TimedOut => Error::TimedOut {
                    subject: subject.clone(),
                    timeout: self.timeout,
                    source,
                },
                _ => Error::Request {
                    subject: subject.clone(),
                    source,
                },
            })?;
        v1::CommandReply::decode(message.payload)
            .map_err(|source| Error::Decode { subject, source })
    }
}
