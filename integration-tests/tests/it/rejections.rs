//! Invalid reports: each reason lands in WHISTLE_REJECTED with its reason and the original bytes
//! (contacts masked, a too-large payload cut to its head with its size and digest).

use async_nats::{header::NATS_MESSAGE_ID, HeaderMap};
use prost::Message as _;
use sha2::Digest as _;
use whistle_proto::v1;

use crate::harness::*;

/// One malformed report for each reason, built from a valid one.
fn invalid_reports() -> Vec<(&'static str, String, HeaderMap, Vec<u8>)> {
    let grids = grids();
    let grid = grids[10].clone();
    let other_grid = grids[11].clone();
    let subject = subject_for(&grid);
    let now = chrono::Utc::now().timestamp_millis();
    let with = |id: &str, change: &dyn Fn(&mut v1::Report)| {
        let mut r = report(id, &grid);
        change(&mut r);
        r.encode_to_vec()
    };
    let none = HeaderMap::new;
    let msg_id = |id: &str| {
        let mut h = HeaderMap::new();
        h.insert(NATS_MESSAGE_ID, id);
        h
    };
    let json = || {
        let mut h = HeaderMap::new();
        h.insert("Content-Type", "application/json");
        h
    };
    vec![
        (
            "too_large",
            subject.clone(),
            none(),
            with("big", &|r| r.description = "大".repeat(30_000)),
        ),
        (
            "invalid_subject",
            format!("whistle.report.150602.150603001.{}.{}", &grid[..12], grid),
            none(),
            with("subj", &|_| {}),
        ),
        (
            "decode_error",
            subject.clone(),
            none(),
            b"\xff\xff\xff garbage".to_vec(),
        ),
        (
            "decode_error",
            subject.clone(),
            json(),
            br#"{"reportId": "half"#.to_vec(),
        ),
        (
            "decode_error",
            subject.clone(),
            json(),
            b"{\"title\": \"\xc3\x28\"}".to_vec(),
        ),
        (
            "msg_id_mismatch",
            subject.clone(),
            msg_id("something-else"),
            with("mid", &|_| {}),
        ),
        (
            "invalid_report_id",
            subject.clone(),
            none(),
            with("has space", &|_| {}),
        ),
        (
            "missing_field",
            subject.clone(),
            none(),
            with("notitle", &|r| r.title = "  ".into()),
        ),
        (
            "field_too_long",
            subject.clone(),
            none(),
            with("longtitle", &|r| r.title = "长".repeat(201)),
        ),
        (
            "invalid_location",
            subject.clone(),
            none(),
            with("loc", &|r| {
                r.location = Some(v1::Location {
                    lat: 123.0,
                    lon: 109.0,
                    address: String::new(),
                })
            }),
        ),
        (
            "too_many_attachments",
            subject.clone(),
            none(),
            with("att", &|r| {
                r.attachments = vec![r.attachments[0].clone(); 100]
            }),
        ),
        (
            "invalid_timestamp",
            subject.clone(),
            none(),
            with("future", &|r| {
                r.reported_at = Some(whistle_proto::timestamp_from_unix_millis(now + 86_400_000))
            }),
        ),
        (
            "invalid_timestamp",
            subject.clone(),
            none(),
            with("ancient", &|r| {
                r.occurred_at = Some(whistle_proto::timestamp_from_unix_millis(0))
            }),
        ),
        (
            "invalid_timestamp",
            subject.clone(),
            none(),
            with("year-9999", &|r| {
                r.reported_at = Some(prost_types::Timestamp {
                    seconds: 253_402_300_799,
                    nanos: 0,
                })
            }),
        ),
        (
            "invalid_timestamp",
            subject.clone(),
            none(),
            with("overflow", &|r| {
                r.reported_at = Some(prost_types::Timestamp {
                    seconds: i64::MAX,
                    nanos: -1,
                })
            }),
        ),
        (
            "too_many_attachments",
            subject.clone(),
            none(),
            with("thousands", &|r| {
                r.attachments = (0..3_000)
                    .map(|i| v1::Attachment {
                        uri: format!("s3://b/{i}"),
                        ..Default::default()
                    })
                    .collect()
            }),
        ),
        (
            "decode_error",
            subject.clone(),
            none(),
            // A valid report followed by a title (field 6) that is not UTF-8.
            [with("utf8", &|_| {}), vec![0x32, 2, 0xc3, 0x28]].concat(),
        ),
        (
            "invalid_urgency",
            subject.clone(),
            none(),
            with("urg", &|r| r.urgency = 42),
        ),
        (
            "unknown_grid",
            subject_for(&format!("{}999", &grid[..12])),
            none(),
            with("nogrid", &|r| {
                r.grid_code = format!("{}999", &grid[..12]);
            }),
        ),
        (
            "grid_mismatch",
            subject.clone(),
            none(),
            with("mismatch", &|r| r.grid_code = other_grid.clone()),
        ),
        (
            "channel_mismatch",
            subject.clone(),
            none(),
            with("posing", &|r| {
                r.channel = v1::Channel::Hotline12345 as i32;
                r.channel_ref = "WO-1".into();
            }),
        ),
        (
            "channel_mismatch",
            whistle_wire::subject::channel_report(&grid.parse().unwrap(), v1::Channel::Open311),
            none(),
            with("unclaimed", &|_| {}),
        ),
        (
            "unknown_reporter",
            subject.clone(),
            none(),
            with("who", &|r| r.reporter_id = "gw-nobody".into()),
        ),
        (
            "reporter_not_in_grid",
            subject.clone(),
            none(),
            with("notmine", &|r| r.reporter_id = format!("gw-{other_grid}")),
        ),
        (
            "reporter_not_in_grid",
            subject.clone(),
            none(),
            with("liaison", &|r| r.reporter_id = "li-150602-heating".into()),
        ),
        (
            "unknown_category",
            subject.clone(),
            none(),
            with("cat", &|r| r.category = "weather.too_cold".into()),
        ),
        (
            "invalid_photo",
            subject.clone(),
            none(),
            with("photo", &|r| r.photo_ids = vec!["photo.jpg".into()]),
        ),
        (
            "control_character",
            subject.clone(),
            none(),
            with("nul", &|r| r.title = "停暖\0".into()),
        ),
        (
            "control_character",
            subject.clone(),
            json(),
            format!(
                r#"{{"reportId": "c1-json", "reporterId": "gw-{grid}", "gridCode": "{grid}", "category": "heating.no_heat", "title": "停暖", "description": "一楼\n二楼\u0085", "reportedAt": "{}"}}"#,
                chrono::DateTime::from_timestamp_millis(now).unwrap().to_rfc3339()
            )
            .into_bytes(),
        ),
    ]
}

#[tokio::test]
async fn every_kind_of_invalid_report_is_rejected_with_its_reason_and_original_bytes() {
    let mut stack = Stack::start().await;
    let cases = invalid_reports();
    for (_, subject, headers, payload) in &cases {
        stack
            .reporter()
            .publish_raw(subject, headers.clone(), payload.clone())
            .await;
    }
    // A valid report behind them is not held up.
    let grid = &grids()[12];
    stack.publish(&report("valid-after-garbage", grid)).await;

    let expected = cases.len() as u64;
    eventually("every rejection stored", WAIT, || async {
        stream_len(stack.js(), "WHISTLE_REJECTED").await == expected
    })
    .await
    .unwrap();
    eventually("every event relayed", WAIT, || async {
        stream_len(stack.js(), "WHISTLE_EVENTS").await == expected + 1
    })
    .await
    .unwrap();

    let rejected = read_stream(stack.js(), "WHISTLE_REJECTED").await;
    for ((reason, subject, _, payload), stored) in cases.iter().zip(&rejected) {
        let header = |name: &str| stored.header(name);
        assert_eq!(
            header("Whistle-Reject-Reason"),
            *reason,
            "case {reason}: {}",
            header("Whistle-Reject-Message")
        );
        assert_eq!(stored.subject, whistle_wire::subject::rejected(reason));
        assert_eq!(header("Whistle-Original-Subject"), *subject);
        assert!(!header("Whistle-Reject-Message").is_empty());
        if *reason == "too_large" {
            // Not kept whole: its first KiB, with its size and digest.
            assert_eq!(&stored.payload[..], &payload[..1024], "case {reason}");
            assert_eq!(header("Whistle-Original-Size"), payload.len().to_string());
            let sha256: String = sha2::Sha256::digest(payload)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(header("Whistle-Original-Sha256"), sha256);
            assert!(header("Whistle-Reject-Message").contains(&sha256));
            continue;
        }
        assert_eq!(
            &stored.payload[..],
            &payload[..],
            "case {reason}: the original bytes are kept (no contact in them)"
        );
    }

    let events = events(stack.js()).await;
    let rejected_reasons: Vec<String> = events
        .iter()
        .filter_map(|(_, e)| match &e.body {
            Some(v1::event::Body::ReportRejected(b)) => Some(b.reason.clone()),
            _ => None,
        })
        .collect();
    let expected_reasons: Vec<&str> = cases.iter().map(|c| c.0).collect();
    assert_eq!(rejected_reasons, expected_reasons);
    assert_eq!(
        stack.count("SELECT count(*) FROM incidents").await,
        1,
        "only the valid report opened an incident"
    );
    assert_eq!(
        stack.count("SELECT count(*) FROM rejected_reports").await,
        expected as i64
    );
    stack.stop_dispatch().await;
}
