//! Every role × every subject family × publish and subscribe, each with its exact allow or deny.
//! A denied publish comes back as the server's permissions violation; a denied subscription too,
//! and it receives nothing the admin publishes; an allowed one receives it.

use std::time::Duration;

use futures::StreamExt as _;
use whistle_auth::Service;
use whistle_domain::Level;
use whistle_store::tokens::Role;
use whistle_wire::{kind, subject, Verb};

use crate::harness::*;

const GRID: &str = "150602001001001";
const DISTRICT: &str = "150602";
const STREET: &str = "150602001";
const DEPARTMENT: &str = "150602-urban_management";

/// Who connects: the people's roles by token, the services by nkey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    GridWorker,
    Liaison,
    DistrictOperator,
    CityOperator,
    Viewer,
    /// A Party member of a community of the district (docs/party.md).
    Member,
    Leader,
    Dispatch,
    Query,
    Admin,
}

impl Who {
    const ALL: [Who; 10] = [
        Who::GridWorker,
        Who::Liaison,
        Who::DistrictOperator,
        Who::CityOperator,
        Who::Viewer,
        Who::Member,
        Who::Leader,
        Who::Dispatch,
        Who::Query,
        Who::Admin,
    ];

    /// The person it acts as (a service sends commands of a person it names).
    fn person(self) -> &'static str {
        match self {
            Who::GridWorker => "gw-150602001001001",
            Who::Liaison => "li-150602-urban_management",
            Who::CityOperator => "op-150600",
            Who::Member => "pm-150602001001-9001",
            Who::Leader => "ld-150602-01",
            _ => "op-150602",
        }
    }
}

/// The subject families, in the table's column order.
const FAMILIES: [&str; 16] = [
    "report own",
    "report other",
    "report own, another channel",
    "event own",
    "event other",
    "task own",
    "task other",
    "cmd own",
    "cmd other",
    "$JS.API.>",
    "_INBOX.>",
    "another's inbox",
    "own inbox",
    "$SYS.>",
    "$O.>",
    ">",
];

/// Publish and subscribe per family: `Y` allowed, `N` denied, `-` not applicable (one cannot
/// publish on a wildcard).
const TABLE: [(Who, &str, &str); 10] = [
    //                        publish            subscribe
    (
        Who::GridWorker,
        /*   */ "YNNNNNNYNNNNNNN-",
        "NNNNNNNNNNNNYNNN",
    ),
    (
        Who::Liaison,
        /*      */ "NNNNNNNYNNNNNNN-",
        "NNNNNYNNNNNNYNNN",
    ),
    (
        Who::DistrictOperator,
        "NNNNNNNYNNNNNNN-",
        "NNNYNYNNNNNNYNNN",
    ),
    (
        Who::CityOperator,
        /* */ "NNNNNNNYNNNNNNN-",
        "NNNYYYYNNNNNYNNN",
    ),
    (
        Who::Viewer,
        /*       */ "NNNNNNNNNNNNNNN-",
        "NNNYNNNNNNNNYNNN",
    ),
    // A member sends only claims, give-backs and completions (not the family's comment) and
    // reads only its inbox.
    (
        Who::Member,
        /*       */ "NNNNNNNNNNNNNNN-",
        "NNNNNNNNNNNNYNNN",
    ),
    // A leader publishes only its own 领导督办 and comments (the `cmd own` probe is a comment).
    (
        Who::Leader,
        /*       */ "NNNNNNNYNNNNNNN-",
        "NNNNNNNNNNNNYNNN",
    ),
    (
        Who::Dispatch,
        /*     */ "NNNYYYYNNNNNNNN-",
        "NNNNNNNYYNNNYNNN",
    ),
    (
        Who::Query,
        /*        */ "YYYNNNNYYNNNNNN-",
        "NNNNNNNNNNNNYNNN",
    ),
    (
        Who::Admin,
        /*        */ "YYYYYYYYYYYYYYY-",
        "YYYYYYYYYYYYYYYY",
    ),
];

/// A grid, street and department outside district 150602.
struct Elsewhere {
    grid: String,
    district: String,
    street: String,
    department: String,
}

fn elsewhere() -> Elsewhere {
    let org = whistle_domain::OrgIndex::build(whistle_domain::ordos::dataset()).unwrap();
    let grid = grids()
        .into_iter()
        .find(|g| !g.starts_with(DISTRICT))
        .expect("a grid of another district");
    let code: whistle_domain::AreaCode = grid.parse().unwrap();
    let district = code.at_level(Level::District).unwrap().to_string();
    let street = code.at_level(Level::Street).unwrap().to_string();
    let mut departments: Vec<String> = org
        .departments()
        .filter(|d| d.area.as_str() == district)
        .map(|d| d.code.to_string())
        .collect();
    departments.sort();
    Elsewhere {
        grid,
        department: departments.remove(0),
        district,
        street,
    }
}

/// The subject published on, and the filter subscribed to, of each family for `who`.
fn subjects(who: Who, inbox: &str, other: &Elsewhere) -> Vec<(Option<String>, String)> {
    let own = |s: String| (Some(s.clone()), s);
    vec![
        own(subject::report(&GRID.parse().unwrap())),
        own(subject::report(&other.grid.parse().unwrap())),
        own(subject::channel_report(
            &GRID.parse().unwrap(),
            whistle_proto::v1::Channel::Hotline12345,
        )),
        own(subject::incident_event(
            DISTRICT,
            STREET,
            kind::INCIDENT_REPORTED,
        )),
        own(subject::incident_event(
            &other.district,
            &other.street,
            kind::INCIDENT_REPORTED,
        )),
        own(subject::task_event(DEPARTMENT, kind::TASK_ACCEPTED)),
        own(subject::task_event(&other.department, kind::TASK_ACCEPTED)),
        own(subject::command(Verb::Comment, who.person())),
        own(subject::command(Verb::Comment, "gw-150602001001002")),
        (Some("$JS.API.INFO".into()), "$JS.API.>".into()),
        (Some("_INBOX.shared".into()), "_INBOX.>".into()),
        (
            Some("_INBOX_someone-else.x".into()),
            "_INBOX_someone-else.>".into(),
        ),
        (Some(format!("{inbox}.x")), format!("{inbox}.>")),
        (Some("$SYS.REQ.SERVER.PING".into()), "$SYS.>".into()),
        (Some("$O.files.C.x".into()), "$O.>".into()),
        (None, ">".into()),
    ]
}

/// A subject inside `filter`, for the admin to publish while a subscription listens.
fn inside(filter: &str) -> String {
    match filter.strip_suffix('>') {
        Some("") => "whistle.probe".into(),
        Some(prefix) => format!("{prefix}probe"),
        None => filter.to_owned(),
    }
}

async fn connect(stack: &Stack, who: Who) -> Person {
    let token = |role: Role, scope: &str| {
        let (role, scope) = (role, scope.to_owned());
        async move { stack.token_for(role, &scope).await }
    };
    match who {
        Who::GridWorker => stack.connect_as(&token(Role::GridWorker, GRID).await).await,
        Who::Liaison => {
            stack
                .connect_as(&token(Role::Liaison, DEPARTMENT).await)
                .await
        }
        Who::DistrictOperator => {
            stack
                .connect_as(&token(Role::Operator, DISTRICT).await)
                .await
        }
        Who::CityOperator => {
            stack
                .connect_as(&token(Role::Operator, "150600").await)
                .await
        }
        Who::Viewer => stack.connect_as(&token(Role::Viewer, DISTRICT).await).await,
        Who::Member => {
            let token = stack
                .member_token(Who::Member.person(), "150602001001")
                .await;
            stack.connect_as(&token).await
        }
        Who::Leader => {
            stack
                .connect_as(&leader_token(stack.pool(), who.person(), DISTRICT).await)
                .await
        }
        Who::Dispatch => stack.connect_service(Service::Dispatch).await,
        Who::Query => stack.connect_service(Service::Query).await,
        Who::Admin => stack.connect_service(Service::Admin).await,
    }
}

/// Waits for the server's verdict on what `person` sent: its violation naming `subject`, or a
/// round trip without one.
async fn verdict(person: &mut Person, subject: &str) -> bool {
    person.client.flush().await.expect("flushing");
    // A violation comes back within milliseconds on loopback; wait well beyond that.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(400);
    loop {
        match tokio::time::timeout_at(deadline, person.events.recv()).await {
            Ok(Some(event)) if is_violation(&event, Some(subject)) => return false,
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => return true,
        }
    }
}

#[tokio::test]
async fn every_role_may_do_exactly_what_its_work_needs_on_every_subject_family() {
    let stack = Stack::builder().without_dispatch().start().await;
    seed_leaders(stack.pool()).await;
    let admin = stack.admin();
    let other = elsewhere();
    let mut wrong = Vec::new();
    // Every role and service has its row (a new one must be added to the table).
    let roles = [
        Role::GridWorker,
        Role::Liaison,
        Role::Operator,
        Role::Viewer,
        Role::Member,
        Role::Leader,
    ];
    for role in roles {
        let row = |who: Who| TABLE.iter().any(|(w, _, _)| *w == who);
        assert!(match role {
            Role::GridWorker => row(Who::GridWorker),
            Role::Liaison => row(Who::Liaison),
            Role::Operator => row(Who::DistrictOperator) && row(Who::CityOperator),
            Role::Viewer => row(Who::Viewer),
            Role::Member => row(Who::Member),
            Role::Leader => row(Who::Leader),
            // Keys of the Open311 door get no NATS identity at all (it::open311 checks); a
            // device's identity is checked by it::devices.
            Role::Open311 | Role::Hotline | Role::Device => true,
        });
    }
    for service in Service::ALL {
        let who = match service {
            Service::Dispatch => Some(Who::Dispatch),
            Service::Query => Some(Who::Query),
            Service::Admin => Some(Who::Admin),
            // Alone in their own accounts, they see no application subject at all.
            Service::Callout | Service::Revoker => None,
        };
        assert!(who.is_none_or(|who| TABLE.iter().any(|(w, _, _)| *w == who)));
    }
    assert_eq!(TABLE.len(), Who::ALL.len());
    for (who, publish, subscribe) in TABLE {
        let mut person = connect(&stack, who).await;
        let inbox = person.inbox_prefix.clone();
        let families = subjects(who, &inbox, &other);
        for (((family, (publish_on, filter)), may_publish), may_subscribe) in FAMILIES
            .iter()
            .zip(&families)
            .zip(publish.chars())
            .zip(subscribe.chars())
        {
            if let Some(subject) = publish_on {
                person
                    .client
                    .publish(subject.clone(), "probe".into())
                    .await
                    .unwrap();
                let allowed = verdict(&mut person, subject).await;
                if allowed != (may_publish == 'Y') {
                    wrong.push(format!("{who:?} publish {family} ({subject}): {allowed}"));
                }
            } else {
                assert_eq!(may_publish, '-', "{who:?} {family}");
            }

            let mut subscriber = person.client.subscribe(filter.clone()).await.unwrap();
            let allowed = verdict(&mut person, filter).await;
            let probe = inside(filter);
            if allowed {
                // Delivered: the admin publishes until it arrives.
                let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
                let received = loop {
                    admin.publish(probe.clone(), "probe".into()).await.unwrap();
                    admin.flush().await.unwrap();
                    match tokio::time::timeout(Duration::from_millis(200), subscriber.next()).await
                    {
                        Ok(Some(_)) => break true,
                        _ if tokio::time::Instant::now() > deadline => break false,
                        _ => {}
                    }
                };
                assert!(
                    received,
                    "{who:?} subscribed to {filter} but received nothing"
                );
            } else {
                admin.publish(probe.clone(), "probe".into()).await.unwrap();
                admin.flush().await.unwrap();
                expect_nothing(&mut subscriber).await;
            }
            if allowed != (may_subscribe == 'Y') {
                wrong.push(format!("{who:?} subscribe {family} ({filter}): {allowed}"));
            }
            drop(subscriber);
        }
    }
    assert!(
        wrong.is_empty(),
        "not as the table says:\n{}",
        wrong.join("\n")
    );
}
