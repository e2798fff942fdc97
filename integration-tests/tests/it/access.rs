//! Who may read and act through the query service: bearer tokens, their area or department
//! scope, `whistle.v1.Dispatch` forwarding commands as the token's person with dispatch's refusals
//! mapped to gRPC codes, and TLS.

use chrono::TimeDelta;
use tonic::Code;
use uuid::Uuid;
use whistle_domain::Level;
use whistle_proto::v1::{
    self, command::Body, command_center_client::CommandCenterClient,
    dispatch_client::DispatchClient,
};
use whistle_store::tokens::{self, NewToken, Role};

use crate::harness::*;

async fn dispatch_client(stack: &Stack, token: &str) -> DispatchClient<Authed> {
    let channel = tonic::transport::Endpoint::from_shared(stack.query_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    DispatchClient::with_interceptor(channel, Bearer::new(token).unwrap())
}

fn command(incident: Uuid, body: Body) -> v1::Command {
    v1::Command {
        command_id: Uuid::now_v7().to_string(),
        actor_id: String::new(),
        incident_id: incident.to_string(),
        expected_version: 0,
        body: Some(body),
    }
}

#[tokio::test]
async fn a_viewer_reads_only_inside_its_district_and_never_acts() {
    let stack = Stack::command_center().await;
    let (district, [a_grid, ..], other_district, b_grid) = places();
    let a = stack
        .file(&stack.filed("scope-a", &a_grid, "municipal.road", v1::Urgency::Normal))
        .await;
    let b = stack
        .file(&stack.filed("scope-b", &b_grid, "municipal.road", v1::Urgency::Normal))
        .await;
    let token = stack.token_for(Role::Viewer, &district).await;
    let mut viewer = command_center(&stack.query_url(), &token).await;

    // Without an area a read covers the token's district, and only it.
    let listed = viewer
        .list_incidents(v1::ListIncidentsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .incidents;
    let ids: Vec<&str> = listed.iter().map(|i| i.incident_id.as_str()).collect();
    assert_eq!(ids, [a.to_string()]);
    // The overview reads the live aggregates, which follow the stream, not PostgreSQL.
    stack.caught_up().await;
    let overview = viewer
        .get_overview(v1::GetOverviewRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (overview.area_code.as_str(), overview.open_incidents),
        (district.as_str(), 1)
    );
    assert!(viewer
        .get_incident(v1::GetIncidentRequest {
            incident_id: a.to_string()
        })
        .await
        .is_ok());

    // The other district is out of reach, whichever way it is asked for.
    let denied = viewer
        .list_incidents(v1::ListIncidentsRequest {
            area_code: other_district.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(denied.message().contains(&other_district), "{denied:?}");
    assert_eq!(
        code(
            viewer
                .get_incident(v1::GetIncidentRequest {
                    incident_id: b.to_string()
                })
                .await
        ),
        Code::PermissionDenied
    );
    assert_eq!(
        code(
            viewer
                .get_overview(v1::GetOverviewRequest {
                    area_code: other_district.clone(),
                    window: None,
                })
                .await
        ),
        Code::PermissionDenied
    );
    assert_eq!(
        code(
            viewer
                .list_overdue(v1::ListOverdueRequest {
                    area_code: "150600".into(),
                    ..Default::default()
                })
                .await
        ),
        Code::PermissionDenied
    );
    assert_eq!(
        code(
            viewer
                .get_scoreboard(v1::GetScoreboardRequest {
                    area_code: other_district.clone(),
                    month: String::new(),
                    kind: v1::ScoreboardKind::Departments as i32,
                })
                .await
        ),
        Code::PermissionDenied
    );
    // The org tree is the city's public structure.
    assert!(viewer
        .get_org_tree(v1::GetOrgTreeRequest::default())
        .await
        .is_ok());

    // A viewer cannot send commands at all.
    let refused = dispatch_client(&stack, &token)
        .await
        .comment(command(
            a,
            Body::Comment(v1::Comment {
                text: "看一下".into(),
            }),
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn calls_without_a_valid_token_are_unauthenticated_and_health_stays_open() {
    let stack = Stack::command_center().await;
    let url = stack.query_url();
    let mut anonymous = CommandCenterClient::connect(url.clone()).await.unwrap();
    let refused = anonymous
        .get_org_tree(v1::GetOrgTreeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(refused.message().contains("whistle token create"));
    for bad in ["wst_not-a-real-token", "", "Basic abc"] {
        let mut client = command_center(&url, bad).await;
        assert_eq!(
            code(client.get_org_tree(v1::GetOrgTreeRequest::default()).await),
            Code::Unauthenticated,
            "{bad:?}"
        );
    }

    // Revoked and expired tokens are refused.
    let revoked = stack.token_for(Role::Viewer, "150600").await;
    let all = tokens::list(stack.pool()).await.unwrap();
    let id = all
        .iter()
        .find(|t| t.area_code == "150600" && t.role == Role::Viewer);
    assert!(
        tokens::revoke(stack.pool(), id.unwrap().id, chrono::Utc::now(), &admin())
            .await
            .unwrap()
    );
    let mut client = command_center(&url, &revoked).await;
    assert_eq!(
        code(client.get_org_tree(v1::GetOrgTreeRequest::default()).await),
        Code::Unauthenticated
    );
    let (_, expiring) = tokens::create(
        stack.pool(),
        &NewToken {
            role: Some(Role::Viewer),
            area_code: Some("150600".into()),
            expires_at: Some(stack.now() + TimeDelta::hours(1)),
            ..Default::default()
        },
        stack.now(),
        &admin(),
    )
    .await
    .unwrap();
    stack.advance(TimeDelta::hours(2));
    let mut client = command_center(&url, &expiring).await;
    assert_eq!(
        code(client.get_org_tree(v1::GetOrgTreeRequest::default()).await),
        Code::Unauthenticated
    );

    // Only a hash is stored.
    let stored: Vec<Vec<u8>> = sqlx::query_scalar("SELECT token_sha256 FROM api_tokens")
        .fetch_all(stack.pool())
        .await
        .unwrap();
    assert!(stored.contains(&tokens::digest(&revoked).to_vec()));
    assert!(!stored.iter().any(|s| s
        .windows(8)
        .any(|w| revoked.as_bytes().windows(8).any(|r| r == w))));

    // Health answers without a token.
    let channel = tonic::transport::Channel::from_shared(url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let health = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await;
    assert!(health.is_ok());
}

#[tokio::test]
async fn tokens_are_refused_at_creation_when_their_scope_does_not_fit() {
    let stack = Stack::builder().database_only().start().await;
    let db = stack.db();
    let now = chrono::Utc::now();
    let refused = |new: NewToken| {
        let pool = db.pool.clone();
        async move {
            match tokens::create(&pool, &new, now, &admin()).await {
                Err(tokens::Refused::Invalid(message)) => message,
                other => panic!("{new:?} gave {other:?}"),
            }
        }
    };
    let area = |role, area: &str| NewToken {
        role: Some(role),
        area_code: Some(area.into()),
        ..Default::default()
    };
    assert!(refused(area(Role::Operator, "150699"))
        .await
        .contains("no area 150699"));
    assert!(refused(area(Role::Liaison, "150602"))
        .await
        .contains("--department"));
    assert!(refused(NewToken {
        person_id: Some("op-150603".into()),
        ..area(Role::Operator, "150602")
    })
    .await
    .contains("op-150603 is not the operator"));
    assert!(refused(NewToken {
        expires_at: Some(now - TimeDelta::seconds(1)),
        ..area(Role::Viewer, "150602")
    })
    .await
    .contains("future"));
    assert!(refused(NewToken {
        role: Some(Role::Liaison),
        department_code: Some("150602-nope".into()),
        ..Default::default()
    })
    .await
    .contains("no department"));
    // A liaison token reads inside its department's district and acts as its liaison.
    let (liaison, _) = tokens::create(
        &db.pool,
        &NewToken {
            role: Some(Role::Liaison),
            department_code: Some("150602-housing_construction".into()),
            ..Default::default()
        },
        now,
        &admin(),
    )
    .await
    .unwrap();
    assert_eq!(liaison.area_code, "150602");
    assert_eq!(
        liaison.person_id.as_deref(),
        Some("li-150602-housing_construction")
    );
}

#[tokio::test]
async fn dispatch_rpcs_act_as_the_token_s_person_and_map_refusals_to_grpc_codes() {
    let stack = Stack::command_center().await;
    let (_, [grid, ..], other_district, _) = places();
    let incident = stack
        .file(&stack.filed(
            "grpc-cmd",
            &grid,
            "petition.collective",
            v1::Urgency::Urgent,
        ))
        .await;
    let petitions = dept(&grid, "petitions");
    let street = unit(&grid, Level::Street);
    stack
        .ok(&format!("hd-{street}"), incident, escalate())
        .await;
    let liaison = stack.token_for(Role::Liaison, &petitions).await;
    let mut client = dispatch_client(&stack, &liaison).await;

    // Accept over gRPC: applied as the department's liaison; a retry gets the same answer.
    let accept_once = command(incident, accept(1));
    let ok = client
        .accept(accept_once.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.task_id, "1");
    assert_eq!(ok.task_status, v1::TaskStatus::Accepted as i32);
    let again = client.accept(accept_once).await.unwrap().into_inner();
    assert_eq!(again, ok);
    let holder: Option<String> =
        sqlx::query_scalar("SELECT holder_id FROM tasks WHERE incident_id = $1 AND task_id = 1")
            .bind(incident)
            .fetch_one(stack.pool())
            .await
            .unwrap();
    assert_eq!(holder, Some(format!("li-{petitions}")));

    // Each refusal of dispatch arrives as its gRPC code.
    let refusal = |result: Result<tonic::Response<v1::CommandOk>, tonic::Status>| {
        let status = result.unwrap_err();
        (status.code(), status.message().to_owned())
    };
    let (code_, _) = refusal(client.accept(command(incident, accept(1))).await);
    assert_eq!(code_, Code::FailedPrecondition, "accepting twice");
    let (code_, _) = refusal(client.accept(command(Uuid::now_v7(), accept(1))).await);
    assert_eq!(code_, Code::NotFound, "unknown incident");
    let stale = v1::Command {
        expected_version: 1,
        ..command(
            incident,
            Body::Comment(v1::Comment {
                text: "进展如何".into(),
            }),
        )
    };
    assert_eq!(refusal(client.comment(stale).await).0, Code::Aborted);
    let no_id = v1::Command {
        command_id: String::new(),
        ..command(incident, Body::Comment(v1::Comment { text: "x".into() }))
    };
    assert_eq!(
        refusal(client.comment(no_id).await).0,
        Code::InvalidArgument
    );
    // The RPC and the body must agree, and the actor is the token's.
    let (code_, message) = refusal(client.accept(command(incident, resolve())).await);
    assert_eq!(code_, Code::InvalidArgument);
    assert!(message.contains("`accept`"), "{message}");
    let posing = v1::Command {
        actor_id: format!("op-{other_district}"),
        ..command(incident, accept(1))
    };
    assert_eq!(
        refusal(client.accept(posing).await).0,
        Code::PermissionDenied
    );
    // Another department's liaison may not act on this task.
    let other = stack
        .token_for(Role::Liaison, &dept(&grid, "justice"))
        .await;
    let refused = refusal(
        dispatch_client(&stack, &other)
            .await
            .resolve(command(
                incident,
                Body::Resolve(v1::Resolve {
                    task_id: "1".into(),
                    note: "办结".into(),
                    photo_ids: Vec::new(),
                }),
            ))
            .await,
    );
    assert_eq!(refused.0, Code::PermissionDenied, "{refused:?}");
}

#[tokio::test]
async fn commands_without_a_running_dispatch_are_unavailable() {
    let stack = Stack::builder()
        .without_dispatch()
        .with_query()
        .start()
        .await;
    let token = stack.token_for(Role::Operator, "150600").await;
    let channel = tonic::transport::Endpoint::from_shared(stack.query_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let refused = DispatchClient::with_interceptor(channel, Bearer::new(&token).unwrap())
        .supervise(command(
            Uuid::now_v7(),
            Body::Supervise(v1::Supervise {
                task_id: String::new(),
                note: "督办".into(),
            }),
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);
    assert!(refused.message().contains("no dispatch"), "{refused:?}");
}

#[tokio::test]
async fn with_a_certificate_the_listener_speaks_tls_only() {
    let dir = TempDir::new("tls").unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let stack = Stack::builder()
        .without_dispatch()
        .with_query_options(|options| {
            options.tls_cert = Some(cert_path);
            options.tls_key = Some(key_path);
        })
        .start()
        .await;
    let token = stack.token_for(Role::Viewer, "150600").await;

    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(cert.pem()))
        .domain_name("localhost");
    let channel = tonic::transport::Endpoint::from_shared(format!(
        "https://localhost:{}",
        stack.query_addr().port()
    ))
    .unwrap()
    .tls_config(tls)
    .unwrap()
    .connect()
    .await
    .expect("a TLS connection");
    let tree = CommandCenterClient::with_interceptor(channel, Bearer::new(&token).unwrap())
        .get_org_tree(v1::GetOrgTreeRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tree.code, "150600");

    // Plaintext gRPC gets no answer.
    let plain = tonic::transport::Endpoint::from_shared(stack.query_url())
        .unwrap()
        .connect_lazy();
    assert!(
        CommandCenterClient::with_interceptor(plain, Bearer::new(&token).unwrap())
            .get_org_tree(v1::GetOrgTreeRequest::default())
            .await
            .is_err()
    );
}
