//! The listener and the service: health, reflection, gRPC-web, shutdown, read-only sessions.

use prost::Message as _;
use tonic::{transport::Channel, Code};
use whistle_proto::v1::{self};
use whistle_store::tokens::Role;

use crate::harness::*;

#[tokio::test]
async fn health_reflection_and_grpc_web_share_the_listener() {
    use tonic_health::pb::{
        health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
    };
    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        ServerReflectionRequest,
    };

    let stack = Stack::command_center().await;
    let url = stack.query_url();

    let channel = Channel::from_shared(url).unwrap().connect().await.unwrap();
    let mut health = HealthClient::new(channel.clone());
    for service in ["", "whistle.v1.CommandCenter", "whistle.v1.Dispatch"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }

    let mut reflection = ServerReflectionClient::new(channel.clone());
    let ask = |request: MessageRequest| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let mut answers = reflection
        .server_reflection_info(futures::stream::iter(vec![
            ask(MessageRequest::ListServices(String::new())),
            ask(MessageRequest::FileContainingSymbol(
                "whistle.v1.Dispatch".into(),
            )),
        ]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("not a service list")
    };
    let services: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    for expected in [
        "whistle.v1.CommandCenter",
        "whistle.v1.Dispatch",
        "grpc.health.v1.Health",
    ] {
        assert!(
            services.contains(&expected),
            "{expected} not in {services:?}"
        );
    }
    let Some(MessageResponse::FileDescriptorResponse(files)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("not a file descriptor")
    };
    let names: Vec<String> = files
        .file_descriptor_proto
        .iter()
        .map(|bytes| {
            prost_types::FileDescriptorProto::decode(bytes.as_slice())
                .unwrap()
                .name
                .unwrap_or_default()
        })
        .collect();
    assert!(
        names.iter().any(|n| n == "whistle/v1/dispatch.proto"),
        "{names:?}"
    );

    // Clients that only speak reflection v1alpha see the same services.
    {
        use tonic_reflection::pb::v1alpha::{
            server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
            ServerReflectionRequest,
        };
        let mut reflection = ServerReflectionClient::new(channel.clone());
        let mut answers = reflection
            .server_reflection_info(futures::stream::iter(vec![ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            }]))
            .await
            .unwrap()
            .into_inner();
        let Some(MessageResponse::ListServicesResponse(list)) =
            answers.message().await.unwrap().unwrap().message_response
        else {
            panic!("not a service list")
        };
        let services: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
        assert!(
            services.contains(&"whistle.v1.CommandCenter"),
            "{services:?}"
        );
        assert!(services.contains(&"whistle.v1.Dispatch"), "{services:?}");
    }

    // A browser's gRPC-web request over HTTP/1.1 on the same port.
    let request = v1::GetOrgTreeRequest {
        root_code: "150602".into(),
        depth: 1,
    };
    let (headers, data, trailers) = grpc_web_call(
        stack.query_addr(),
        stack.token(),
        "/whistle.v1.CommandCenter/GetOrgTree",
        &request.encode_to_vec(),
    )
    .await;
    assert!(headers.starts_with("HTTP/1.1 200"), "{headers}");
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("content-type: application/grpc-web+proto"),
        "{headers}"
    );
    assert!(trailers.contains("grpc-status:0"), "{trailers:?}");
    let tree = v1::OrgNode::decode(data.as_slice()).unwrap();
    assert_eq!(tree.code, "150602");
    assert!(!tree.children.is_empty());

    // Prometheus metrics, counting the calls above by path and status.
    let metrics = http_get(stack.query_addr(), "/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(
        metrics.contains(
            r#"whistle_query_requests_total{path="/whistle.v1.CommandCenter/GetOrgTree",code="0"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("whistle_query_watch_streams 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn shutdown_stops_the_listener_and_returns_cleanly() {
    let mut stack = Stack::builder()
        .without_dispatch()
        .with_query()
        .start()
        .await;
    let mut client = command_center(
        &stack.query_url(),
        &stack.token_for(Role::Viewer, "150600").await,
    )
    .await;
    let query = stack.take_query();
    // An open event stream does not hold the server open: it is ended with UNAVAILABLE.
    let mut events = client
        .watch_events(v1::WatchEventsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let tree = client
        .get_org_tree(v1::GetOrgTreeRequest {
            root_code: String::new(),
            depth: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tree.code, "150600");
    drop(client);

    query.shutdown.cancel();
    let ended = tokio::time::timeout(WAIT, events.message())
        .await
        .expect("the stream ends at shutdown");
    assert_eq!(ended.unwrap_err().code(), Code::Unavailable);
    tokio::time::timeout(WAIT, query.task)
        .await
        .expect("stops in time")
        .expect("query task")
        .expect("query ran cleanly");
    assert!(tokio::net::TcpStream::connect(query.addr).await.is_err());
}

#[tokio::test]
async fn the_query_service_s_sessions_refuse_writes() {
    let stack = Stack::builder().database_only().start().await;
    let options = whistle_query::Options {
        database_url: stack.db().url.clone(),
        max_db_connections: 1,
        ..Default::default()
    };
    let pool = whistle_query::connect_read_only(&options).await.unwrap();
    let refused = sqlx::query("UPDATE org_units SET name = 'x' WHERE code = '150600'")
        .execute(&pool)
        .await
        .unwrap_err();
    let code = refused
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some("25006"), "{refused}");
    let mut tx = pool.begin().await.unwrap();
    assert!(sqlx::query("DELETE FROM org_units")
        .execute(&mut *tx)
        .await
        .is_err());
}
