//! Report intake: valid reports become incidents and events, duplicates do not, invalid ones land
//! in WHISTLE_REJECTED with their reason (every reason: rejections.rs).

use std::time::Duration;

use async_nats::{header::NATS_MESSAGE_ID, HeaderMap};
use prost::Message as _;
use whistle_proto::v1;

use crate::harness::*;

#[tokio::test]
async fn a_report_becomes_an_incident_and_an_event() {
    let mut stack = Stack::start().await;
    let grid = &grids()[42];

    let sent = report("r-first", grid);
    stack.publish(&sent).await;
    eventually("the incident event", WAIT, || async {
        stream_len(stack.js(), "WHISTLE_EVENTS").await == 1
    })
    .await
    .unwrap();

    let (subject, event) = events(stack.js()).await.remove(0);
    assert_eq!(
        subject,
        whistle_wire::subject::incident_event(
            &grid[..6],
            &grid[..9],
            whistle_wire::kind::INCIDENT_REPORTED
        )
    );
    assert_eq!(event.kind, "incident.reported");
    assert_eq!(event.grid_code, *grid);
    assert_eq!(event.community_code, grid[..12]);
    assert_eq!(event.actor_id, format!("gw-{grid}"));
    let Some(v1::event::Body::IncidentReported(body)) = &event.body else {
        panic!("wrong body: {event:?}")
    };
    assert_eq!(
        body.report.as_ref(),
        Some(&sent),
        "the event carries the report as filed"
    );
    assert_eq!(body.category_name, "室内温度不达标/停暖");
    assert_eq!(body.status, v1::IncidentStatus::Handling as i32);

    let (status, level, category, urgency, reporter_id, policy): (String, String, String, String, String, String) =
        sqlx::query_as("SELECT status, level, category, urgency, reporter_id, policy_version FROM incidents WHERE id = $1::uuid")
            .bind(&event.incident_id)
            .fetch_one(stack.pool())
            .await
            .expect("the incident row");
    assert_eq!(
        (
            status.as_str(),
            level.as_str(),
            category.as_str(),
            urgency.as_str()
        ),
        ("handling", "community", "heating.no_heat", "urgent")
    );
    assert_eq!(reporter_id, format!("gw-{grid}"));
    assert_eq!(policy, "ordos-2026.1");
    assert_eq!(
        stack
            .count("SELECT count(*) FROM timeline WHERE kind = 'incident.reported'")
            .await,
        1
    );
    assert_eq!(
        stack.count("SELECT count(*) FROM outbox").await,
        0,
        "the relay emptied the outbox"
    );
    stack.stop_dispatch().await;
}

#[tokio::test]
async fn proto3_json_reports_are_accepted_with_the_content_type_header() {
    let mut stack = Stack::start().await;
    let grid = &grids()[7];
    // Written by hand, as a client that is not this project's code would.
    let json = format!(
        r#"{{"reportId":"json-1","reporterId":"gw-{grid}","gridCode":"{grid}","category":"sanitation.garbage",
            "urgency":"URGENCY_NORMAL","title":"垃圾桶满溢","reportedAt":"{}",
            "location":{{"lat":39.8,"lon":109.9,"address":"西门"}}}}"#,
        chrono::Utc::now().to_rfc3339()
    );
    let mut headers = HeaderMap::new();
    headers.insert(NATS_MESSAGE_ID, "json-1");
    headers.insert("Content-Type", "application/json");
    stack
        .reporter()
        .publish_raw(&subject_for(grid), headers, json.into_bytes())
        .await;
    eventually("the incident", WAIT, || async {
        stack.count("SELECT count(*) FROM incidents").await == 1
    })
    .await
    .unwrap();
    let title: String = sqlx::query_scalar("SELECT title FROM incidents")
        .fetch_one(stack.pool())
        .await
        .unwrap();
    assert_eq!(title, "垃圾桶满溢");
    stack.stop_dispatch().await;
}

#[tokio::test]
async fn the_same_report_twice_is_one_incident() {
    let mut stack = Stack::start().await;
    let grid = &grids()[3];
    let sent = report("r-twice", grid);

    // Inside JetStream's duplicate window the server drops the second copy ...
    let first = stack.publish(&sent).await;
    let second = stack.publish(&sent).await;
    assert!(!first.duplicate && second.duplicate);
    // ... and without a Nats-Msg-Id (or after the window) the report id makes it a no-op.
    for _ in 0..2 {
        stack
            .reporter()
            .publish_raw(&subject_for(grid), HeaderMap::new(), sent.encode_to_vec())
            .await;
    }
    stack.publish(&report("r-after", &grids()[4])).await;

    eventually("both incidents", WAIT, || async {
        stack.count("SELECT count(*) FROM incidents").await == 2
    })
    .await
    .unwrap();
    stack.intake_drained().await;
    assert_eq!(
        stream_len(stack.js(), "WHISTLE_REPORTS").await,
        4,
        "three copies of r-twice stored, plus r-after"
    );
    assert_eq!(
        stack
            .count("SELECT count(*) FROM reports WHERE report_id = 'r-twice'")
            .await,
        1
    );
    stack.relayed().await;
    let reported: Vec<String> = events(stack.js())
        .await
        .into_iter()
        .filter_map(|(_, e)| match e.body {
            Some(v1::event::Body::IncidentReported(b)) => Some(b.report.unwrap().report_id),
            _ => None,
        })
        .collect();
    assert_eq!(reported, ["r-twice", "r-after"]);
    stack.stop_dispatch().await;
}

#[tokio::test]
async fn intake_resumes_after_nats_server_restarts() {
    let mut stack = Stack::start().await;
    let grids = grids();
    let reporter = Reporter::connect(stack.server()).await;
    for (i, grid) in grids.iter().take(50).enumerate() {
        reporter
            .publish(&report(&format!("before-{i}"), grid))
            .await;
    }
    eventually("the first reports", WAIT, || async {
        stack.count("SELECT count(*) FROM incidents").await == 50
    })
    .await
    .unwrap();

    stack.restart_nats().await;
    let reporter = Reporter::connect(stack.server()).await;
    for (i, grid) in grids.iter().skip(100).take(50).enumerate() {
        reporter.publish(&report(&format!("after-{i}"), grid)).await;
    }
    eventually(
        "the reports after the restart",
        Duration::from_secs(60),
        || async { stack.count("SELECT count(*) FROM incidents").await == 100 },
    )
    .await
    .unwrap();
    // Fifty reports from one community's grids also raise cluster alerts; count the reports.
    eventually("their events", Duration::from_secs(30), || async {
        let reported = events(&reporter.js)
            .await
            .into_iter()
            .filter(|(_, e)| e.kind == "incident.reported")
            .count();
        reported == 100
    })
    .await
    .unwrap();
    stack.stop_dispatch().await;
}

#[tokio::test]
async fn a_changed_ack_wait_applies_to_the_existing_consumer_at_the_next_start() {
    let mut stack = Stack::builder().without_dispatch().start().await;
    stack.run_dispatch_once().await;
    let js = stack.js().clone();
    let ack_wait = || async { intake_consumer(&js).await.config.ack_wait };
    assert_eq!(ack_wait().await, Duration::from_secs(2));

    stack
        .start_dispatch_with(|options| options.ack_wait = Duration::from_secs(7))
        .await;
    assert_eq!(
        ack_wait().await,
        Duration::from_secs(7),
        "the running consumer takes the new setting"
    );
    stack
        .reporter()
        .publish(&report("after-the-change", &grids()[0]))
        .await;
    eventually("the report", WAIT, || async {
        stack.count("SELECT count(*) FROM incidents").await == 1
    })
    .await
    .unwrap();
    stack.stop_dispatch().await;
}

/// A batch held longer than the ack wait (here its insert waits three ack waits for a table lock)
/// is kept by progress messages: JetStream does not redeliver it meanwhile, and it commits once.
#[tokio::test]
async fn a_batch_held_past_the_ack_wait_is_kept_and_not_redelivered() {
    let mut stack = Stack::start().await;
    let ack_wait = stack.dispatch_options().ack_wait;

    let mut blocker = stack.pool().begin().await.unwrap();
    sqlx::query("LOCK TABLE reports IN SHARE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    stack.publish(&report("held", &grids()[0])).await;
    eventually("the report in dispatch's hands", WAIT, || async {
        intake_consumer(stack.js()).await.num_ack_pending == 1
    })
    .await
    .unwrap();
    tokio::time::sleep(3 * ack_wait).await;
    let info = intake_consumer(stack.js()).await;
    assert_eq!(
        (info.num_ack_pending, info.num_redelivered),
        (1, 0),
        "still in hand, never redelivered"
    );
    assert_eq!(stack.count("SELECT count(*) FROM reports").await, 0);

    blocker.rollback().await.unwrap();
    stack.intake_drained().await;
    assert_eq!(intake_consumer(stack.js()).await.num_redelivered, 0);
    assert_eq!(stack.count("SELECT count(*) FROM incidents").await, 1);
    stack.stop_dispatch().await;
    let reported = events(stack.js())
        .await
        .into_iter()
        .filter(|(_, e)| e.kind == "incident.reported")
        .count();
    assert_eq!(reported, 1);
}

/// A replica stopped gracefully hands back the reports delivered to it but not yet in a batch:
/// the next replica records them at once, not after the (here one-minute) ack wait.
#[tokio::test]
async fn a_graceful_stop_hands_back_the_reports_it_had_not_started() {
    let stack = Stack::builder()
        .without_dispatch()
        .with_dispatch_options(|options| {
            options.batch_size = 5;
            options.ack_wait = Duration::from_secs(60);
        })
        .start()
        .await;
    // Migrations first, so the table to lock exists.
    stack.run_dispatch_once().await;
    let grids = grids();
    for (i, grid) in grids.iter().take(20).enumerate() {
        stack
            .reporter()
            .publish(&report(&format!("queued-{i}"), grid))
            .await;
    }
    let mut blocker = stack.pool().begin().await.unwrap();
    sqlx::query("LOCK TABLE reports IN SHARE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let first = stack.spawn_dispatch().await;
    // One batch of five in hand (held by the lock), more delivered behind it.
    eventually(
        "reports delivered beyond the batch in hand",
        WAIT,
        || async { intake_consumer(stack.js()).await.num_ack_pending > 5 },
    )
    .await
    .unwrap();
    first.shutdown.cancel();
    blocker.rollback().await.unwrap();
    first.stop().await;

    let second = stack.spawn_dispatch().await;
    eventually("every queued report recorded", WAIT, || async {
        stack.count("SELECT count(*) FROM incidents").await == 20
    })
    .await
    .unwrap();
    second.stop().await;
}

/// A report that PostgreSQL refuses on every delivery (here a trigger that raises for its id, as a
/// constraint or a bad row would) does not hold up the reports around it: they commit at once,
/// and it lands in WHISTLE_REJECTED after its last delivery, once.
#[tokio::test]
async fn a_report_that_always_fails_to_record_is_rejected_and_holds_up_nothing() {
    let mut stack = Stack::builder()
        .without_dispatch()
        .with_dispatch_options(|options| options.max_report_failures = 4)
        .start()
        .await;
    // Migrations create the table the trigger goes on; the service is started again below.
    stack.run_dispatch_once().await;
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.report_id = 'poison' THEN RAISE EXCEPTION 'report % refused', NEW.report_id; END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER refuse_poison BEFORE INSERT ON reports
             FOR EACH ROW EXECUTE FUNCTION refuse_poison();",
    )
    .execute(stack.pool())
    .await
    .expect("installing the trigger");

    // Published before dispatch starts, so the poison report shares a batch with the good ones.
    let grids = grids();
    let good: Vec<v1::Report> = (0..20)
        .map(|i| report(&format!("good-{i}"), &grids[i]))
        .collect();
    let poison = report("poison", &grids[20]);
    for sent in &good[..10] {
        stack.publish(sent).await;
    }
    let poison_sequence = stack.publish(&poison).await.sequence;
    for sent in &good[10..] {
        stack.publish(sent).await;
    }
    let started = std::time::Instant::now();
    stack.start_dispatch().await;

    eventually("every good report is an incident", WAIT, || async {
        stack.count("SELECT count(*) FROM incidents").await == 20
    })
    .await
    .unwrap();
    assert!(
        stream_len(stack.js(), "WHISTLE_REJECTED").await == 0,
        "the good reports committed before the poison report's last delivery ({:?})",
        started.elapsed()
    );
    eventually("the poison report rejected", WAIT, || async {
        stream_len(stack.js(), "WHISTLE_REJECTED").await == 1
    })
    .await
    .unwrap();
    stack.intake_drained().await;
    // The incidents may also raise cluster alerts; the outbox empties once all are relayed.
    eventually("every event relayed", WAIT, || async {
        stack.count("SELECT count(*) FROM outbox").await == 0
    })
    .await
    .unwrap();

    let rejected = read_stream(stack.js(), "WHISTLE_REJECTED").await;
    let stored = &rejected[0];
    let header = |name: &str| stored.header(name);
    assert_eq!(stored.subject, "whistle.rejected.processing_failed");
    assert_eq!(header("Whistle-Reject-Reason"), "processing_failed");
    assert!(
        header("Whistle-Reject-Message").contains("report poison refused"),
        "the last error: {}",
        header("Whistle-Reject-Message")
    );
    assert_eq!(header("Whistle-Delivery-Count"), "4");
    assert_eq!(
        header("Whistle-Original-Sequence"),
        poison_sequence.to_string()
    );
    assert_eq!(header("Whistle-Original-Subject"), subject_for(&grids[20]));
    assert_eq!(&stored.payload[..], &poison.encode_to_vec()[..]);

    let events = events(stack.js()).await;
    let rejections: Vec<&v1::ReportRejected> = events
        .iter()
        .filter_map(|(_, e)| match &e.body {
            Some(v1::event::Body::ReportRejected(b)) => Some(b),
            _ => None,
        })
        .collect();
    assert_eq!(rejections.len(), 1, "one report.rejected event");
    assert_eq!(rejections[0].reason, "processing_failed");
    assert_eq!(rejections[0].report_id, "poison");
    assert_eq!(rejections[0].stream_sequence, poison_sequence);
    assert_eq!(
        events
            .iter()
            .filter(|(_, e)| e.kind == "incident.reported")
            .count(),
        20
    );

    assert_eq!(stack.count("SELECT count(*) FROM reports").await, 20);
    assert_eq!(
        stack
            .count("SELECT count(DISTINCT report_id) FROM reports WHERE report_id LIKE 'good-%'")
            .await,
        20
    );
    assert_eq!(
        stack.count(
            "SELECT count(*) FROM rejected_reports WHERE reason = 'processing_failed' AND report_id = 'poison'"
        )
        .await,
        1
    );
    assert_eq!(
        stack.count("SELECT count(*) FROM rejected_reports").await,
        1
    );
    stack.stop_dispatch().await;
}

/// An attempt that committed a `processing_failed` rejection and then crashed before the ack: the
/// redelivered report (now recordable) must end as that rejection again, not also as an incident.
#[tokio::test]
async fn a_report_rejected_before_a_crash_is_not_recorded_again_on_redelivery() {
    let mut stack = Stack::builder()
        .without_dispatch()
        .with_dispatch_options(|options| options.max_report_failures = 1)
        .start()
        .await;
    stack.run_dispatch_once().await;

    let grids = grids();
    let late = report("rejected-then-crashed", &grids[0]);
    let sequence = stack.publish(&late).await.sequence;
    // The crashed attempt: delivered once, not acked, its rejection row committed.
    let consumer: async_nats::jetstream::consumer::PullConsumer = stack
        .js()
        .get_consumer_from_stream("whistle-dispatch", "WHISTLE_REPORTS")
        .await
        .unwrap();
    let mut batch = consumer.fetch().max_messages(1).messages().await.unwrap();
    let first = futures::StreamExt::next(&mut batch)
        .await
        .expect("one message")
        .unwrap();
    let info = first.info().unwrap();
    assert_eq!((info.stream_sequence, info.delivered), (sequence, 1));
    let source_key = format!(
        "{}:{}:{}",
        info.stream,
        info.stream_sequence,
        info.published.timestamp_nanos_opt().unwrap()
    );
    sqlx::query(
        "INSERT INTO rejected_reports (source_key, reason, message, subject, report_id, payload, received_at)
         VALUES ($1, 'processing_failed', 'recording failed on delivery 1: refused', $2, $3, $4, now())",
    )
    .bind(&source_key)
    .bind(first.subject.as_str())
    .bind(&late.report_id)
    .bind(first.payload.to_vec())
    .execute(stack.pool())
    .await
    .unwrap();
    first
        .ack_with(async_nats::jetstream::AckKind::Nak(None))
        .await
        .unwrap();

    stack.start_dispatch().await;
    eventually("the report rejected again", WAIT, || async {
        stream_len(stack.js(), "WHISTLE_REJECTED").await == 1
    })
    .await
    .unwrap();
    stack.intake_drained().await;
    assert_eq!(stack.count("SELECT count(*) FROM incidents").await, 0);
    assert_eq!(stack.count("SELECT count(*) FROM reports").await, 0);
    assert_eq!(
        stack.count("SELECT count(*) FROM rejected_reports").await,
        1
    );
    let rejected = read_stream(stack.js(), "WHISTLE_REJECTED").await;
    assert_eq!(rejected[0].subject, "whistle.rejected.processing_failed");
}
