//! Abuse limits of the query service's gRPC door, over the network: a token over its rate limit
//! and a token holding its most `WatchEvents` streams are refused with `RESOURCE_EXHAUSTED` and
//! the reason `rate_limited` (status metadata `whistle-reason`), other tokens are not affected,
//! and a request body that does not decode is `INVALID_ARGUMENT` over gRPC and gRPC-web. On the
//! NATS door, a person over its command rate is refused `rate_limited` by dispatch.

use std::time::{Duration, Instant};

use tonic::Code;
use whistle_proto::v1;
use whistle_store::tokens::Role;

use crate::harness::*;

/// The RPC used to spend a token's requests: cheap, and open to every role.
async fn session(
    client: &mut v1::command_center_client::CommandCenterClient<Authed>,
) -> Result<(), tonic::Status> {
    client
        .get_session(v1::GetSessionRequest::default())
        .await
        .map(drop)
}

fn assert_rate_limited(status: &tonic::Status) {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(
        whistle_query::reason(status),
        Some(whistle_query::RATE_LIMITED),
        "{status:?}"
    );
    assert!(!status.message().is_empty());
}

#[tokio::test]
async fn a_burst_over_the_rate_limit_is_refused_until_the_bucket_refills() {
    // 2 requests per second after a burst of 5: a loop of calls overruns it at once.
    let stack = Stack::builder()
        .at(ten_o_clock_in_ordos())
        .with_query_options(|options| {
            options.rate_limit = 2.0;
            options.rate_burst = 5;
        })
        .start()
        .await;
    let token = stack.token_for(Role::Viewer, "150602").await;
    let mut client = command_center(&stack.query_url(), &token).await;
    let mut allowed = 0;
    let refused = loop {
        match session(&mut client).await {
            Ok(()) => allowed += 1,
            Err(status) => break status,
        }
        assert!(allowed <= 50, "50 calls in a row were never limited");
    };
    assert_rate_limited(&refused);
    assert!(allowed >= 5, "the burst of 5 was allowed ({allowed})");

    // Another token has its own bucket.
    let other = stack.token_for(Role::Viewer, "150602").await;
    let mut other = command_center(&stack.query_url(), &other).await;
    session(&mut other).await.unwrap();

    // The same token is served again once its bucket refilled (half a second per request).
    let deadline = Instant::now() + WAIT;
    loop {
        tokio::time::sleep(Duration::from_millis(600)).await;
        match session(&mut client).await {
            Ok(()) => break,
            Err(status) => assert_rate_limited(&status),
        }
        assert!(
            Instant::now() < deadline,
            "the token was never served again"
        );
    }

    // Over gRPC-web (the console) the refusal carries the reason too.
    let spent = loop {
        if let Err(status) = session(&mut client).await {
            break status;
        }
    };
    assert_rate_limited(&spent);
    let (headers, _, trailers) = grpc_web_call(
        stack.query_addr(),
        &token,
        "/whistle.v1.CommandCenter/GetSession",
        &[],
    )
    .await;
    let answer = format!("{headers}\n{trailers}").to_ascii_lowercase();
    assert!(
        answer.contains("grpc-status: 8") || answer.contains("grpc-status:8"),
        "{answer}"
    );
    assert!(
        answer.contains("whistle-reason: rate_limited")
            || answer.contains("whistle-reason:rate_limited"),
        "{answer}"
    );
}

#[tokio::test]
async fn the_stream_over_the_watch_limit_is_refused_and_a_closed_one_frees_its_place() {
    const MAX: u32 = 3;
    let stack = Stack::builder()
        .at(ten_o_clock_in_ordos())
        .with_query_options(|options| options.max_watch_streams = MAX)
        .start()
        .await;
    let token = stack.token_for(Role::Viewer, "150602").await;
    let mut client = command_center(&stack.query_url(), &token).await;
    let mut open = Vec::new();
    for _ in 0..MAX {
        open.push(
            client
                .watch_events(v1::WatchEventsRequest::default())
                .await
                .expect("a stream within the limit")
                .into_inner(),
        );
    }
    let refused = client
        .watch_events(v1::WatchEventsRequest::default())
        .await
        .unwrap_err();
    assert_rate_limited(&refused);

    // Another token is not counted against this one.
    let other = stack.token_for(Role::Viewer, "150602").await;
    let mut other = command_center(&stack.query_url(), &other).await;
    let _theirs = other
        .watch_events(v1::WatchEventsRequest::default())
        .await
        .unwrap();

    // Closing a stream gives its place back (once the server saw the stream reset).
    drop(open.pop());
    eventually("a closed stream's place given back", WAIT, || {
        let mut client = client.clone();
        async move {
            match client.watch_events(v1::WatchEventsRequest::default()).await {
                Ok(stream) => {
                    drop(stream);
                    true
                }
                Err(status) => {
                    assert_rate_limited(&status);
                    false
                }
            }
        }
    })
    .await
    .unwrap();
    drop(open);
}

/// Raw bytes sent as a request message: field 1 with bytes that are not UTF-8, where every
/// request below has a string.
#[derive(Clone, PartialEq, prost::Message)]
struct NotText {
    #[prost(bytes = "vec", tag = "1")]
    field: Vec<u8>,
}

#[tokio::test]
async fn a_request_body_that_does_not_decode_is_invalid_argument() {
    let stack = Stack::command_center().await;
    let channel = tonic::transport::Endpoint::from_shared(stack.query_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let bad = NotText {
        field: vec![0xff, 0xfe, 0x00],
    };
    for path in [
        "/whistle.v1.CommandCenter/GetIncident",
        "/whistle.v1.CommandCenter/WatchEvents",
        "/whistle.v1.Dispatch/Accept",
        "/whistle.v1.Reporting/SubmitReport",
    ] {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.unwrap();
        let mut request = tonic::Request::new(bad.clone());
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", stack.token()).parse().unwrap(),
        );
        let status = match path {
            "/whistle.v1.CommandCenter/WatchEvents" => grpc
                .server_streaming(
                    request,
                    tonic::codegen::http::uri::PathAndQuery::from_static(path),
                    tonic_prost::ProstCodec::<NotText, NotText>::default(),
                )
                .await
                .map(drop),
            _ => grpc
                .unary(
                    request,
                    tonic::codegen::http::uri::PathAndQuery::from_static(path),
                    tonic_prost::ProstCodec::<NotText, NotText>::default(),
                )
                .await
                .map(drop),
        }
        .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{path}: {status:?}");
        assert!(
            status.message().contains("not a valid message"),
            "{path}: {status:?}"
        );
    }

    // The same over gRPC-web, as the console sends it.
    let (headers, _, trailers) = grpc_web_call(
        stack.query_addr(),
        stack.token(),
        "/whistle.v1.CommandCenter/GetIncident",
        &prost::Message::encode_to_vec(&bad),
    )
    .await;
    let answer = format!("{headers}\n{trailers}").to_ascii_lowercase();
    assert!(
        answer.contains("grpc-status: 3") || answer.contains("grpc-status:3"),
        "{answer}"
    );
}

#[tokio::test]
async fn a_person_over_its_command_rate_is_refused_on_the_nats_door_and_nothing_is_written() {
    // 1 command per second after a burst of 3: six at once overrun it.
    let stack = Stack::builder()
        .at(ten_o_clock_in_ordos())
        .with_dispatch_options(|options| {
            options.command_rate = 1.0;
            options.command_burst = 3;
        })
        .start()
        .await;
    let incident = stack
        .report("rate-1", "150602001001001", "municipal.street_light")
        .await;
    let comment = || {
        v1::command::Body::Comment(v1::Comment {
            text: "催一下".into(),
        })
    };
    let mut codes = Vec::new();
    for _ in 0..6 {
        let reply = stack.command("op-150600", incident, comment()).await;
        codes.push(match reply.outcome {
            Some(v1::command_reply::Outcome::Ok(_)) => "ok".to_owned(),
            Some(v1::command_reply::Outcome::Error(error)) => {
                assert!(error.message.contains("op-150600"), "{error:?}");
                v1::CommandErrorCode::try_from(error.code)
                    .unwrap()
                    .as_str_name()
                    .to_owned()
            }
            None => panic!("a reply without an outcome"),
        });
    }
    let applied = codes.iter().filter(|c| *c == "ok").count();
    assert!(
        (3..6).contains(&applied)
            && codes
                .iter()
                .all(|c| c == "ok" || c == "COMMAND_ERROR_CODE_RATE_LIMITED"),
        "{codes:?}"
    );
    let comments = stack
        .timeline(incident)
        .await
        .iter()
        .filter(|kind| kind.as_str() == "incident.commented")
        .count();
    assert_eq!(comments, applied, "a refused command wrote nothing");

    // Another person has its own allowance.
    let other = stack.command("op-150602", incident, comment()).await;
    assert!(
        matches!(other.outcome, Some(v1::command_reply::Outcome::Ok(_))),
        "{other:?}"
    );
}
