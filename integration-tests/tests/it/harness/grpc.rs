//! gRPC clients of the query service.

pub use whistle_proto::Bearer;

pub type Authed =
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>;

/// A `CommandCenter` client of the query service at `url` sending `token`.
pub async fn command_center(
    url: &str,
    token: &str,
) -> whistle_proto::v1::command_center_client::CommandCenterClient<Authed> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .expect("a query URL")
        .connect()
        .await
        .expect("connecting to the query service");
    whistle_proto::v1::command_center_client::CommandCenterClient::with_interceptor(
        channel,
        Bearer::new(token).expect("an ASCII token"),
    )
}

/// A `CommandCenter` client on an existing channel sending `token`.
pub fn command_center_on(
    channel: tonic::transport::Channel,
    token: &str,
) -> whistle_proto::v1::command_center_client::CommandCenterClient<Authed> {
    whistle_proto::v1::command_center_client::CommandCenterClient::with_interceptor(
        channel,
        Bearer::new(token).expect("an ASCII token"),
    )
}

/// A `Reporting` client of the stack's query service sending `token`.
pub async fn reporting(
    stack: &super::Stack,
    token: &str,
) -> whistle_proto::v1::reporting_client::ReportingClient<Authed> {
    whistle_proto::v1::reporting_client::ReportingClient::with_interceptor(
        stack.channel(),
        Bearer::new(token).expect("an ASCII token"),
    )
}

/// A `Dispatch` client of the stack's query service sending `token`.
pub async fn dispatch(
    stack: &super::Stack,
    token: &str,
) -> whistle_proto::v1::dispatch_client::DispatchClient<Authed> {
    whistle_proto::v1::dispatch_client::DispatchClient::with_interceptor(
        stack.channel(),
        Bearer::new(token).expect("an ASCII token"),
    )
}

/// A command for the `Dispatch` door: a fresh command id, no actor (the door takes it from the
/// token), any version.
pub fn door_command(
    incident: uuid::Uuid,
    body: whistle_proto::v1::command::Body,
) -> whistle_proto::v1::Command {
    whistle_proto::v1::Command {
        command_id: uuid::Uuid::now_v7().to_string(),
        actor_id: String::new(),
        incident_id: incident.to_string(),
        expected_version: 0,
        body: Some(body),
    }
}
