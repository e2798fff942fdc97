//! Photos and rejected reports kept only as long as the policy allows (issue 25, item 7;
//! docs/privacy.md): dispatch's retention job erases a photo once every incident showing it has
//! been settled longer than `[retention] photos` — its bytes leave the bucket, each incident's
//! timeline and the audit log say so, nothing else changes and no rate moves — and removes
//! rejected reports older than `[retention] rejected`. A person's request erases photos at once,
//! and their bytes leave the bucket at once too, whichever replica gets there.

use std::time::Duration;

use chrono::TimeDelta;
use tonic::Code;
use uuid::Uuid;
use whistle_domain::Level;
use whistle_proto::v1::{self, command::Body};
use whistle_store::{
    audit::Actor,
    photos::{self, Why},
    tokens::Role,
};
use whistle_wire::names::PHOTOS_BUCKET;

use crate::harness::*;

/// A small JPEG as far as its bytes tell, distinct per `seed`.
fn jpeg(seed: u8) -> Vec<u8> {
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0];
    bytes.extend((0..2_000u32).map(|i| (i as u8) ^ seed));
    bytes
}

/// Whether the photo's bytes are in the bucket (read as the admin).
async fn in_bucket(stack: &Stack, photo: &str) -> bool {
    let store = stack.js().get_object_store(PHOTOS_BUCKET).await.unwrap();
    match store.info(photo).await {
        Ok(info) => !info.deleted,
        Err(e) => {
            assert_eq!(
                e.kind(),
                async_nats::jetstream::object_store::InfoErrorKind::NotFound,
                "{e}"
            );
            false
        }
    }
}

/// The photos erased, and whether their bytes left the bucket.
async fn erased(stack: &Stack) -> Vec<(String, bool)> {
    sqlx::query_as("SELECT photo_id, removed_at IS NOT NULL FROM photo_erasures ORDER BY photo_id")
        .fetch_all(stack.pool())
        .await
        .unwrap()
}

/// The row of `table` whose `key` is `incident`, as a digest: unchanged or not.
async fn digest(stack: &Stack, table: &str, key: &str, incident: Uuid) -> String {
    sqlx::query_scalar(&format!(
        "SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM {table} t WHERE {key} = $1"
    ))
    .bind(incident)
    .fetch_one(stack.pool())
    .await
    .unwrap()
}

async fn detail(stack: &Stack, incident: Uuid) -> v1::IncidentDetail {
    stack
        .client()
        .get_incident(v1::GetIncidentRequest {
            incident_id: incident.to_string(),
        })
        .await
        .unwrap()
        .into_inner()
}

async fn get_photo(stack: &Stack, incident: Uuid, photo: &str) -> Result<v1::Photo, tonic::Status> {
    stack
        .client()
        .get_photo(v1::GetPhotoRequest {
            incident_id: incident.to_string(),
            photo_id: photo.to_owned(),
        })
        .await
        .map(|r| r.into_inner())
}

async fn scoreboards(stack: &Stack, district: &str, month: &str) -> Vec<v1::Scoreboard> {
    let mut all = Vec::new();
    for kind in [v1::ScoreboardKind::Departments, v1::ScoreboardKind::Streets] {
        all.push(
            stack
                .client()
                .get_scoreboard(v1::GetScoreboardRequest {
                    area_code: district.to_owned(),
                    month: month.to_owned(),
                    kind: kind as i32,
                })
                .await
                .unwrap()
                .into_inner(),
        );
    }
    all
}

#[tokio::test]
async fn a_photo_goes_once_every_incident_showing_it_settled_long_enough() {
    let stack = Stack::builder()
        .with_query()
        .at(ten_o_clock_in_ordos())
        .with_dispatch_options(|o| o.retention_interval = Duration::from_millis(200))
        .start()
        .await;
    let (district, [first, second, third], _, _) = places();
    let month = stack.now().format("%Y-%m").to_string();
    let mut form = reporting(&stack, &stack.token_for(Role::GridWorker, &first).await).await;
    let mut uploaded = Vec::new();
    for seed in 1..=4 {
        let answer = form
            .upload_photo(v1::UploadPhotoRequest { data: jpeg(seed) })
            .await
            .unwrap();
        uploaded.push(answer.into_inner().photo_id);
    }
    // The old incident shows all four: `only_old` and its resolution's `work` alone, `held` with
    // an incident that stays open, `shared` with one settled 100 days later.
    let [only_old, work, held, shared] = <[String; 4]>::try_from(uploaded).unwrap();
    let with_photos = |id: &str, grid: &str, photos: &[&String]| {
        let mut report = stack.filed(id, grid, "heating.no_heat", v1::Urgency::Normal);
        report.photo_ids = photos.iter().map(|p| p.to_string()).collect();
        report
    };
    let settle = |incident: Uuid, grid: String, after: Vec<String>| {
        let stack = &stack;
        async move {
            let community = format!("hd-{}", unit(&grid, Level::Community));
            let resolve = Body::Resolve(v1::Resolve {
                task_id: String::new(),
                note: "已处理".into(),
                photo_ids: after,
            });
            stack.ok(&community, incident, resolve).await;
            stack.ok(&format!("gw-{grid}"), incident, satisfied()).await;
            assert_eq!(stack.state(incident).await.0, "closed");
        }
    };
    let privacy_entries = |incident: Uuid| {
        let stack = &stack;
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT note FROM timeline WHERE incident_id = $1 AND kind = 'privacy.erased'
                 ORDER BY seq",
            )
            .bind(incident)
            .fetch_all(stack.pool())
            .await
            .unwrap()
        }
    };

    let old = stack
        .file(&with_photos(
            "photo-old",
            &first,
            &[&only_old, &held, &shared],
        ))
        .await;
    settle(old, first.clone(), vec![work.clone()]).await;
    let open = stack
        .file(&with_photos("photo-open", &second, &[&held]))
        .await;
    stack.advance(TimeDelta::days(100));
    let later = stack
        .file(&with_photos("photo-later", &third, &[&shared]))
        .await;
    settle(later, third.clone(), Vec::new()).await;
    let shown = detail(&stack, old).await;
    assert_eq!(shown.photos.len(), 4, "{:?}", shown.photos);
    assert!(shown.photos.iter().all(|p| p.erased_at.is_none()));

    // Just short of a year after the first closed: nothing is due.
    stack.advance(TimeDelta::days(265) - TimeDelta::hours(1));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(erased(&stack).await, []);
    let (incident_row, report_rows, timeline_before) = (
        digest(&stack, "incidents", "id", old).await,
        digest(&stack, "reports", "incident_id", old).await,
        stack.timeline(old).await,
    );
    let rates_before = scoreboards(&stack, &district, &month).await;
    let (open_timeline, later_timeline) = (stack.timeline(open).await, stack.timeline(later).await);

    // A year and an hour after: the old incident's own photos go; `held` stays (an open
    // incident shows it), and so does `shared` (the later incident's year is not up).
    stack.advance(TimeDelta::hours(2));
    let mut gone = vec![(only_old.clone(), true), (work.clone(), true)];
    gone.sort();
    eventually(
        "the old incident's own photos erased and removed",
        WAIT,
        || async { erased(&stack).await == gone },
    )
    .await
    .unwrap();
    assert!(!in_bucket(&stack, &only_old).await && !in_bucket(&stack, &work).await);
    assert!(in_bucket(&stack, &held).await && in_bucket(&stack, &shared).await);

    // Nothing else changed: the incident, its reports, its timeline but for one entry, the
    // other incidents' timelines, and every rate.
    assert_eq!(digest(&stack, "incidents", "id", old).await, incident_row);
    assert_eq!(
        digest(&stack, "reports", "incident_id", old).await,
        report_rows
    );
    let after = stack.timeline(old).await;
    assert_eq!(after[..timeline_before.len()], timeline_before[..]);
    assert_eq!(
        after[timeline_before.len()..],
        ["privacy.erased".to_owned()]
    );
    assert_eq!(stack.timeline(open).await, open_timeline);
    assert_eq!(stack.timeline(later).await, later_timeline);
    assert_eq!(scoreboards(&stack, &district, &month).await, rates_before);
    let actor: String = sqlx::query_scalar(
        "SELECT actor_id FROM timeline WHERE incident_id = $1 AND kind = 'privacy.erased'",
    )
    .bind(old)
    .fetch_one(stack.pool())
    .await
    .unwrap();
    assert_eq!(actor, "system");
    let notes = privacy_entries(old).await;
    assert!(
        notes.len() == 1 && notes[0].contains("365 天") && notes[0].contains("2 张"),
        "{notes:?}"
    );
    let audited: Vec<(String, String, String, serde_json::Value)> = sqlx::query_as(
        "SELECT actor, target, area_code, before FROM audit_log WHERE action = 'photos.erase'",
    )
    .fetch_all(stack.pool())
    .await
    .unwrap();
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert!(audited[0].0.starts_with("whistle-dispatch@"), "{audited:?}");
    assert_eq!(
        (audited[0].1.as_str(), audited[0].2.as_str()),
        (old.to_string().as_str(), first.as_str())
    );
    let mut listed: Vec<String> = serde_json::from_value(audited[0].3["photos"].clone()).unwrap();
    listed.sort();
    assert_eq!(listed, [gone[0].0.clone(), gone[1].0.clone()]);

    // Readers see which photos were erased, and GetPhoto says so rather than failing blindly.
    let shown = detail(&stack, old).await;
    for photo in &shown.photos {
        let should = photo.photo_id == only_old || photo.photo_id == work;
        assert_eq!(photo.erased_at.is_some(), should, "{photo:?}");
        assert_eq!(photo.erased_why.contains("365 天"), should, "{photo:?}");
    }
    let refused = get_photo(&stack, old, &only_old).await.unwrap_err();
    assert_eq!(refused.code(), Code::NotFound);
    assert_eq!(whistle_query::reason(&refused), Some("photo_erased"));
    assert!(
        refused.message().contains("365 天"),
        "{}",
        refused.message()
    );
    assert_eq!(get_photo(&stack, old, &held).await.unwrap().data, jpeg(3));

    // Once the later incident's year is up too, `shared` goes, and both incidents that showed
    // it say so; `held` stays as long as the open incident is open.
    stack.advance(TimeDelta::days(100));
    eventually("the shared photo erased", WAIT, || async {
        erased(&stack)
            .await
            .iter()
            .any(|(p, removed)| *p == shared && *removed)
    })
    .await
    .unwrap();
    assert!(!in_bucket(&stack, &shared).await);
    let notes = privacy_entries(old).await;
    assert!(notes.len() == 2 && notes[1].contains("1 张"), "{notes:?}");
    let notes = privacy_entries(later).await;
    assert!(notes.len() == 1 && notes[0].contains("1 张"), "{notes:?}");
    assert!(privacy_entries(open).await.is_empty());
    assert!(in_bucket(&stack, &held).await);
    assert_eq!(erased(&stack).await.len(), 3);
    assert_eq!(
        stack
            .count("SELECT count(*) FROM audit_log WHERE action = 'photos.erase'")
            .await,
        3
    );
}

/// Replicas running the pass at once erase each photo once: one tombstone, one timeline entry
/// and one audit entry per incident, whichever replica got there first.
#[tokio::test]
async fn replicas_erasing_at_once_erase_each_photo_once_and_a_request_erases_at_once() {
    let stack = Stack::builder()
        .with_query()
        .at(ten_o_clock_in_ordos())
        .with_dispatch_options(|o| o.retention_interval = Duration::ZERO)
        .start()
        .await;
    let (_, [first, second, third], _, _) = places();
    let photo = |n: u8| format!("{n:02x}").repeat(32);
    let filed = |id: &str, grid: &str, photos: Vec<String>| {
        let mut report = stack.filed(id, grid, "heating.no_heat", v1::Urgency::Normal);
        report.photo_ids = photos;
        report
    };
    // Photo 9 is shown by `a` and by `c`, which stays open.
    let a = stack
        .file(&filed(
            "race-a",
            &first,
            (1..=5).chain([9]).map(photo).collect(),
        ))
        .await;
    let b = stack.file(&filed("race-b", &second, vec![photo(6)])).await;
    let c = stack
        .file(&filed("still-open", &third, vec![photo(9)]))
        .await;
    for (incident, grid) in [(a, &first), (b, &second)] {
        let community = format!("hd-{}", unit(grid, Level::Community));
        stack.ok(&community, incident, resolve()).await;
        stack.ok(&format!("gw-{grid}"), incident, satisfied()).await;
    }
    // The photos of reports are recorded with the reports.
    assert_eq!(stack.count("SELECT count(*) FROM photo_refs").await, 8);
    stack.advance(TimeDelta::days(400));
    let now = stack.now();
    let due = photos::due(stack.pool(), now - TimeDelta::days(365), 100)
        .await
        .unwrap();
    assert_eq!(due.len(), 6);
    let actor = Actor::service("whistle-dispatch");
    let why = Why::Retention {
        settled_before: now - TimeDelta::days(365),
    };
    let runs = (0..4).map(|_| photos::erase(stack.pool(), &due, why, &actor, "保存期限届满", now));
    let results = futures::future::join_all(runs).await;
    let total: usize = results
        .iter()
        .map(|r| r.as_ref().unwrap().photos.len())
        .sum();
    assert_eq!(total, 6, "{results:?}");
    assert_eq!(stack.count("SELECT count(*) FROM photo_erasures").await, 6);
    for incident in [a, b] {
        assert_eq!(
            stack
                .count(&format!(
                    "SELECT count(*) FROM timeline WHERE incident_id = '{incident}' AND kind = 'privacy.erased'"
                ))
                .await,
            // Each replica writes only what it erased: several entries on one incident are
            // possible only if they split its photos, and then they add up to its count.
            results
                .iter()
                .filter(|r| r.as_ref().unwrap().incidents.iter().any(|(i, _)| *i == incident))
                .count() as i64,
        );
    }
    // The photo an open incident shows is neither due nor erased when named.
    assert!(!due.contains(&photo(9)));
    let refused = photos::erase(stack.pool(), &[photo(9)], why, &actor, "保存期限届满", now)
        .await
        .unwrap();
    assert_eq!(refused, photos::Erased::default());
    let status = stack.state(c).await.0;
    assert!(
        !["closed", "closed_unverified", "duplicate"].contains(&status.as_str()),
        "{status}"
    );
    let erased_per_incident: i64 = stack
        .count(
            "SELECT coalesce(sum(jsonb_array_length(data->'erased_photos')), 0) FROM timeline
             WHERE kind = 'privacy.erased'",
        )
        .await;
    assert_eq!(erased_per_incident, 6);

    // A person's request: photos of an open incident, erased at once, and again nothing.
    let open = stack
        .file(&filed("asked", &first, vec![photo(7), photo(8)]))
        .await;
    let asker = Actor::cli(Some("op-privacy"));
    let erased = photos::erase(
        stack.pool(),
        &[photo(7)],
        Why::Request,
        &asker,
        "依申请（PIPL-2026-002）",
        stack.now(),
    )
    .await
    .unwrap();
    assert_eq!(erased.photos, [photo(7)]);
    assert_eq!(erased.incidents, [(open, vec![photo(7)])]);
    let again = photos::erase(
        stack.pool(),
        &[photo(7)],
        Why::Request,
        &asker,
        "again",
        stack.now(),
    )
    .await
    .unwrap();
    assert_eq!(again, photos::Erased::default());
    let (by, note): (String, String) = sqlx::query_as(
        "SELECT actor_id, note FROM timeline WHERE incident_id = $1 AND kind = 'privacy.erased'",
    )
    .bind(open)
    .fetch_one(stack.pool())
    .await
    .unwrap();
    assert_eq!(by, "op-privacy");
    assert!(
        note.contains("PIPL-2026-002") && note.contains("1 张"),
        "{note}"
    );
    let listed = detail(&stack, open).await;
    let state: Vec<(String, bool)> = listed
        .photos
        .iter()
        .map(|p| (p.photo_id.clone(), p.erased_at.is_some()))
        .collect();
    assert_eq!(state, [(photo(7), true), (photo(8), false)]);
    assert_eq!(
        stack
            .count(
                "SELECT count(*) FROM audit_log WHERE action = 'photos.erase'
                 AND actor = 'op-privacy' AND door = 'cli' AND after->>'why' LIKE '%PIPL-2026-002%'"
            )
            .await,
        1
    );
    // The shown-by listing a request starts from.
    let shown = photos::shown_by(stack.pool(), &[open]).await.unwrap();
    assert_eq!(
        shown
            .iter()
            .map(|s| (
                s.photo_id.as_str(),
                s.report_id.as_str(),
                s.erased_at.is_some()
            ))
            .collect::<Vec<_>>(),
        [
            (photo(7).as_str(), "asked", true),
            (photo(8).as_str(), "asked", false)
        ]
    );
}

/// Rejected reports (contacts masked, still personal data) are removed by age, counted on the
/// audit log; younger ones stay.
#[tokio::test]
async fn rejected_reports_go_after_their_retention() {
    let stack = Stack::builder()
        .at(ten_o_clock_in_ordos())
        .with_dispatch_options(|o| o.retention_interval = Duration::from_millis(200))
        .start()
        .await;
    let (_, [grid, ..], _, _) = places();
    let refused = |id: &str| {
        let mut report = stack.filed(id, &grid, "heating.no_heat", v1::Urgency::Normal);
        report.category = "no.such.category".into();
        report
    };
    stack.publish(&refused("rejected-old")).await;
    eventually("the first rejection recorded", WAIT, || async {
        stack.count("SELECT count(*) FROM rejected_reports").await == 1
    })
    .await
    .unwrap();
    stack.advance(TimeDelta::days(60));
    stack.publish(&refused("rejected-young")).await;
    eventually("the second rejection recorded", WAIT, || async {
        stack.count("SELECT count(*) FROM rejected_reports").await == 2
    })
    .await
    .unwrap();
    stack.advance(TimeDelta::days(31));
    eventually("the 91-day-old rejection removed", WAIT, || async {
        stack.count("SELECT count(*) FROM rejected_reports").await == 1
    })
    .await
    .unwrap();
    let left: String = sqlx::query_scalar("SELECT report_id FROM rejected_reports")
        .fetch_one(stack.pool())
        .await
        .unwrap();
    assert_eq!(left, "rejected-young");
    let (rows, why): (i64, String) = sqlx::query_as(
        "SELECT (before->>'rows')::int8, after->>'why' FROM audit_log WHERE action = 'rejected.erase'",
    )
    .fetch_one(stack.pool())
    .await
    .unwrap();
    assert_eq!(rows, 1);
    assert!(why.contains("90 天"), "{why}");
}

/// Reports stored before photo references were kept (migration 25 lists them as pending) have
/// their photos read from the stored payload by the job's first pass, and are then erased like
/// any others.
#[tokio::test]
async fn reports_stored_before_photo_references_are_indexed_then_erased() {
    let stack = Stack::builder()
        .at(ten_o_clock_in_ordos())
        .with_dispatch_options(|o| o.retention_interval = Duration::from_millis(200))
        .start()
        .await;
    let (_, [grid, ..], _, _) = places();
    let photo = "ab".repeat(32);
    let mut report = stack.filed("before-25", &grid, "heating.no_heat", v1::Urgency::Normal);
    report.photo_ids = vec![photo.clone()];
    let incident = stack.file(&report).await;
    let community = format!("hd-{}", unit(&grid, Level::Community));
    stack.ok(&community, incident, resolve()).await;
    stack.ok(&format!("gw-{grid}"), incident, satisfied()).await;
    // As the migration leaves a report stored by an older dispatch: no reference, pending.
    sqlx::raw_sql(
        "DELETE FROM photo_refs WHERE report_id = 'before-25';
         INSERT INTO photo_refs_pending VALUES ('before-25'), ('gone-since');",
    )
    .execute(stack.pool())
    .await
    .unwrap();
    eventually("the pending reports indexed", WAIT, || async {
        stack.count("SELECT count(*) FROM photo_refs_pending").await == 0
    })
    .await
    .unwrap();
    let refs: Vec<(String, Uuid, String)> =
        sqlx::query_as("SELECT photo_id, incident_id, report_id FROM photo_refs")
            .fetch_all(stack.pool())
            .await
            .unwrap();
    assert_eq!(refs, [(photo.clone(), incident, "before-25".to_owned())]);
    stack.advance(TimeDelta::days(366));
    eventually("the indexed photo erased", WAIT, || async {
        stack
            .count("SELECT count(*) FROM photo_erasures WHERE removed_at IS NOT NULL")
            .await
            == 1
    })
    .await
    .unwrap();
}

/// The `LISTEN` statements of dispatch's connections (seen as its own role, which alone may read
/// their text).
async fn dispatch_listens(stack: &Stack) -> Vec<String> {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(&stack.db().dispatch_url)
        .await
        .unwrap();
    sqlx::query_scalar(
        "SELECT query FROM pg_stat_activity
         WHERE usename = current_user AND pid <> pg_backend_pid() AND query LIKE 'LISTEN%'
         ORDER BY query",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_request_s_photo_leaves_the_bucket_at_once() {
    // Dispatch's retention pass comes once an hour, as in production: only the request's
    // notification can wake it in time. Two replicas, both woken.
    let stack = Stack::builder()
        .with_query()
        .at(ten_o_clock_in_ordos())
        .with_dispatch_options(|o| o.retention_interval = Duration::from_secs(3600))
        .start()
        .await;
    let replica = stack.spawn_dispatch().await;
    let (_, [grid, ..], _, _) = places();
    let mut form = reporting(&stack, &stack.token_for(Role::GridWorker, &grid).await).await;
    let mut uploaded = Vec::new();
    for seed in [41, 42] {
        let answer = form
            .upload_photo(v1::UploadPhotoRequest { data: jpeg(seed) })
            .await
            .unwrap();
        uploaded.push(answer.into_inner().photo_id);
    }
    let mut report = stack.filed("asked-now", &grid, "heating.no_heat", v1::Urgency::Normal);
    report.photo_ids = uploaded.clone();
    let incident = stack.file(&report).await;
    assert!(in_bucket(&stack, &uploaded[0]).await && in_bucket(&stack, &uploaded[1]).await);

    // Each replica follows every channel on one connection of its pool (the tests' pool has
    // four): policy approvals, org imports, people's changes and photo erasures together.
    eventually("both replicas listening", WAIT, || async {
        dispatch_listens(&stack).await.len() >= 2
    })
    .await
    .unwrap();
    let listens = dispatch_listens(&stack).await;
    assert_eq!(listens.len(), 2, "{listens:?}");
    for listen in &listens {
        for channel in [
            "whistle_policy",
            "whistle_org",
            "whistle_people",
            photos::ERASED_CHANNEL,
        ] {
            assert!(listen.contains(channel), "{listen} lacks {channel}");
        }
    }

    let asked = std::time::Instant::now();
    let done = photos::erase(
        stack.pool(),
        &uploaded[..1],
        Why::Request,
        &Actor::cli(Some("op-privacy")),
        "依申请（PIPL-2026-003）",
        stack.now(),
    )
    .await
    .unwrap();
    assert_eq!(done.incidents, [(incident, vec![uploaded[0].clone()])]);
    eventually(
        "the erased photo's bytes gone",
        Duration::from_secs(5),
        || async { !in_bucket(&stack, &uploaded[0]).await },
    )
    .await
    .unwrap();
    eventually("its removal recorded", Duration::from_secs(5), || async {
        erased(&stack).await == [(uploaded[0].clone(), true)]
    })
    .await
    .unwrap();
    eprintln!(
        "a request's photo left the bucket {} ms after the erasure",
        asked.elapsed().as_millis()
    );
    // The photo not named stays; the request's entries are the only ones, however many replicas
    // removed the bytes.
    assert!(in_bucket(&stack, &uploaded[1]).await);
    assert_eq!(
        stack
            .count("SELECT count(*) FROM audit_log WHERE action = 'photos.erase'")
            .await,
        1
    );
    assert_eq!(
        stack
            .count("SELECT count(*) FROM timeline WHERE kind = 'privacy.erased'")
            .await,
        1
    );
    replica.stop().await;
}
