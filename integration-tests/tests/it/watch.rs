//! `WatchEvents` over the network: live events filtered by area and kind, resuming after a
//! disconnect with nothing missed or repeated, a slow client that neither holds up the others
//! nor loses events, and a gap announced for events the stream no longer holds.

use std::time::Duration;

use async_nats::jetstream;
use tonic::Streaming;
use whistle_proto::v1::{self, watch_events_response::Item};
use whistle_store::tokens::Role;

use crate::harness::*;

/// The next response of a stream, failing the test if none comes in time.
async fn next(stream: &mut Streaming<v1::WatchEventsResponse>) -> Item {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("a response in time")
        .expect("the stream is healthy")
        .expect("the stream is open")
        .item
        .expect("a response has an item")
}

async fn next_event(stream: &mut Streaming<v1::WatchEventsResponse>) -> v1::SequencedEvent {
    match next(stream).await {
        Item::Event(event) => event,
        Item::Gap(gap) => panic!("unexpected gap {gap:?}"),
    }
}

async fn watch(
    stack: &Stack,
    area_code: &str,
    kinds: &[&str],
    since_sequence: u64,
) -> Streaming<v1::WatchEventsResponse> {
    stack
        .client()
        .watch_events(v1::WatchEventsRequest {
            area_code: area_code.into(),
            kinds: kinds.iter().map(|k| k.to_string()).collect(),
            since_sequence,
        })
        .await
        .expect("WatchEvents")
        .into_inner()
}

/// Files `n` reports (distinct categories and grids, so none is a duplicate) and waits until
/// dispatch has recorded them all.
async fn file_many(stack: &Stack, prefix: &str, grids: &[String], n: usize) {
    let categories = [
        "municipal.road",
        "heating.no_heat",
        "sanitation.garbage",
        "noise.residential",
    ];
    for i in 0..n {
        let report = stack.filed(
            &format!("{prefix}-{i}"),
            &grids[i % grids.len()],
            categories[(i / grids.len()) % categories.len()],
            v1::Urgency::Normal,
        );
        stack.publish(&report).await;
    }
    let last = format!("{prefix}-{}", n - 1);
    stack.incident_of(&last).await;
}

async fn last_sequence(stack: &Stack) -> u64 {
    let js = jetstream::new(stack.admin().clone());
    let mut stream = js.get_stream("WHISTLE_EVENTS").await.unwrap();
    stream.info().await.unwrap().state.last_sequence
}

#[tokio::test]
async fn live_events_are_filtered_by_area_and_kind() {
    let stack = Stack::command_center().await;
    let (district, [a_grid, ..], _, b_grid) = places();
    let mut reported_in_district = watch(&stack, &district, &["incident.reported"], 0).await;
    let mut everything = watch(&stack, "", &[], 0).await;

    let b = stack.filed("watch-b", &b_grid, "municipal.road", v1::Urgency::Normal);
    stack.file(&b).await;
    let a = stack.filed("watch-a", &a_grid, "municipal.road", v1::Urgency::Normal);
    let a_incident = stack.file(&a).await;

    let seen = next_event(&mut reported_in_district).await;
    let event = seen.event.unwrap();
    assert_eq!(event.kind, "incident.reported");
    assert_eq!(event.incident_id, a_incident.to_string());
    assert_eq!(event.grid_code, a_grid);
    assert!(seen.sequence > 0);

    // The city-wide stream sees both, in stream order.
    let first = next_event(&mut everything).await;
    let second = next_event(&mut everything).await;
    assert_eq!(first.event.unwrap().grid_code, b_grid);
    assert_eq!(second.sequence, seen.sequence);
    assert!(first.sequence < second.sequence);
}

#[tokio::test]
async fn a_client_that_reconnects_resumes_with_nothing_missed_or_repeated() {
    let stack = Stack::command_center().await;
    let grids: Vec<String> = grids_by_district()
        .into_values()
        .map(|g| g[0].clone())
        .collect();
    let mut stream = watch(&stack, "", &[], 0).await;
    file_many(&stack, "before", &grids, 5).await;
    let mut seen = vec![next_event(&mut stream).await.sequence];
    seen.push(next_event(&mut stream).await.sequence);
    // The connection drops after two events; more happen while the client is away.
    drop(stream);
    file_many(&stack, "away", &grids, 20).await;
    let last = last_sequence(&stack).await;

    let mut resumed = watch(&stack, "", &[], *seen.last().unwrap()).await;
    while *seen.last().unwrap() < last {
        seen.push(next_event(&mut resumed).await.sequence);
    }
    // Every sequence from the first seen to the last, each once.
    let expected: Vec<u64> = (seen[0]..=last).collect();
    assert_eq!(seen, expected);

    // And it stays live after catching up.
    file_many(&stack, "after", &grids, 1).await;
    assert_eq!(next_event(&mut resumed).await.sequence, last + 1);
}

#[tokio::test]
async fn a_slow_client_holds_up_nobody_and_still_receives_everything() {
    // A small live buffer, so that a few thousand events leave the slow client behind it. The slow
    // client's HTTP/2 windows are the protocol's smallest default, so that what the connection holds
    // for it (the window and the server's send buffer, about 460 KiB) is fixed, not the client
    // library's default windows and however far the kernel's socket buffers have grown.
    let stack = Stack::builder()
        .with_query_options(|options| options.watch_buffer = 64)
        .at(ten_o_clock_in_ordos())
        .start()
        .await;
    let grids: Vec<String> = grids().into_iter().step_by(3).collect();
    let reports = 4_000;
    // Separate connections, as separate screens have: streams on one HTTP/2 connection share
    // its flow-control window, so there the client itself would couple them.
    let slow_channel = tonic::transport::Endpoint::from_shared(stack.query_url())
        .unwrap()
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect()
        .await
        .unwrap();
    let mut slow = command_center_on(slow_channel, stack.token())
        .watch_events(v1::WatchEventsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut fast = command_center(&stack.query_url(), stack.token())
        .await
        .watch_events(v1::WatchEventsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let fast_seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let reader = tokio::spawn({
        let fast_seen = fast_seen.clone();
        async move {
            while let Ok(Some(response)) = fast.message().await {
                if let Some(Item::Event(event)) = response.item {
                    fast_seen.lock().unwrap().push(event.sequence);
                }
            }
        }
    });
    file_many(&stack, "slow", &grids, reports).await;
    let last = eventually_stable_last_sequence(&stack).await;

    // The fast client gets everything while the slow one has not read a single response.
    eventually(
        "the fast client has every event",
        Duration::from_secs(60),
        || async { fast_seen.lock().unwrap().last() == Some(&last) },
    )
    .await
    .unwrap();
    reader.abort();
    let fast_seen = fast_seen.lock().unwrap().clone();
    let first = fast_seen[0];
    assert_eq!(fast_seen, (first..=last).collect::<Vec<_>>());

    // Then the slow client reads, and misses nothing either.
    let mut slow_seen = Vec::new();
    while slow_seen.last() != Some(&last) {
        slow_seen.push(next_event(&mut slow).await.sequence);
    }
    assert_eq!(slow_seen, (first..=last).collect::<Vec<_>>());
    let metrics = http_get(stack.query_addr(), "/metrics").await;
    assert!(
        !metrics.contains("whistle_query_watch_catch_ups_total 0"),
        "the slow client never had to catch up: {metrics}"
    );
}

/// The stream's last sequence once dispatch has stopped adding events.
async fn eventually_stable_last_sequence(stack: &Stack) -> u64 {
    let mut last = last_sequence(stack).await;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = last_sequence(stack).await;
        if now == last {
            return last;
        }
        last = now;
    }
}

#[tokio::test]
async fn events_the_stream_no_longer_holds_are_announced_as_a_gap() {
    // The one stack whose events stream may be purged: the purge stands in for retention.
    let stack = Stack::builder()
        .with_query()
        .at(ten_o_clock_in_ordos())
        .with_streams(|configs| {
            for config in configs {
                if config.name == "WHISTLE_EVENTS" {
                    config.deny_purge = false;
                }
            }
        })
        .start()
        .await;
    let grids: Vec<String> = grids_by_district()
        .into_values()
        .map(|g| g[0].clone())
        .collect();
    file_many(&stack, "old", &grids, 3).await;
    let purged_up_to = eventually_stable_last_sequence(&stack).await;
    // Retention (max age) removes old events; a purge does the same at once.
    let js = jetstream::new(stack.admin().clone());
    js.get_stream("WHISTLE_EVENTS")
        .await
        .unwrap()
        .purge()
        .await
        .unwrap();
    file_many(&stack, "new", &grids, 1).await;

    let mut stream = watch(&stack, "", &[], 1).await;
    let Item::Gap(gap) = next(&mut stream).await else {
        panic!("expected a gap first")
    };
    assert_eq!(gap.from_sequence, 2);
    assert_eq!(gap.next_sequence, purged_up_to + 1);
    assert!(gap.reason.contains("no longer held"), "{}", gap.reason);
    let event = next_event(&mut stream).await;
    assert_eq!(event.sequence, purged_up_to + 1);
}

#[tokio::test]
async fn bad_watch_requests_are_refused_with_a_reason() {
    let stack = Stack::command_center().await;
    let refused = stack
        .client()
        .watch_events(v1::WatchEventsRequest {
            kinds: vec!["Incident Reported".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(refused.message().contains("Incident Reported"));

    // A viewer of one district cannot follow another's events.
    let (district, _, other_district, _) = places();
    let viewer = command_center(
        &stack.query_url(),
        &stack.token_for(Role::Viewer, &district).await,
    )
    .await;
    let refused = viewer
        .clone()
        .watch_events(v1::WatchEventsRequest {
            area_code: other_district,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    // Without a token nothing is streamed.
    let anonymous =
        whistle_proto::v1::command_center_client::CommandCenterClient::connect(stack.query_url())
            .await
            .unwrap();
    let refused = anonymous
        .clone()
        .watch_events(v1::WatchEventsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
}
