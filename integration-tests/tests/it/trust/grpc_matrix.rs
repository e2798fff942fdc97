//! Every role × every RPC of the gRPC door, each with its exact answer: reads of the district
//! 150602 and of an incident in one of its grids, a grid worker's report, and every Dispatch RPC
//! naming someone else as its actor (the door refuses impersonation before dispatch sees it).
//! The Open311 door's keys and devices' credentials are refused by every RPC; a leader reads its
//! paired areas only. The RPCs are checked against the proto
//! files' services, so a new RPC without its row fails here.

use tonic::{Code, Request};
use uuid::Uuid;
use whistle_proto::v1::{
    self, command::Body, command_center_client::CommandCenterClient,
    dispatch_client::DispatchClient, reporting_client::ReportingClient,
};
use whistle_store::tokens::Role;
use whistle_wire::Verb;

use crate::harness::*;

const GRID: &str = "150602001001001";
const DISTRICT: &str = "150602";
const DEPARTMENT: &str = "150602-urban_management";

/// The callers, in the table's column order.
const CALLERS: [&str; 10] = [
    "city op",
    "district op",
    "liaison",
    "viewer",
    "grid worker",
    "none",
    "open311 key",
    "hotline key",
    "leader",
    "device",
];

/// The leader of the matrix: the district's leader paired with GRID's community.
const LEADER: &str = "ld-150602-01";

use Code::{NotFound, Ok as Y, PermissionDenied as No, Unauthenticated as Anon};

/// The CommandCenter and Reporting RPCs with what each caller gets.
const READS: [(&str, [Code; 10]); 30] = [
    //                  city  district liaison viewer grid  none  open311 hotline leader device
    ("GetOverview", [Y, Y, Y, Y, No, Anon, No, No, No, No]),
    ("ListIncidents", [Y, Y, Y, Y, No, Anon, No, No, No, No]),
    ("GetIncident", [Y, Y, Y, Y, Y, Anon, No, No, Y, No]),
    ("GetScoreboard", [Y, Y, Y, Y, No, Anon, No, No, No, No]),
    ("ListOverdue", [Y, Y, Y, Y, No, Anon, No, No, No, No]),
    ("ListLedger", [Y, Y, Y, Y, No, Anon, No, No, No, No]),
    ("ListHotspots", [Y, Y, Y, Y, No, Anon, No, No, No, No]),
    // A topic in the grid: its worker may measure it too.
    ("GetHotspotChange", [Y, Y, Y, Y, Y, Anon, No, No, No, No]),
    // The org tree (names and codes of units) is open to every token, leaders' included.
    ("GetOrgTree", [Y, Y, Y, Y, Y, Anon, No, No, Y, No]),
    // So are the policy's catalogue (the report form) and the departments (改派).
    ("GetCatalogue", [Y, Y, Y, Y, Y, Anon, No, No, Y, No]),
    ("ListDepartments", [Y, Y, Y, Y, Y, Anon, No, No, No, No]),
    ("WatchEvents", [Y, Y, Y, Y, No, Anon, No, No, No, No]),
    ("GetSession", [Y, Y, Y, Y, Y, Anon, No, No, Y, No]),
    ("GetTrend", [Y, Y, Y, Y, No, Anon, No, No, No, No]),
    ("GetGridMap", [Y, Y, Y, Y, No, Anon, No, No, No, No]),
    // Operators and viewers name the department; a liaison reads its own; grid workers have none.
    ("ListTasks", [Y, Y, Y, Y, No, Anon, No, No, No, No]),
    // Only grid workers file reports, so only they have reports of their own.
    ("ListMyReports", [No, No, No, No, Y, Anon, No, No, No, No]),
    ("SubmitReport", [No, No, No, No, Y, Anon, No, No, No, No]),
    // Photos are taken by whoever acts (a viewer does not); the matrix uploads a small JPEG.
    ("UploadPhoto", [Y, Y, Y, No, Y, Anon, No, No, No, No]),
    // A photo the incident does not have: not found for whoever may see its photos (operators and
    // its reporting worker), refused for the others who read the incident.
    (
        "GetPhoto",
        [NotFound, NotFound, No, No, NotFound, Anon, No, No, No, No],
    ),
    // A person's own notifications: a viewer's token belongs to no person.
    ("ListNotifications", [Y, Y, Y, No, Y, Anon, No, No, Y, No]),
    (
        "MarkNotificationsRead",
        [Y, Y, Y, No, Y, Anon, No, No, Y, No],
    ),
    // Personal data and administration: operators of the area only.
    (
        "ListContactAccess",
        [Y, Y, No, No, No, Anon, No, No, No, No],
    ),
    ("ListAuditEntries", [Y, Y, No, No, No, Anon, No, No, No, No]),
    ("ListPeople", [Y, Y, No, No, No, Anon, No, No, No, No]),
    // A leader's view of its paired areas: leaders only.
    (
        "ListPairedIncidents",
        [No, No, No, No, No, Anon, No, No, Y, No],
    ),
    // The volunteers' offers and service boards: the area's for operators and viewers; liaisons,
    // grid workers, leaders and devices have no part in them (member tokens: it::volunteers).
    ("ListOffers", [Y, Y, No, Y, No, Anon, No, No, No, No]),
    ("GetServiceBoard", [Y, Y, No, Y, No, Anon, No, No, No, No]),
    // The devices' maintenance list: operators of the area only.
    ("ListDevices", [Y, Y, No, No, No, Anon, No, No, No, No]),
    // The screen's 党建引领 panel: the command centre's operators and viewers, within their area.
    ("GetPartyPanel", [Y, Y, No, Y, No, Anon, No, No, No, No]),
];

async fn read(stack: &Stack, rpc: &str, token: &str, incident: Uuid, n: usize) -> Code {
    let mut center = CommandCenterClient::with_interceptor(stack.channel(), bearer(token));
    let area = || DISTRICT.to_owned();
    match rpc {
        "GetOverview" => code(
            center
                .get_overview(v1::GetOverviewRequest {
                    area_code: area(),
                    ..Default::default()
                })
                .await,
        ),
        "ListIncidents" => code(
            center
                .list_incidents(v1::ListIncidentsRequest {
                    area_code: area(),
                    ..Default::default()
                })
                .await,
        ),
        "GetIncident" => code(
            center
                .get_incident(v1::GetIncidentRequest {
                    incident_id: incident.to_string(),
                })
                .await,
        ),
        "GetScoreboard" => code(
            center
                .get_scoreboard(v1::GetScoreboardRequest {
                    area_code: area(),
                    kind: v1::ScoreboardKind::Departments as i32,
                    ..Default::default()
                })
                .await,
        ),
        "ListOverdue" => code(
            center
                .list_overdue(v1::ListOverdueRequest {
                    area_code: area(),
                    ..Default::default()
                })
                .await,
        ),
        "ListLedger" => code(
            center
                .list_ledger(v1::ListLedgerRequest {
                    area_code: area(),
                    ..Default::default()
                })
                .await,
        ),
        "ListHotspots" => code(
            center
                .list_hotspots(v1::ListHotspotsRequest {
                    area_code: area(),
                    ..Default::default()
                })
                .await,
        ),
        "GetHotspotChange" => code(
            center
                .get_hotspot_change(v1::GetHotspotChangeRequest {
                    key: format!("{GRID}/municipal"),
                    since: Some(whistle_proto::timestamp_from_unix_millis(0)),
                    months: 1,
                })
                .await,
        ),
        "GetOrgTree" => code(
            center
                .get_org_tree(v1::GetOrgTreeRequest {
                    root_code: area(),
                    depth: 1,
                })
                .await,
        ),
        "WatchEvents" => code(
            center
                .watch_events(v1::WatchEventsRequest {
                    area_code: area(),
                    ..Default::default()
                })
                .await,
        ),
        "GetSession" => code(center.get_session(v1::GetSessionRequest {}).await),
        "GetCatalogue" => code(center.get_catalogue(v1::GetCatalogueRequest {}).await),
        "ListDepartments" => code(
            center
                .list_departments(v1::ListDepartmentsRequest { area_code: area() })
                .await,
        ),
        "GetTrend" => code(
            center
                .get_trend(v1::GetTrendRequest {
                    area_code: area(),
                    hours: 24,
                })
                .await,
        ),
        "GetGridMap" => code(
            center
                .get_grid_map(v1::GetGridMapRequest { area_code: area() })
                .await,
        ),
        "ListTasks" => code(
            center
                .list_tasks(v1::ListTasksRequest {
                    department_code: DEPARTMENT.into(),
                    ..Default::default()
                })
                .await,
        ),
        "ListMyReports" => code(
            center
                .list_my_reports(v1::ListMyReportsRequest::default())
                .await,
        ),
        "SubmitReport" => {
            let mut reporting = ReportingClient::with_interceptor(stack.channel(), bearer(token));
            let mut report = stack.filed(
                &format!("matrix-{n}"),
                GRID,
                "municipal.street_light",
                v1::Urgency::Normal,
            );
            report.reporter_id.clear();
            code(
                reporting
                    .submit_report(v1::SubmitReportRequest {
                        report: Some(report),
                    })
                    .await,
            )
        }
        "UploadPhoto" => {
            let mut reporting = ReportingClient::with_interceptor(stack.channel(), bearer(token));
            let mut data = vec![0xFF, 0xD8, 0xFF, 0xE0];
            data.extend((0..256).map(|i| (i as u8) ^ (n as u8)));
            code(
                reporting
                    .upload_photo(v1::UploadPhotoRequest { data })
                    .await,
            )
        }
        "GetPhoto" => code(
            center
                .get_photo(v1::GetPhotoRequest {
                    incident_id: incident.to_string(),
                    photo_id: "0".repeat(64),
                })
                .await,
        ),
        "ListNotifications" => code(
            center
                .list_notifications(v1::ListNotificationsRequest::default())
                .await,
        ),
        "MarkNotificationsRead" => code(
            center
                .mark_notifications_read(v1::MarkNotificationsReadRequest::default())
                .await,
        ),
        "ListContactAccess" => code(
            center
                .list_contact_access(v1::ListContactAccessRequest {
                    area_code: area(),
                    ..Default::default()
                })
                .await,
        ),
        "ListAuditEntries" => code(
            center
                .list_audit_entries(v1::ListAuditEntriesRequest {
                    area_code: area(),
                    ..Default::default()
                })
                .await,
        ),
        "ListPeople" => code(
            center
                .list_people(v1::ListPeopleRequest {
                    area_code: area(),
                    ..Default::default()
                })
                .await,
        ),
        "ListOffers" => code(
            center
                .list_offers(v1::ListOffersRequest {
                    area_code: area(),
                    ..Default::default()
                })
                .await,
        ),
        "GetServiceBoard" => code(
            center
                .get_service_board(v1::GetServiceBoardRequest {
                    area_code: area(),
                    kind: v1::ServiceBoardKind::Units as i32,
                    ..Default::default()
                })
                .await,
        ),
        "GetPartyPanel" => code(
            center
                .get_party_panel(v1::GetPartyPanelRequest { area_code: area() })
                .await,
        ),
        "ListPairedIncidents" => code(
            center
                .list_paired_incidents(v1::ListPairedIncidentsRequest::default())
                .await,
        ),
        "ListDevices" => code(
            center
                .list_devices(v1::ListDevicesRequest { area_code: area() })
                .await,
        ),
        other => unreachable!("no RPC {other}"),
    }
}

/// A command of `verb` on `incident` naming `actor`; the body's content does not matter, because
/// the door refuses the actor first.
fn forged(verb: Verb, incident: Uuid, actor: &str) -> v1::Command {
    let task_id = "1".to_owned();
    let note = "matrix".to_owned();
    let body = match verb {
        Verb::Accept => Body::Accept(v1::Accept { task_id, note }),
        Verb::Return => Body::Return(v1::Return {
            task_id,
            note,
            ..Default::default()
        }),
        Verb::Resolve => Body::Resolve(v1::Resolve {
            task_id,
            note,
            photo_ids: Vec::new(),
        }),
        Verb::Escalate => Body::Escalate(v1::Escalate {
            note,
            department_codes: Vec::new(),
            assisting_department_codes: Vec::new(),
        }),
        Verb::Verify => Body::Verify(v1::Verify {
            note,
            ..Default::default()
        }),
        Verb::Supervise => Body::Supervise(v1::Supervise { task_id, note }),
        Verb::Reassign => Body::Reassign(v1::Reassign {
            task_id,
            to_department_code: DEPARTMENT.into(),
            note,
        }),
        Verb::Comment => Body::Comment(v1::Comment { text: note }),
        Verb::RequestExtension => Body::RequestExtension(v1::RequestExtension {
            task_id: String::new(),
            until: None,
            reason: note,
        }),
        Verb::DecideExtension => Body::DecideExtension(v1::DecideExtension {
            approve: true,
            note,
        }),
        Verb::Dispute => Body::Dispute(v1::Dispute {
            task_id,
            to_department_code: DEPARTMENT.into(),
            reason: note,
        }),
        Verb::DecideDispute => Body::DecideDispute(v1::DecideDispute {
            task_id,
            uphold: true,
            note,
        }),
        Verb::SubmitAssist => Body::SubmitAssist(v1::SubmitAssist { task_id, note }),
        Verb::ReleaseAssist => Body::ReleaseAssist(v1::ReleaseAssist { task_id, note }),
        Verb::ProposeLedger => Body::ProposeLedger(v1::ProposeLedger {
            reason: v1::LedgerReason::Funding as i32,
            note,
            responsible: DEPARTMENT.into(),
            review_at: None,
        }),
        Verb::DecideLedger => Body::DecideLedger(v1::DecideLedger {
            approve: true,
            note,
        }),
        Verb::ReviewLedger => Body::ReviewLedger(v1::ReviewLedger {
            extend_to: None,
            note,
        }),
        Verb::OnboardPerson => Body::OnboardPerson(v1::OnboardPerson {
            person_id: "li-matrix".into(),
            name: note,
            phone: "13900001111".into(),
            role: "liaison".into(),
            post: DEPARTMENT.into(),
        }),
        Verb::ChangePerson => Body::ChangePerson(v1::ChangePerson {
            person_id: format!("li-{DEPARTMENT}"),
            name: note,
            ..Default::default()
        }),
        Verb::OffboardPerson => Body::OffboardPerson(v1::OffboardPerson {
            person_id: format!("li-{DEPARTMENT}"),
            successor_id: String::new(),
        }),
        Verb::Adopt => Body::Adopt(v1::Adopt {
            topic_key: format!("{GRID}/property"),
            lead_department_code: DEPARTMENT.into(),
            note,
            ..Default::default()
        }),
        Verb::CompleteMilestone => {
            Body::CompleteMilestone(v1::CompleteMilestone { milestone: 1, note })
        }
        Verb::OfferToVolunteers => Body::OfferToVolunteers(v1::OfferToVolunteers {
            community_code: "150602001001".into(),
            title: note.clone(),
            ..Default::default()
        }),
        Verb::ClaimOffer => Body::ClaimOffer(v1::ClaimOffer {
            offer_id: "01900000-0000-7000-8000-0000000000aa".into(),
        }),
        Verb::ReleaseOffer => Body::ReleaseOffer(v1::ReleaseOffer {
            offer_id: "01900000-0000-7000-8000-0000000000aa".into(),
            note: note.clone(),
        }),
        Verb::CompleteOffer => Body::CompleteOffer(v1::CompleteOffer {
            offer_id: "01900000-0000-7000-8000-0000000000aa".into(),
            note: note.clone(),
            photo_ids: Vec::new(),
            minutes: 30,
        }),
        Verb::ConfirmOffer => Body::ConfirmOffer(v1::ConfirmOffer {
            offer_id: "01900000-0000-7000-8000-0000000000aa".into(),
            note: note.clone(),
            ..Default::default()
        }),
        Verb::RateOffer => Body::RateOffer(v1::RateOffer {
            offer_id: "01900000-0000-7000-8000-0000000000aa".into(),
            rating: v1::Satisfaction::Satisfied as i32,
            note: note.clone(),
        }),
        Verb::WithdrawOffer => Body::WithdrawOffer(v1::WithdrawOffer {
            offer_id: "01900000-0000-7000-8000-0000000000aa".into(),
            reason: note.clone(),
        }),
        Verb::Endorse => Body::Endorse(v1::Endorse { note }),
    };
    v1::Command {
        command_id: Uuid::now_v7().to_string(),
        actor_id: actor.into(),
        incident_id: incident.to_string(),
        expected_version: 0,
        body: Some(body),
    }
}

async fn act(stack: &Stack, verb: Verb, token: &str, command: v1::Command) -> Code {
    let mut dispatch = DispatchClient::with_interceptor(stack.channel(), bearer(token));
    let request = Request::new(command);
    code(match verb {
        Verb::Accept => dispatch.accept(request).await,
        Verb::Return => dispatch.r#return(request).await,
        Verb::Resolve => dispatch.resolve(request).await,
        Verb::Escalate => dispatch.escalate(request).await,
        Verb::Verify => dispatch.verify(request).await,
        Verb::Supervise => dispatch.supervise(request).await,
        Verb::Reassign => dispatch.reassign(request).await,
        Verb::Comment => dispatch.comment(request).await,
        Verb::RequestExtension => dispatch.request_extension(request).await,
        Verb::DecideExtension => dispatch.decide_extension(request).await,
        Verb::Dispute => dispatch.dispute(request).await,
        Verb::DecideDispute => dispatch.decide_dispute(request).await,
        Verb::SubmitAssist => dispatch.submit_assist(request).await,
        Verb::ReleaseAssist => dispatch.release_assist(request).await,
        Verb::ProposeLedger => dispatch.propose_ledger(request).await,
        Verb::DecideLedger => dispatch.decide_ledger(request).await,
        Verb::ReviewLedger => dispatch.review_ledger(request).await,
        Verb::OnboardPerson => dispatch.onboard_person(request).await,
        Verb::ChangePerson => dispatch.change_person(request).await,
        Verb::OffboardPerson => dispatch.offboard_person(request).await,
        Verb::Adopt => dispatch.adopt(request).await,
        Verb::CompleteMilestone => dispatch.complete_milestone(request).await,
        Verb::OfferToVolunteers => dispatch.offer_to_volunteers(request).await,
        Verb::ClaimOffer => dispatch.claim_offer(request).await,
        Verb::ReleaseOffer => dispatch.release_offer(request).await,
        Verb::CompleteOffer => dispatch.complete_offer(request).await,
        Verb::ConfirmOffer => dispatch.confirm_offer(request).await,
        Verb::RateOffer => dispatch.rate_offer(request).await,
        Verb::WithdrawOffer => dispatch.withdraw_offer(request).await,
        Verb::Endorse => dispatch.endorse(request).await,
    })
}

/// A water-level sensor of GRID's credential: it reports over NATS, and every RPC refuses it.
async fn device_token(stack: &Stack) -> String {
    whistle_store::devices::register(
        stack.pool(),
        "wl-matrix",
        whistle_domain::devices::DeviceKind::WaterLevel,
        &GRID.parse().unwrap(),
        "",
        chrono::Utc::now(),
        &admin(),
    )
    .await
    .unwrap();
    let new = whistle_store::tokens::NewToken {
        role: Some(Role::Device),
        device_id: Some("wl-matrix".into()),
        ..Default::default()
    };
    whistle_store::tokens::create(stack.pool(), &new, chrono::Utc::now(), &admin())
        .await
        .unwrap()
        .1
}

/// `Bearer ` with nothing after it for the caller without a token.
fn bearer(token: &str) -> Bearer {
    Bearer::new(token).expect("an ASCII token")
}

/// The table names every RPC of the gRPC door's services, and no other.
#[test]
fn the_table_covers_every_rpc_of_the_proto_files() {
    let pool = prost_reflect::DescriptorPool::decode(whistle_proto::FILE_DESCRIPTOR_SET)
        .expect("the descriptor set decodes");
    let mut served: Vec<String> = ["CommandCenter", "Reporting", "Dispatch"]
        .iter()
        .flat_map(|service| {
            pool.get_service_by_name(&format!("whistle.v1.{service}"))
                .unwrap_or_else(|| panic!("no service whistle.v1.{service}"))
                .methods()
                .map(|m| m.name().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    served.sort();
    let mut tabled: Vec<String> = READS
        .iter()
        .map(|(rpc, _)| (*rpc).to_owned())
        .chain(Verb::ALL.into_iter().map(dispatch_rpc))
        .collect();
    tabled.sort();
    assert_eq!(tabled, served);
}

/// The Dispatch RPC carrying `verb`: its subject token in CamelCase (`request_extension` is
/// `RequestExtension`).
fn dispatch_rpc(verb: Verb) -> String {
    verb.as_str()
        .split('_')
        .map(|word| word[..1].to_uppercase() + &word[1..])
        .collect()
}

#[tokio::test]
async fn every_role_gets_exactly_its_answer_from_every_rpc() {
    let stack = Stack::command_center().await;
    seed_leaders(stack.pool()).await;
    let incident = stack
        .report("matrix-incident", GRID, "municipal.street_light")
        .await;
    let tokens = [
        stack.token_for(Role::Operator, "150600").await,
        stack.token_for(Role::Operator, DISTRICT).await,
        stack.token_for(Role::Liaison, DEPARTMENT).await,
        stack.token_for(Role::Viewer, DISTRICT).await,
        stack.token_for(Role::GridWorker, GRID).await,
        String::new(),
        stack.token_for(Role::Open311, DISTRICT).await,
        stack.token_for(Role::Hotline, DISTRICT).await,
        leader_token(stack.pool(), LEADER, DISTRICT).await,
        device_token(&stack).await,
    ];

    let mut wrong = Vec::new();
    let mut n = 0;
    for (rpc, expected) in READS {
        for (caller, (token, want)) in CALLERS.iter().zip(tokens.iter().zip(expected)) {
            n += 1;
            let got = read(&stack, rpc, token, incident, n).await;
            if got != want {
                wrong.push(format!("{rpc} by {caller}: {got:?}, expected {want:?}"));
            }
        }
    }
    // Every Dispatch RPC naming another person: impersonation is refused for every caller that
    // may act at all, and a viewer never acts.
    for verb in Verb::ALL {
        for (caller, token) in CALLERS.iter().zip(&tokens) {
            let want = if token.is_empty() { Anon } else { No };
            let got = act(&stack, verb, token, forged(verb, incident, "op-150603")).await;
            if got != want {
                wrong.push(format!(
                    "{verb} as op-150603 by {caller}: {got:?}, expected {want:?}"
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} cells differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
