//! Photos (issue 19, item 7): a report's photos (before) and a resolution's (after), stored in the
//! JetStream object store bucket `WHISTLE_PHOTOS` through `Reporting.UploadPhoto` — limited in
//! size, typed by their bytes, named by their SHA-256 so a re-upload stores nothing twice — and
//! served by `GetPhoto` under the incident's authorization, every photo served logged. Nobody
//! reaches the bucket over NATS but the query service (and dispatch, only to remove erased photos),
//! and the policy can require photos.

use sha2::{Digest, Sha256};
use tonic::{Code, Status};
use uuid::Uuid;
use whistle_domain::photo::MAX_PHOTO_BYTES;
use whistle_proto::v1::{
    self, command::Body, command_reply::Outcome, reporting_client::ReportingClient,
};
use whistle_store::tokens::Role;
use whistle_wire::names::{PHOTOS_BUCKET, PHOTOS_STREAM};

use crate::harness::*;

/// A small JPEG as far as its bytes tell (the signature, then filler), distinct per `seed`.
fn jpeg(seed: u8, len: usize) -> Vec<u8> {
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0];
    bytes.extend((0..len.saturating_sub(4)).map(|i| (i as u8) ^ seed));
    bytes
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn upload(
    client: &mut ReportingClient<Authed>,
    data: Vec<u8>,
) -> Result<v1::UploadPhotoResponse, Status> {
    client
        .upload_photo(v1::UploadPhotoRequest { data })
        .await
        .map(|r| r.into_inner())
}

fn refused(result: Result<impl std::fmt::Debug, Status>) -> (Code, String) {
    let status = result.expect_err("refused");
    (
        status.code(),
        whistle_query::reason(&status)
            .unwrap_or_default()
            .to_owned(),
    )
}

/// Messages in the bucket's stream: chunks and metadata.
async fn stored_messages(stack: &Stack) -> u64 {
    stack
        .js()
        .get_stream(PHOTOS_STREAM)
        .await
        .expect("the photo bucket exists")
        .info()
        .await
        .expect("stream info")
        .state
        .messages
}

/// A report as the form sends it, with photos.
fn form_report(id: &str, category: &str, photos: &[&str]) -> v1::SubmitReportRequest {
    v1::SubmitReportRequest {
        report: Some(v1::Report {
            report_id: id.into(),
            category: category.into(),
            urgency: v1::Urgency::Urgent as i32,
            title: "井盖缺失".into(),
            photo_ids: photos.iter().map(|p| p.to_string()).collect(),
            ..Default::default()
        }),
    }
}

fn incident_of(answer: &v1::SubmitReportResponse) -> Uuid {
    answer
        .incident
        .as_ref()
        .unwrap_or_else(|| panic!("no incident: {answer:?}"))
        .incident_id
        .parse()
        .unwrap()
}

#[tokio::test]
async fn uploads_are_limited_in_size_typed_by_their_bytes_and_stored_once() {
    let stack = Stack::command_center().await;
    let (district, [grid, ..], _, _) = places();
    let mut worker = reporting(&stack, &stack.token_for(Role::GridWorker, &grid).await).await;

    // A 300 KiB photo: several chunks; its id is a SHA-256 (of its uploader and its bytes).
    let photo = jpeg(1, 300 * 1024);
    let stored = upload(&mut worker, photo.clone()).await.unwrap();
    assert!(
        stored.photo_id.len() == 64
            && stored
                .photo_id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{}",
        stored.photo_id
    );
    assert_eq!(
        (stored.media_type.as_str(), stored.size_bytes),
        ("image/jpeg", photo.len() as u64)
    );
    let messages = stored_messages(&stack).await;
    // The same bytes again (a retry after a lost answer): the same id, nothing stored twice.
    let again = upload(&mut worker, photo.clone()).await.unwrap();
    assert_eq!(again, stored);
    assert_eq!(stored_messages(&stack).await, messages);

    // The type comes from the bytes: a PNG is a PNG, a page or a script named .jpg is nothing.
    let png = [b"\x89PNG\r\n\x1a\n".as_slice(), &[7; 64]].concat();
    assert_eq!(
        upload(&mut worker, png).await.unwrap().media_type,
        "image/png"
    );
    for not_a_photo in [
        b"<html><script>alert(1)</script></html>".to_vec(),
        b"GIF89a\x01\x00\x01\x00".to_vec(),
        b"%PDF-1.7".to_vec(),
    ] {
        assert_eq!(
            refused(upload(&mut worker, not_a_photo).await),
            (Code::InvalidArgument, "photo_type".into())
        );
    }
    // At most 2 MiB (the form compresses on the device); an empty file is no photo.
    assert!(upload(&mut worker, jpeg(2, MAX_PHOTO_BYTES)).await.is_ok());
    assert_eq!(
        refused(upload(&mut worker, jpeg(3, MAX_PHOTO_BYTES + 1)).await),
        (Code::InvalidArgument, "photo_too_large".into())
    );
    assert_eq!(
        refused(upload(&mut worker, Vec::new()).await),
        (Code::InvalidArgument, "photo_empty".into())
    );

    // Liaisons and operators photograph their work; a viewer uploads nothing, no token nothing.
    for (role, scope) in [
        (Role::Liaison, dept(&grid, "urban_management")),
        (Role::Operator, district.clone()),
    ] {
        let mut client = reporting(&stack, &stack.token_for(role, &scope).await).await;
        assert!(upload(&mut client, jpeg(4, 100)).await.is_ok(), "{role:?}");
    }
    let mut viewer = reporting(&stack, &stack.token_for(Role::Viewer, &district).await).await;
    assert_eq!(
        refused(upload(&mut viewer, jpeg(5, 100)).await).0,
        Code::PermissionDenied
    );
    let mut anonymous = ReportingClient::new(stack.channel());
    let status = anonymous
        .upload_photo(v1::UploadPhotoRequest { data: jpeg(6, 100) })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn photos_are_served_under_the_incidents_authorization_and_every_photo_served_is_logged() {
    let stack = Stack::command_center().await;
    let (district, [grid, other_grid, _], other_district, _) = places();
    let reporter = stack.token_for(Role::GridWorker, &grid).await;
    let mut form = reporting(&stack, &reporter).await;
    let photo = jpeg(7, 40_000);
    let photo_id = upload(&mut form, photo.clone()).await.unwrap().photo_id;

    // A report may name only photos that were uploaded.
    let never_uploaded = sha256_hex(b"never uploaded");
    assert_eq!(
        refused(
            form.submit_report(form_report(
                "photo-ghost",
                "petition.collective",
                &[&never_uploaded],
            ))
            .await
        ),
        (Code::InvalidArgument, "photo_not_found".into())
    );

    // Nor may it name another person's photo, though its id is known: the same bytes uploaded by
    // another grid worker are another photo.
    let mut other_form = reporting(
        &stack,
        &stack.token_for(Role::GridWorker, &other_grid).await,
    )
    .await;
    assert_eq!(
        refused(
            other_form
                .submit_report(form_report(
                    "photo-theirs",
                    "petition.collective",
                    &[&photo_id],
                ))
                .await
        ),
        (Code::InvalidArgument, "photo_not_found".into())
    );
    let their_copy = upload(&mut other_form, photo.clone())
        .await
        .unwrap()
        .photo_id;
    assert_ne!(their_copy, photo_id);

    let answer = form
        .submit_report(form_report("photo-1", "petition.collective", &[&photo_id]))
        .await
        .unwrap()
        .into_inner();
    let incident = incident_of(&answer);
    // Another incident's photo is not this one's to serve.
    let other_photo = upload(&mut form, jpeg(8, 1_000)).await.unwrap().photo_id;

    let get = |token: String, photo: String| {
        let url = stack.query_url();
        async move {
            command_center(&url, &token)
                .await
                .get_photo(v1::GetPhotoRequest {
                    incident_id: incident.to_string(),
                    photo_id: photo,
                })
                .await
                .map(|r| r.into_inner())
        }
    };
    let logged = || stack.count("SELECT count(*) FROM contact_access WHERE door = 'GetPhoto'");

    // The district's operator sees it listed as the report's photo and gets its bytes, logged.
    let operator = stack.token_for(Role::Operator, &district).await;
    let detail = command_center(&stack.query_url(), &operator)
        .await
        .get_incident(v1::GetIncidentRequest {
            incident_id: incident.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(detail.photos.len(), 1);
    let listed = &detail.photos[0];
    assert_eq!(
        (
            listed.photo_id.as_str(),
            listed.kind,
            listed.report_id.as_str()
        ),
        (photo_id.as_str(), v1::PhotoKind::Before as i32, "photo-1")
    );
    let served = get(operator.clone(), photo_id.clone()).await.unwrap();
    assert_eq!(
        (served.data, served.media_type.as_str()),
        (photo.clone(), "image/jpeg")
    );
    assert_eq!(logged().await, 1);
    // So does the worker who reported it.
    assert!(get(reporter.clone(), photo_id.clone()).await.is_ok());
    assert_eq!(logged().await, 2);

    // Nobody else: another district's operator, another grid's worker, a viewer, a department
    // without a task on it. Nothing served, nothing logged.
    let refusals = [
        (
            stack.token_for(Role::Operator, &other_district).await,
            Code::PermissionDenied,
        ),
        (
            stack.token_for(Role::GridWorker, &other_grid).await,
            Code::PermissionDenied,
        ),
        (
            stack.token_for(Role::Viewer, &district).await,
            Code::PermissionDenied,
        ),
        (
            stack
                .token_for(Role::Liaison, &dept(&grid, "urban_management"))
                .await,
            Code::PermissionDenied,
        ),
    ];
    for (token, code) in &refusals {
        assert_eq!(
            get(token.clone(), photo_id.clone())
                .await
                .unwrap_err()
                .code(),
            *code
        );
    }
    // The viewer reads the incident without its photos.
    let seen = command_center(&stack.query_url(), &refusals[2].0)
        .await
        .get_incident(v1::GetIncidentRequest {
            incident_id: incident.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(seen.photos.is_empty() && seen.reports.iter().all(|r| r.photo_ids.is_empty()));
    // A photo that is not the incident's, or no photo id at all.
    assert_eq!(
        get(operator.clone(), other_photo).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(
        get(operator.clone(), "../x".into())
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    assert_eq!(logged().await, 2);

    // The log says who saw which photo of which report, for operators to list.
    let log = command_center(&stack.query_url(), &operator)
        .await
        .list_contact_access(v1::ListContactAccessRequest {
            incident_id: incident.to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .accesses;
    let mut reads: Vec<_> = log
        .iter()
        .map(|a| {
            (
                a.door.as_str(),
                a.role.as_str(),
                a.photo_id.as_str(),
                a.report_id.as_str(),
            )
        })
        .collect();
    reads.sort();
    assert_eq!(
        reads,
        [
            ("GetPhoto", "grid_worker", photo_id.as_str(), "photo-1"),
            ("GetPhoto", "operator", photo_id.as_str(), "photo-1"),
        ]
    );

    // The city's operators list the same reads.
    let city_log = stack
        .client()
        .list_contact_access(v1::ListContactAccessRequest {
            incident_id: incident.to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .accesses;
    assert_eq!(city_log.len(), 2);

    // Once whistled, the summoned department sees it too.
    stack.whistle(&grid, incident).await;
    let holder = stack
        .tasks(incident)
        .await
        .into_iter()
        .map(|(_, department, _)| department)
        .next()
        .expect("a summoned department");
    let liaison = stack.token_for(Role::Liaison, &holder).await;
    assert!(get(liaison, photo_id.clone()).await.is_ok());
    assert_eq!(logged().await, 3);
}

#[tokio::test]
async fn nobody_but_the_services_reaches_the_photo_bucket_over_nats() {
    let stack = Stack::command_center().await;
    let (district, [grid, ..], _, _) = places();
    let worker_token = stack.token_for(Role::GridWorker, &grid).await;
    let mut form = reporting(&stack, &worker_token).await;
    let photo_id = upload(&mut form, jpeg(9, 5_000)).await.unwrap().photo_id;
    let meta = format!(
        "$O.{PHOTOS_BUCKET}.M.{}",
        whistle_query_object_name(&photo_id)
    );
    let direct_get = format!("$JS.API.DIRECT.GET.{PHOTOS_STREAM}.{meta}");

    // A grid worker's and an operator's own NATS credentials: no read, no write, no listing.
    for token in [
        worker_token.clone(),
        stack.token_for(Role::Operator, &district).await,
    ] {
        let mut attacker = stack.connect_as(&token).await;
        attacker
            .client
            .publish(format!("$O.{PHOTOS_BUCKET}.C.forged"), "x".into())
            .await
            .unwrap();
        attacker
            .expect_violation(&format!("$O.{PHOTOS_BUCKET}.C.forged"))
            .await;
        attacker
            .client
            .publish(direct_get.clone(), "".into())
            .await
            .unwrap();
        attacker.expect_violation(&direct_get).await;
        attacker
            .client
            .publish(format!("$JS.API.STREAM.INFO.{PHOTOS_STREAM}"), "".into())
            .await
            .unwrap();
        attacker
            .expect_violation(&format!("$JS.API.STREAM.INFO.{PHOTOS_STREAM}"))
            .await;
        let _sub = attacker
            .client
            .subscribe(format!("$O.{PHOTOS_BUCKET}.>"))
            .await
            .unwrap();
        attacker
            .expect_violation(&format!("$O.{PHOTOS_BUCKET}.>"))
            .await;
    }

    // Dispatch's key removes erased photos (docs/privacy.md): it reads their metadata, never a
    // photo's chunks, and writes none.
    let nuid = stack
        .js()
        .get_object_store(PHOTOS_BUCKET)
        .await
        .unwrap()
        .info(&photo_id)
        .await
        .unwrap()
        .nuid;
    let mut dispatch = stack
        .connect_service(whistle_auth::permissions::Service::Dispatch)
        .await;
    for subject in [
        format!("$JS.API.DIRECT.GET.{PHOTOS_STREAM}.$O.{PHOTOS_BUCKET}.C.{nuid}"),
        format!("$JS.API.DIRECT.GET.{PHOTOS_STREAM}"),
        format!("$O.{PHOTOS_BUCKET}.C.forged"),
    ] {
        dispatch
            .client
            .publish(subject.clone(), "".into())
            .await
            .unwrap();
        dispatch.expect_violation(&subject).await;
    }

    // Through the query service the photo is still whole.
    assert_eq!(stored_photo_len(&stack, &photo_id).await, 5_000);
}

/// How an object's name appears in its metadata subject (base64url, as async-nats encodes it).
fn whistle_query_object_name(name: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE.encode(name)
}

async fn stored_photo_len(stack: &Stack, photo_id: &str) -> usize {
    let store = stack
        .js()
        .get_object_store(PHOTOS_BUCKET)
        .await
        .expect("the admin opens the bucket");
    store.info(photo_id).await.expect("stored").size
}

/// The Ordos policy with municipal.manhole requiring a photo on reports and an after photo on
/// resolutions, in a file dispatch and query both load.
fn photo_policy(dir: &TempDir) -> String {
    let text = include_str!("../../../policy/ordos.toml")
        .replacen(
            "code = \"municipal.manhole\"",
            "code = \"municipal.manhole\"\nphoto_required = true\nafter_photo_required = true",
            1,
        )
        .replacen(
            "version = \"ordos-2026.1\"",
            "version = \"ordos-photos-test\"",
            1,
        );
    let path = dir.path().join("photos.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_category_can_require_a_photo_of_the_problem_and_of_the_work_done() {
    let dir = TempDir::new("whistle-it-photo-policy").unwrap();
    let policy = photo_policy(&dir);
    let (for_dispatch, for_query) = (policy.clone(), policy.clone());
    let stack = Stack::builder()
        .at(ten_o_clock_in_ordos())
        .with_dispatch_options(move |o| o.policy = for_dispatch)
        .with_query_options(move |o| o.policy = for_query)
        .start()
        .await;
    let (district, [grid, ..], _, _) = places();
    let mut form = reporting(&stack, &stack.token_for(Role::GridWorker, &grid).await).await;

    // The catalogue says so, for the form.
    let catalogue = stack
        .client()
        .get_catalogue(v1::GetCatalogueRequest {})
        .await
        .unwrap()
        .into_inner();
    let manhole = catalogue
        .groups
        .iter()
        .flat_map(|g| &g.categories)
        .find(|c| c.code == "municipal.manhole")
        .unwrap();
    assert!(manhole.photo_required && manhole.after_photo_required);

    // Without a photo the report is refused with its reason, over gRPC as over NATS.
    let refused = form
        .submit_report(form_report("no-photo", "municipal.manhole", &[]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (refused.outcome, refused.rejected_reason.as_str()),
        (v1::ReportOutcome::Rejected as i32, "photo_required")
    );
    let mut raw = stack.filed(
        "no-photo-nats",
        &grid,
        "municipal.manhole",
        v1::Urgency::Normal,
    );
    raw.attachments.clear();
    stack.publish(&raw).await;
    eventually("the NATS report rejected", WAIT, || async {
        stack
            .count("SELECT count(*) FROM rejected_reports WHERE report_id = 'no-photo-nats' AND reason = 'photo_required'")
            .await
            == 1
    })
    .await
    .unwrap();
    // Another category needs none.
    let other = form
        .submit_report(form_report("no-photo-ok", "heating.no_heat", &[]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(other.outcome, v1::ReportOutcome::Incident as i32);

    // With one, it opens an incident.
    let before = upload(&mut form, jpeg(10, 2_000)).await.unwrap().photo_id;
    let answer = form
        .submit_report(form_report("with-photo", "municipal.manhole", &[&before]))
        .await
        .unwrap()
        .into_inner();
    let incident = incident_of(&answer);

    // A resolution without an after photo is refused and changes nothing — over NATS …
    let handler = format!("op-{district}");
    let version = stack.detail(incident).await.incident.unwrap().version;
    let reply = stack.command(&handler, incident, resolve()).await;
    match reply.outcome {
        Some(Outcome::Error(e)) => {
            assert_eq!(e.code, v1::CommandErrorCode::PhotoRequired as i32);
            assert!(e.message.contains("municipal.manhole"), "{}", e.message);
        }
        other => panic!("resolved without a photo: {other:?}"),
    }
    // … and over gRPC, where the console reads the reason.
    let operator = stack.token_for(Role::Operator, &district).await;
    let mut commands = dispatch(&stack, &operator).await;
    let resolve_with = |photos: Vec<String>| v1::Command {
        command_id: Uuid::now_v7().to_string(),
        incident_id: incident.to_string(),
        body: Some(Body::Resolve(v1::Resolve {
            task_id: String::new(),
            note: "井盖已更换".into(),
            photo_ids: photos,
        })),
        ..Default::default()
    };
    let status = commands
        .resolve(resolve_with(Vec::new()))
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), whistle_query::reason(&status)),
        (Code::FailedPrecondition, Some("photo_required"))
    );
    let status = commands
        .resolve(resolve_with(vec![sha256_hex(b"not uploaded")]))
        .await
        .unwrap_err();
    assert_eq!(whistle_query::reason(&status), Some("photo_not_found"));
    assert_eq!(
        stack.detail(incident).await.incident.unwrap().version,
        version
    );

    // With an after photo it is resolved, and the incident shows both, before and after.
    let mut operator_uploads = reporting(&stack, &operator).await;
    let after = upload(&mut operator_uploads, jpeg(11, 3_000))
        .await
        .unwrap()
        .photo_id;
    commands
        .resolve(resolve_with(vec![after.clone()]))
        .await
        .unwrap();
    let detail = stack.detail(incident).await;
    let photos: Vec<_> = detail
        .photos
        .iter()
        .map(|p| (p.photo_id.as_str(), p.kind))
        .collect();
    assert_eq!(
        photos,
        [
            (before.as_str(), v1::PhotoKind::Before as i32),
            (after.as_str(), v1::PhotoKind::After as i32),
        ]
    );
    assert_eq!(
        detail.incident.unwrap().status,
        v1::IncidentStatus::Resolved as i32
    );
}
