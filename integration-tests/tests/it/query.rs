//! The query service end to end: incidents made by a real dispatch from reports and commands
//! over a private nats-server, read back through `whistle.v1.CommandCenter` by a tonic client
//! over the network, plus health, reflection and gRPC-web on the same listener.

use std::{
    collections::{BTreeMap, HashSet},
    net::SocketAddr,
    sync::Arc,
    time::Duration,
};

use chrono::{DateTime, FixedOffset, NaiveTime, TimeDelta, Utc};
use prost::Message as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;
use tonic::{transport::Channel, Code};
use uuid::Uuid;
use whistle_domain::{AreaCode, Level};
use whistle_proto::v1::{
    self, command::Body, command_center_client::CommandCenterClient, command_reply::Outcome,
};
use whistle_store::tokens::Role;
use whistle_wire::{Clock as _, CommandClient, ManualClock};

use crate::harness::*;

pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// A query service running in this process.
pub(crate) struct Query {
    pub(crate) addr: SocketAddr,
    pub(crate) shutdown: CancellationToken,
    pub(crate) task: tokio::task::JoinHandle<Result<(), whistle_query::Error>>,
    /// Its live aggregates, to wait until they caught up with the stream.
    pub(crate) aggregates: whistle_query::Aggregates,
}

impl Query {
    pub(crate) async fn start(
        nats: &NatsServer,
        db: &TestDb,
        clock: Arc<dyn whistle_wire::Clock>,
    ) -> Query {
        Query::start_with(nats, db, clock, |_| {}).await
    }

    /// With options the test adjusts.
    pub(crate) async fn start_with(
        nats: &NatsServer,
        db: &TestDb,
        clock: Arc<dyn whistle_wire::Clock>,
        adjust: impl FnOnce(&mut whistle_query::Options),
    ) -> Query {
        let mut options = whistle_query::Options {
            listen: "127.0.0.1:0".parse().unwrap(),
            database_url: db.url.clone(),
            nats_url: nats.url(),
            max_db_connections: 4,
            ..Default::default()
        };
        adjust(&mut options);
        let service = options
            .build_with_clock(clock)
            .await
            .expect("building query");
        let addr = service.local_addr();
        let aggregates = service.aggregates();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(service.run(shutdown.clone()));
        Query {
            addr,
            shutdown,
            task,
            aggregates,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Dispatch and query on one database and one manual clock, a grid worker's client, a NATS
/// client for commands and a gRPC client of the query service.
pub(crate) struct Stack {
    pub(crate) server: NatsServer,
    pub(crate) db: TestDb,
    pub(crate) clock: ManualClock,
    pub(crate) _dispatch: Dispatch,
    pub(crate) reporter: Reporter,
    pub(crate) nats: async_nats::Client,
    pub(crate) query: Query,
    /// A city operator's token, and a client sending it.
    pub(crate) token: String,
    pub(crate) client: CommandCenterClient<Authed>,
}

/// 10:00 today in Ordos (UTC+8), so that the test's hours stay inside one calendar day.
pub(crate) fn ten_o_clock_in_ordos() -> DateTime<Utc> {
    let ordos = FixedOffset::east_opt(8 * 3600).unwrap();
    Utc::now()
        .with_timezone(&ordos)
        .date_naive()
        .and_time(NaiveTime::from_hms_opt(10, 0, 0).unwrap())
        .and_local_timezone(ordos)
        .unwrap()
        .to_utc()
}

impl Stack {
    pub(crate) async fn start() -> Stack {
        Stack::start_with(|_| {}).await
    }

    /// With query options the test adjusts.
    pub(crate) async fn start_with(adjust: impl FnOnce(&mut whistle_query::Options)) -> Stack {
        Stack::start_at(ten_o_clock_in_ordos(), adjust).await
    }

    /// With the manual clock standing at `now`.
    pub(crate) async fn start_at(
        now: DateTime<Utc>,
        adjust: impl FnOnce(&mut whistle_query::Options),
    ) -> Stack {
        let nats = NatsServer::start().await;
        let db = TestDb::create().await;
        let clock = ManualClock::new(now);
        let dispatch =
            Dispatch::start_with_clock(dispatch_options(&nats, &db), Arc::new(clock.clone())).await;
        let query = Query::start_with(&nats, &db, Arc::new(clock.clone()), adjust).await;
        let token = db.token(Role::Operator, "150600").await;
        let client = command_center(&query.url(), &token).await;
        Stack {
            token,
            reporter: Reporter::connect(&nats).await,
            nats: async_nats::connect(nats.url()).await.expect("connect"),
            server: nats,
            db,
            clock,
            _dispatch: dispatch,
            query,
            client,
        }
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub(crate) fn advance(&self, by: TimeDelta) {
        self.clock.advance(by);
    }

    /// A valid report filed now by the worker of `grid`.
    pub(crate) fn filed(
        &self,
        id: &str,
        grid: &str,
        category: &str,
        urgency: v1::Urgency,
    ) -> v1::Report {
        let mut sent = report(id, grid);
        sent.category = category.into();
        sent.urgency = urgency as i32;
        sent.reported_at = Some(whistle_proto::timestamp_from_unix_millis(
            self.now().timestamp_millis(),
        ));
        sent.occurred_at = None;
        sent
    }

    /// Publishes a report and returns its incident once intake recorded it.
    pub(crate) async fn file(&self, report: &v1::Report) -> Uuid {
        self.reporter.publish(report).await;
        self.incident_of(&report.report_id).await
    }

    pub(crate) async fn incident_of(&self, report_id: &str) -> Uuid {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let found: Option<Uuid> =
                sqlx::query_scalar("SELECT incident_id FROM reports WHERE report_id = $1")
                    .bind(report_id)
                    .fetch_optional(&self.db.pool)
                    .await
                    .unwrap();
            if let Some(incident) = found {
                return incident;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "report {report_id} not recorded within {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends a command over NATS and returns dispatch's reply.
    pub(crate) async fn command(
        &self,
        actor: &str,
        incident: Uuid,
        body: &Body,
    ) -> v1::CommandReply {
        let command = v1::Command {
            command_id: Uuid::now_v7().to_string(),
            actor_id: actor.into(),
            incident_id: incident.to_string(),
            expected_version: 0,
            body: Some(body.clone()),
        };
        CommandClient::new(self.nats.clone())
            .send(&command)
            .await
            .expect("dispatch answers")
    }

    /// Sends a command over NATS that must succeed.
    pub(crate) async fn ok(&self, actor: &str, incident: Uuid, body: Body) {
        let reply = self.command(actor, incident, &body).await;
        assert!(
            matches!(reply.outcome, Some(Outcome::Ok(_))),
            "{actor} {body:?} on {incident}: {reply:?}"
        );
    }

    /// Waits until dispatch has fired every timer due at the clock's now.
    pub(crate) async fn settle(&self) {
        let now = self.now();
        eventually("due timers fired", WAIT, || async {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM timers WHERE due_at <= $1")
                .bind(now)
                .fetch_one(&self.db.pool)
                .await
                .unwrap()
                == 0
        })
        .await
        .unwrap();
    }

    pub(crate) async fn list(
        &self,
        request: v1::ListIncidentsRequest,
    ) -> v1::ListIncidentsResponse {
        self.client
            .clone()
            .list_incidents(request)
            .await
            .expect("ListIncidents")
            .into_inner()
    }

    /// The ids a filter lists on one page.
    pub(crate) async fn ids(&self, request: v1::ListIncidentsRequest) -> Vec<Uuid> {
        self.list(request)
            .await
            .incidents
            .iter()
            .map(|i| i.incident_id.parse().unwrap())
            .collect()
    }

    /// Waits until the query's live aggregates reflect every event dispatch has committed: the
    /// outbox relayed, and the stream's last sequence applied.
    pub(crate) async fn caught_up(&self) {
        eventually("the outbox relayed", WAIT, || async {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM outbox")
                .fetch_one(&self.db.pool)
                .await
                .unwrap()
                == 0
        })
        .await
        .unwrap();
        let last = async_nats::jetstream::new(self.nats.clone())
            .get_stream("WHISTLE_EVENTS")
            .await
            .expect("WHISTLE_EVENTS exists")
            .cached_info()
            .state
            .last_sequence;
        let aggregates = &self.query.aggregates;
        eventually("the aggregates applied the stream", WAIT, || async {
            aggregates.applied_sequence().is_some_and(|s| s >= last)
        })
        .await
        .unwrap();
    }

    /// `GetOverview` once the aggregates caught up (they follow the stream, so right after a
    /// command they may not have seen its events yet).
    pub(crate) async fn overview(
        &self,
        area_code: &str,
        window: Option<TimeDelta>,
    ) -> v1::Overview {
        self.caught_up().await;
        self.client
            .clone()
            .get_overview(v1::GetOverviewRequest {
                area_code: area_code.into(),
                window: window.map(|w| prost_types::Duration {
                    seconds: w.num_seconds(),
                    nanos: 0,
                }),
            })
            .await
            .expect("GetOverview")
            .into_inner()
    }

    pub(crate) async fn overdue(&self, area_code: &str) -> Vec<v1::OverdueItem> {
        self.client
            .clone()
            .list_overdue(v1::ListOverdueRequest {
                area_code: area_code.into(),
            })
            .await
            .expect("ListOverdue")
            .into_inner()
            .items
    }

    pub(crate) async fn incident_column<T>(&self, incident: Uuid, column: &str) -> T
    where
        T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
    {
        sqlx::query_scalar(&format!("SELECT {column} FROM incidents WHERE id = $1"))
            .bind(incident)
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }
}

/// The Ordos grids by district, in code order.
pub(crate) fn grids_by_district() -> BTreeMap<String, Vec<String>> {
    let mut by_district: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for grid in grids() {
        by_district
            .entry(grid[..6].to_owned())
            .or_default()
            .push(grid);
    }
    for grids in by_district.values_mut() {
        grids.sort();
    }
    by_district
}

/// Two districts, and in the first one grids of three different streets.
pub(crate) fn places() -> (String, [String; 3], String, String) {
    let by_district = grids_by_district();
    let mut districts = by_district.iter();
    let (first, first_grids) = districts.next().unwrap();
    let (second, second_grids) = districts.next().unwrap();
    let mut streets = Vec::<String>::new();
    for grid in first_grids {
        if !streets.iter().any(|g| g[..9] == grid[..9]) {
            streets.push(grid.clone());
        }
    }
    assert!(streets.len() >= 3, "{first} has fewer than three streets");
    (
        first.clone(),
        [streets[0].clone(), streets[1].clone(), streets[2].clone()],
        second.clone(),
        second_grids[0].clone(),
    )
}

pub(crate) fn unit(grid: &str, level: Level) -> String {
    grid.parse::<AreaCode>()
        .unwrap()
        .at_level(level)
        .unwrap()
        .to_string()
}

pub(crate) fn dept(grid: &str, kind: &str) -> String {
    format!("{}-{kind}", &grid[..6])
}

pub(crate) fn at(timestamp: &Option<prost_types::Timestamp>) -> DateTime<Utc> {
    let t = timestamp.as_ref().expect("a timestamp");
    DateTime::from_timestamp(t.seconds, t.nanos as u32).unwrap()
}

pub(crate) fn late_by(item: &v1::OverdueItem) -> TimeDelta {
    let d = item.late_by.as_ref().expect("late_by");
    TimeDelta::new(d.seconds, d.nanos as u32).unwrap()
}

pub(crate) fn counts(counts: &[v1::Count]) -> Vec<(&str, u64)> {
    counts.iter().map(|c| (c.key.as_str(), c.count)).collect()
}

pub(crate) fn code<T>(result: Result<T, tonic::Status>) -> Code {
    match result {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

pub(crate) fn escalate() -> Body {
    Body::Escalate(v1::Escalate {
        note: "街道吹哨".into(),
        department_codes: Vec::new(),
    })
}

pub(crate) fn accept(task: u32) -> Body {
    Body::Accept(v1::Accept {
        task_id: task.to_string(),
        note: String::new(),
    })
}

pub(crate) fn resolve() -> Body {
    Body::Resolve(v1::Resolve {
        task_id: String::new(),
        note: "已处理".into(),
    })
}

pub(crate) fn satisfied() -> Body {
    Body::Verify(v1::Verify {
        satisfaction: v1::Satisfaction::Satisfied as i32,
        note: String::new(),
    })
}

#[tokio::test]
async fn org_tree_from_the_city_and_below_a_street() {
    let stack = Stack::start().await;
    let mut client = stack.client.clone();
    let dataset = whistle_domain::ordos::dataset();
    let count = |level: Level| dataset.units.iter().filter(|u| u.level() == level).count();

    let city = client
        .get_org_tree(v1::GetOrgTreeRequest {
            root_code: String::new(),
            depth: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(city.code, "150600");
    assert_eq!(city.name, "鄂尔多斯市");
    assert_eq!(city.level, v1::Level::City as i32);
    assert_eq!(city.children.len(), count(Level::District));
    assert!(city.children.iter().all(|d| d.children.is_empty()));
    assert!(city.children.windows(2).all(|w| w[0].code < w[1].code));

    let whole = client
        .get_org_tree(v1::GetOrgTreeRequest {
            root_code: "150600".into(),
            depth: 10,
        })
        .await
        .unwrap()
        .into_inner();
    fn walk(node: &v1::OrgNode, seen: &mut BTreeMap<i32, usize>) {
        *seen.entry(node.level).or_default() += 1;
        for child in &node.children {
            assert!(child.code.starts_with(&node.code[..4]));
            walk(child, seen);
        }
    }
    let mut seen = BTreeMap::new();
    walk(&whole, &mut seen);
    for level in Level::ALL {
        let proto = match level {
            Level::Grid => v1::Level::Grid,
            Level::Community => v1::Level::Community,
            Level::Street => v1::Level::Street,
            Level::District => v1::Level::District,
            Level::City => v1::Level::City,
        };
        assert_eq!(seen[&(proto as i32)], count(level), "{level:?}");
    }

    let (_, [grid, ..], _, _) = places();
    let street_code = unit(&grid, Level::Street);
    let street = client
        .get_org_tree(v1::GetOrgTreeRequest {
            root_code: street_code.clone(),
            depth: 2,
        })
        .await
        .unwrap()
        .into_inner();
    let expected = dataset
        .units
        .iter()
        .find(|u| u.code.as_str() == street_code)
        .unwrap();
    assert_eq!(street.name, expected.name);
    assert_eq!(street.classification, expected.classification);
    assert_eq!((street.lat, street.lon), (expected.lat, expected.lon));
    assert!(!street.children.is_empty());
    for community in &street.children {
        assert_eq!(community.level, v1::Level::Community as i32);
        assert!(community.code.starts_with(&street_code));
        assert!(!community.children.is_empty());
        assert!(community
            .children
            .iter()
            .all(|g| g.level == v1::Level::Grid as i32 && g.children.is_empty()));
    }
    let root_only = client
        .get_org_tree(v1::GetOrgTreeRequest {
            root_code: grid.clone(),
            depth: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((root_only.code, root_only.children.len()), (grid, 0));

    let bad = client
        .get_org_tree(v1::GetOrgTreeRequest {
            root_code: "15060".into(),
            depth: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("root_code"), "{}", bad.message());
    let missing = client
        .get_org_tree(v1::GetOrgTreeRequest {
            root_code: "150699".into(),
            depth: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
}

#[tokio::test]
async fn list_incidents_filters_by_area_status_category_level_urgency_overdue_and_text() {
    let stack = Stack::start().await;
    let (district, [a_grid, _, c_grid], other_district, b_grid) = places();

    let mut a = stack.filed("list-a", &a_grid, "heating.no_heat", v1::Urgency::Urgent);
    a.title = "3号楼暖气片不热 Radiator cold".into();
    a.description = "室内湿度100%，温度12度".into();
    let a = stack.file(&a).await;
    stack.advance(TimeDelta::seconds(1));
    let mut b = stack.filed(
        "list-b",
        &b_grid,
        "municipal.street_light",
        v1::Urgency::Normal,
    );
    b.title = "路灯不亮".into();
    b.description = "晚上整条路没有照明".into();
    b.location = Some(v1::Location {
        lat: 39.6085,
        lon: 109.7813,
        address: "Kangbashi Road 7".into(),
    });
    let b = stack.file(&b).await;
    stack.advance(TimeDelta::seconds(1));
    let mut c = stack.filed(
        "list-c",
        &c_grid,
        "petition.collective",
        v1::Urgency::Emergency,
    );
    c.title = "群体上访苗头".into();
    c.description = "多名业主聚集".into();
    let c = stack.file(&c).await;
    // The street handles the collective petition itself and resolves it.
    stack
        .ok(
            &format!("hd-{}", unit(&c_grid, Level::Street)),
            c,
            resolve(),
        )
        .await;

    let all = v1::ListIncidentsRequest::default;
    assert_eq!(stack.ids(all()).await, [c, b, a], "newest first");

    // The summary of the incident with a location.
    let page = stack.list(all()).await;
    let summary = &page.incidents[1];
    assert_eq!(page.next_page_token, "");
    assert_eq!(summary.title, "路灯不亮");
    assert_eq!(summary.category, "municipal.street_light");
    assert_eq!(summary.category_name, "路灯损坏");
    assert_eq!(summary.urgency, v1::Urgency::Normal as i32);
    assert_eq!(summary.status, v1::IncidentStatus::Handling as i32);
    assert_eq!(summary.level, v1::Level::Community as i32);
    assert_eq!(summary.district_code, other_district);
    assert_eq!(summary.street_code, unit(&b_grid, Level::Street));
    assert_eq!(summary.community_code, unit(&b_grid, Level::Community));
    assert_eq!(summary.grid_code, b_grid);
    assert_eq!(summary.report_count, 1);
    assert!(!summary.overdue);
    assert_eq!(
        summary.version,
        stack.incident_column::<i64>(b, "version").await as u64
    );
    assert_eq!(
        at(&summary.due_at),
        stack.incident_column::<DateTime<Utc>>(b, "due_at").await
    );
    assert_eq!(
        at(&summary.reported_at).timestamp_millis(),
        stack
            .incident_column::<DateTime<Utc>>(b, "reported_at")
            .await
            .timestamp_millis()
    );
    let location = summary.location.as_ref().expect("a location");
    assert_eq!(
        (location.lat, location.lon, location.address.as_str()),
        (39.6085, 109.7813, "Kangbashi Road 7")
    );
    assert!(page.incidents[0].location.is_none());
    assert_eq!(
        page.incidents[0].status,
        v1::IncidentStatus::Resolved as i32
    );

    let area = |code: &str| v1::ListIncidentsRequest {
        area_code: code.into(),
        ..all()
    };
    assert_eq!(stack.ids(area(&district)).await, [c, a]);
    assert_eq!(stack.ids(area(&unit(&a_grid, Level::Street))).await, [a]);
    assert_eq!(stack.ids(area(&unit(&a_grid, Level::Community))).await, [a]);
    assert_eq!(stack.ids(area(&b_grid)).await, [b]);
    assert_eq!(stack.ids(area("150600")).await, [c, b, a]);

    let statuses = |s: &[v1::IncidentStatus]| v1::ListIncidentsRequest {
        statuses: s.iter().map(|&s| s as i32).collect(),
        ..all()
    };
    assert_eq!(
        stack.ids(statuses(&[v1::IncidentStatus::Resolved])).await,
        [c]
    );
    assert_eq!(
        stack
            .ids(statuses(&[
                v1::IncidentStatus::Handling,
                v1::IncidentStatus::Resolved
            ]))
            .await,
        [c, b, a]
    );
    assert!(stack
        .ids(statuses(&[v1::IncidentStatus::Reported]))
        .await
        .is_empty());

    let categories = v1::ListIncidentsRequest {
        categories: vec!["municipal.street_light".into()],
        ..all()
    };
    assert_eq!(stack.ids(categories).await, [b]);

    let levels = |l: &[v1::Level]| v1::ListIncidentsRequest {
        levels: l.iter().map(|&l| l as i32).collect(),
        ..all()
    };
    assert_eq!(stack.ids(levels(&[v1::Level::Street])).await, [c]);
    assert_eq!(stack.ids(levels(&[v1::Level::Community])).await, [b, a]);

    let urgencies = |u: &[v1::Urgency]| v1::ListIncidentsRequest {
        urgencies: u.iter().map(|&u| u as i32).collect(),
        ..all()
    };
    assert_eq!(stack.ids(urgencies(&[v1::Urgency::Emergency])).await, [c]);
    assert_eq!(
        stack
            .ids(urgencies(&[v1::Urgency::Normal, v1::Urgency::Urgent]))
            .await,
        [b, a]
    );

    let text = |t: &str| v1::ListIncidentsRequest {
        text: t.into(),
        ..all()
    };
    assert_eq!(stack.ids(text("radiator")).await, [a], "title, any case");
    assert_eq!(stack.ids(text("KANGBASHI")).await, [b], "address");
    assert_eq!(stack.ids(text("业主")).await, [c], "description");
    assert_eq!(stack.ids(text("%")).await, [a], "% is literal");
    assert_eq!(stack.ids(text("_")).await, [] as [Uuid; 0], "_ is literal");
    assert!(stack.ids(text("no such words")).await.is_empty());

    let combined = v1::ListIncidentsRequest {
        area_code: district.clone(),
        statuses: vec![v1::IncidentStatus::Handling as i32],
        ..all()
    };
    assert_eq!(stack.ids(combined).await, [a]);

    let overdue_only = || v1::ListIncidentsRequest {
        overdue_only: true,
        ..all()
    };
    assert!(stack.ids(overdue_only()).await.is_empty());
    // The heating incident's 24-hour SLA runs out; the street light has 7 days, and the resolved
    // petition is no longer late.
    stack.advance(TimeDelta::hours(24) + TimeDelta::minutes(1));
    stack.settle().await;
    assert_eq!(stack.ids(overdue_only()).await, [a]);
    let page = stack.list(overdue_only()).await;
    assert!(page.incidents[0].overdue);
    assert!(stack.incident_column::<bool>(a, "overdue").await);
}

#[tokio::test]
async fn pages_skip_and_repeat_nothing_while_incidents_are_inserted() {
    let stack = Stack::start().await;
    let grids = grids();
    const INITIAL: usize = 45;
    for i in 0..INITIAL {
        if i % 10 == 0 {
            // Runs of equal created_at exercise the id tie-break of the sort key.
            stack.advance(TimeDelta::seconds(1));
        }
        let report = stack.filed(
            &format!("page-{i}"),
            &grids[i * 3],
            "heating.no_heat",
            v1::Urgency::Normal,
        );
        stack.reporter.publish(&report).await;
    }
    eventually("the first incidents", WAIT, || async {
        stack.db.count("SELECT count(*) FROM incidents").await == INITIAL as i64
    })
    .await
    .unwrap();
    let initial: HashSet<Uuid> = sqlx::query_scalar("SELECT id FROM incidents")
        .fetch_all(&stack.db.pool)
        .await
        .unwrap()
        .into_iter()
        .collect();

    // Meanwhile a second grid worker keeps filing reports, concurrently with the paging.
    let stop = CancellationToken::new();
    let background = {
        let (js, clock, stop, grids) = (
            stack.reporter.js.clone(),
            stack.clock.clone(),
            stop.clone(),
            grids.clone(),
        );
        tokio::spawn(async move {
            let reporter = Reporter { js };
            let mut sent = 0;
            while !stop.is_cancelled() && sent < 150 {
                let mut filed = report(&format!("page-bg-{sent}"), &grids[2 + sent * 3]);
                filed.category = "heating.no_heat".into();
                filed.occurred_at = None;
                filed.reported_at = Some(whistle_proto::timestamp_from_unix_millis(
                    clock.now().timestamp_millis(),
                ));
                reporter.publish(&filed).await;
                sent += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            sent
        })
    };

    let mut seen = Vec::<Uuid>::new();
    let mut token = String::new();
    let mut pages = 0;
    let mut inserted = 0;
    loop {
        let page = stack
            .list(v1::ListIncidentsRequest {
                page_size: 7,
                page_token: token.clone(),
                ..Default::default()
            })
            .await;
        pages += 1;
        assert!(page.incidents.len() <= 7);
        seen.extend(
            page.incidents
                .iter()
                .map(|i| i.incident_id.parse::<Uuid>().unwrap()),
        );
        // And the test files some between the pages, recorded before the next page is read.
        for _ in 0..2 {
            let report = stack.filed(
                &format!("page-new-{inserted}"),
                &grids[1 + inserted * 3],
                "heating.no_heat",
                v1::Urgency::Normal,
            );
            stack.file(&report).await;
            inserted += 1;
        }
        stack.advance(TimeDelta::milliseconds(300));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }

    stop.cancel();
    let sent_meanwhile = background.await.unwrap();
    assert!(sent_meanwhile > 0);

    let unique: HashSet<Uuid> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "a row was repeated: {seen:?}");
    let missing: Vec<&Uuid> = initial.difference(&unique).collect();
    assert!(missing.is_empty(), "rows were skipped: {missing:?}");
    assert!(pages >= INITIAL.div_ceil(7));
    // And in the listing order, newest first.
    let keys: Vec<(DateTime<Utc>, Uuid)> =
        sqlx::query_as("SELECT created_at, id FROM incidents WHERE id = ANY($1)")
            .bind(&seen)
            .fetch_all(&stack.db.pool)
            .await
            .unwrap();
    let key_of: BTreeMap<Uuid, DateTime<Utc>> = keys.into_iter().map(|(c, id)| (id, c)).collect();
    let ordered: Vec<(DateTime<Utc>, Uuid)> = seen.iter().map(|id| (key_of[id], *id)).collect();
    assert!(
        ordered.windows(2).all(|w| w[0] > w[1]),
        "not newest first: {ordered:?}"
    );

    // The default page is 50.
    let total = stack.db.count("SELECT count(*) FROM incidents").await;
    assert!(total > 50, "{total}");
    let first = stack.list(v1::ListIncidentsRequest::default()).await;
    assert_eq!(first.incidents.len(), 50);
    assert!(!first.next_page_token.is_empty());
}

#[tokio::test]
async fn bad_requests_are_invalid_argument_and_unknown_incidents_not_found() {
    let stack = Stack::start().await;
    let mut client = stack.client.clone();
    let list = |request: v1::ListIncidentsRequest| {
        let mut client = stack.client.clone();
        async move { code(client.list_incidents(request).await) }
    };
    let status = client
        .list_incidents(v1::ListIncidentsRequest {
            page_size: 501,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "page_size 501 is above the maximum of 500"
    );
    assert_eq!(
        list(v1::ListIncidentsRequest {
            page_size: 500,
            ..Default::default()
        })
        .await,
        Code::Ok
    );
    for bad in [
        v1::ListIncidentsRequest {
            page_token: "bm90IGEgdG9rZW4".into(),
            ..Default::default()
        },
        v1::ListIncidentsRequest {
            page_token: "%%%".into(),
            ..Default::default()
        },
        v1::ListIncidentsRequest {
            area_code: "15O602".into(),
            ..Default::default()
        },
        v1::ListIncidentsRequest {
            statuses: vec![v1::IncidentStatus::Unspecified as i32],
            ..Default::default()
        },
        v1::ListIncidentsRequest {
            urgencies: vec![7],
            ..Default::default()
        },
    ] {
        assert_eq!(list(bad.clone()).await, Code::InvalidArgument, "{bad:?}");
    }
    let area = client
        .list_overdue(v1::ListOverdueRequest {
            area_code: "1506021".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(area.code(), Code::InvalidArgument);
    assert!(
        area.message().contains("area_code") && area.message().contains("6, 9, 12 or 15 digits"),
        "{}",
        area.message()
    );
    let window = client
        .get_overview(v1::GetOverviewRequest {
            area_code: String::new(),
            window: Some(prost_types::Duration {
                seconds: -60,
                nanos: 0,
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(window.code(), Code::InvalidArgument);

    let unknown = client
        .get_incident(v1::GetIncidentRequest {
            incident_id: Uuid::now_v7().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let malformed = client
        .get_incident(v1::GetIncidentRequest {
            incident_id: "INC-1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(malformed.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn get_incident_has_tasks_reports_and_the_whole_timeline() {
    let stack = Stack::start().await;
    let (_, [grid, ..], _, _) = places();
    let first = stack.filed(
        "detail-1",
        &grid,
        "petition.collective",
        v1::Urgency::Urgent,
    );
    let incident = stack.file(&first).await;
    // A second report from the same grid attaches to it.
    stack.advance(TimeDelta::minutes(1));
    let mut second = stack.filed(
        "detail-2",
        &grid,
        "petition.collective",
        v1::Urgency::Urgent,
    );
    second.title = "又有业主聚集".into();
    assert_eq!(stack.file(&second).await, incident);
    // The street whistles for the category's departments; petitions reports in.
    stack
        .ok(
            &format!("hd-{}", unit(&grid, Level::Street)),
            incident,
            escalate(),
        )
        .await;
    let whistled_at = stack.now();
    stack.advance(TimeDelta::minutes(5));
    let petitions = dept(&grid, "petitions");
    stack
        .ok(&format!("li-{petitions}"), incident, accept(1))
        .await;

    let detail = stack
        .client
        .clone()
        .get_incident(v1::GetIncidentRequest {
            incident_id: incident.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    let summary = detail.incident.as_ref().unwrap();
    assert_eq!(summary.incident_id, incident.to_string());
    assert_eq!(summary.status, v1::IncidentStatus::Whistled as i32);
    assert_eq!(summary.level, v1::Level::Street as i32);
    assert_eq!(summary.report_count, 2);
    assert_eq!(summary.category_name, "群体性信访苗头");
    assert_eq!(detail.description, first.description);
    assert_eq!(
        detail.policy_version,
        stack
            .incident_column::<String>(incident, "policy_version")
            .await
    );
    assert_eq!(detail.policy_version, "ordos-2026.1");

    // Reports as filed, duplicates included.
    assert_eq!(detail.reports, [first, second]);

    // Tasks, with deadlines, holders and department names.
    let names: BTreeMap<String, String> = sqlx::query_as("SELECT code, name FROM departments")
        .fetch_all(&stack.db.pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    let departments: Vec<&str> = detail
        .tasks
        .iter()
        .map(|t| t.state.as_ref().unwrap().department_code.as_str())
        .collect();
    let public_security = dept(&grid, "public_security");
    assert_eq!(departments, [petitions.as_str(), public_security.as_str()]);
    for task in &detail.tasks {
        let state = task.state.as_ref().unwrap();
        assert_eq!(task.department_name, names[&state.department_code]);
        assert!(!task.department_name.is_empty());
        assert_eq!(at(&state.dispatched_at), whistled_at);
        assert_eq!(
            at(&state.accept_due_at),
            whistled_at + TimeDelta::minutes(30)
        );
        assert_eq!(at(&state.resolve_due_at), at(&summary.due_at));
    }
    let accepted = detail.tasks[0].state.as_ref().unwrap();
    assert_eq!(
        (accepted.task_id, accepted.status),
        (1, v1::TaskStatus::Accepted as i32)
    );
    assert_eq!(accepted.holder_id, format!("li-{petitions}"));
    assert_eq!(at(&accepted.accepted_at), stack.now());
    let waiting = detail.tasks[1].state.as_ref().unwrap();
    assert_eq!(
        (waiting.task_id, waiting.status),
        (2, v1::TaskStatus::Dispatched as i32)
    );
    assert_eq!(waiting.holder_id, "");
    assert!(waiting.accepted_at.is_none());

    // The whole timeline, in order.
    let stored: Vec<(i32, String, String)> = sqlx::query_as(
        "SELECT seq, kind, actor_id FROM timeline WHERE incident_id = $1 ORDER BY seq",
    )
    .bind(incident)
    .fetch_all(&stack.db.pool)
    .await
    .unwrap();
    let read: Vec<(i32, String, String)> = detail
        .timeline
        .iter()
        .map(|e| (e.seq as i32, e.kind.clone(), e.actor_id.clone()))
        .collect();
    assert_eq!(read, stored);
    let kinds: Vec<&str> = detail.timeline.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds[..2], ["incident.reported", "report.attached"]);
    for kind in ["incident.whistled", "task.dispatched", "task.accepted"] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    assert_eq!(detail.timeline.last().unwrap().kind, "task.accepted");
    assert_eq!(at(&detail.timeline.last().unwrap().at), stack.now());
}

#[tokio::test]
async fn list_overdue_shows_late_tasks_and_incidents_with_how_late() {
    let stack = Stack::start().await;
    let (district, [grid, ..], other_district, other_grid) = places();
    let t0 = stack.now();
    let incident = stack
        .file(&stack.filed("late-1", &grid, "petition.collective", v1::Urgency::Urgent))
        .await;
    stack
        .file(&stack.filed(
            "late-2",
            &other_grid,
            "heating.no_heat",
            v1::Urgency::Normal,
        ))
        .await;
    stack
        .ok(
            &format!("hd-{}", unit(&grid, Level::Street)),
            incident,
            escalate(),
        )
        .await;
    stack.advance(TimeDelta::minutes(5));
    let petitions = dept(&grid, "petitions");
    stack
        .ok(&format!("li-{petitions}"), incident, accept(1))
        .await;
    assert!(stack.overdue("").await.is_empty());

    // Public security misses its 30-minute report-in.
    stack.advance(TimeDelta::minutes(35));
    stack.settle().await;
    let items = stack.overdue(&district).await;
    assert_eq!(items.len(), 1, "{items:?}");
    let task = &items[0];
    assert_eq!(task.incident_id, incident.to_string());
    assert_eq!(task.task_id, "2");
    assert_eq!(task.department_code, dept(&grid, "public_security"));
    let department_name: String =
        sqlx::query_scalar("SELECT name FROM departments WHERE code = $1")
            .bind(&task.department_code)
            .fetch_one(&stack.db.pool)
            .await
            .unwrap();
    assert_eq!(task.department_name, department_name);
    assert_eq!(task.title, "3号楼室内温度只有12度");
    assert_eq!(task.street_code, unit(&grid, Level::Street));
    assert_eq!(at(&task.due_at), t0 + TimeDelta::minutes(30));
    assert_eq!(late_by(task), TimeDelta::minutes(10));
    let level: String = stack.incident_column(incident, "level").await;
    assert_eq!(task.level, whistle_proto_level(&level));

    // The 2-hour SLA passes too: the incident is late, and so is the task that reported in but
    // has not resolved.
    stack.advance(TimeDelta::hours(1) + TimeDelta::minutes(30));
    stack.settle().await;
    let now = stack.now();
    assert_eq!(now, t0 + TimeDelta::hours(2) + TimeDelta::minutes(10));
    let items = stack.overdue("150600").await;
    let due = t0 + TimeDelta::hours(2);
    let seen: Vec<(&str, DateTime<Utc>, TimeDelta)> = items
        .iter()
        .map(|i| (i.task_id.as_str(), at(&i.due_at), late_by(i)))
        .collect();
    assert_eq!(
        seen,
        [
            ("2", t0 + TimeDelta::minutes(30), TimeDelta::minutes(100)),
            ("", due, TimeDelta::minutes(10)),
            ("1", due, TimeDelta::minutes(10)),
        ]
    );
    assert!(items.iter().all(|i| i.incident_id == incident.to_string()));
    assert_eq!(items[1].department_code, "");
    assert_eq!(items[1].department_name, "");
    assert_eq!(items[2].department_code, petitions);
    assert!(stack.overdue(&other_district).await.is_empty());
}

pub(crate) fn whistle_proto_level(stored: &str) -> i32 {
    let level: Level = stored.parse().unwrap();
    (match level {
        Level::Grid => v1::Level::Grid,
        Level::Community => v1::Level::Community,
        Level::Street => v1::Level::Street,
        Level::District => v1::Level::District,
        Level::City => v1::Level::City,
    }) as i32
}

#[tokio::test]
async fn overview_counts_today_and_the_three_rates() {
    let stack = Stack::start().await;
    let (district, [g1, g2, g3], other_district, other_grid) = places();
    let t0 = stack.now();
    // A manhole the community fixes, followed up satisfied.
    let manhole = stack
        .file(&stack.filed("ov-1", &g1, "municipal.manhole", v1::Urgency::Emergency))
        .await;
    // A collective petition the street whistles for.
    let petition = stack
        .file(&stack.filed("ov-2", &g2, "petition.collective", v1::Urgency::Urgent))
        .await;
    // A blocked fire lane nobody touches.
    stack
        .file(&stack.filed("ov-3", &g3, "fire.blocked_access", v1::Urgency::Normal))
        .await;
    // Elsewhere: no heating in another district.
    stack
        .file(&stack.filed("ov-4", &other_grid, "heating.no_heat", v1::Urgency::Urgent))
        .await;

    stack.advance(TimeDelta::minutes(2));
    stack
        .ok(
            &format!("hd-{}", unit(&g1, Level::Community)),
            manhole,
            resolve(),
        )
        .await;
    stack.advance(TimeDelta::minutes(1));
    stack.ok(&format!("gw-{g1}"), manhole, satisfied()).await;
    stack.advance(TimeDelta::minutes(1));
    stack
        .ok(
            &format!("hd-{}", unit(&g2, Level::Street)),
            petition,
            escalate(),
        )
        .await;
    stack.advance(TimeDelta::minutes(6));
    stack
        .ok(
            &format!("li-{}", dept(&g2, "petitions")),
            petition,
            accept(1),
        )
        .await;
    // Still inside the fire lane's community window, the first of its deadlines.
    stack.advance(TimeDelta::minutes(2));
    stack.settle().await;
    assert_eq!(stack.now(), t0 + TimeDelta::minutes(12));

    let overview = stack.overview(&district, None).await;
    assert_eq!(overview.area_code, district);
    assert_eq!(at(&overview.as_of), stack.now());
    assert_eq!(
        counts(&overview.by_status),
        [("closed", 1), ("handling", 1), ("whistled", 1)]
    );
    assert_eq!(overview.open_incidents, 2);
    assert_eq!(
        counts(&overview.by_level),
        [("community", 1), ("street", 1)]
    );
    assert_eq!(
        counts(&overview.by_category),
        [("fire.blocked_access", 1), ("petition.collective", 1)]
    );
    assert_eq!(counts(&overview.by_urgency), [("normal", 1), ("urgent", 1)]);
    assert_eq!(overview.overdue, 0);
    assert_eq!(overview.reported_today, 3);
    assert_eq!(overview.resolved_today, 1);
    assert_eq!(overview.whistles_today, 1);
    let rates = overview.rates.unwrap();
    assert_eq!(
        (
            rates.dispatched,
            rates.accepted_in_time,
            rates.due,
            rates.resolved_in_time,
            rates.followed_up,
            rates.satisfied
        ),
        (2, 1, 0, 0, 1, 1)
    );
    assert_eq!(
        (
            rates.response_rate,
            rates.resolution_rate,
            rates.satisfaction_rate
        ),
        (0.5, 0.0, 1.0)
    );

    // Scoped to one street, to the other district, and the whole city.
    let street = stack.overview(&unit(&g2, Level::Street), None).await;
    assert_eq!(counts(&street.by_status), [("whistled", 1)]);
    assert_eq!(street.rates.unwrap().dispatched, 2);
    let other = stack.overview(&other_district, None).await;
    assert_eq!(counts(&other.by_status), [("handling", 1)]);
    assert_eq!(
        (
            other.open_incidents,
            other.reported_today,
            other.whistles_today
        ),
        (1, 1, 0)
    );
    assert_eq!(other.rates.unwrap().dispatched, 0);
    let city = stack.overview("", None).await;
    assert_eq!((city.open_incidents, city.reported_today), (3, 4));
    assert_eq!(stack.overview("150600", None).await.reported_today, 4);

    // Past the 2-hour deadlines of the three emergencies, still the same day in Ordos. The clock
    // moves five minutes at a time, so timers fire close to when they are due.
    for _ in 0..24 {
        stack.advance(TimeDelta::minutes(5));
        stack.settle().await;
    }
    assert_eq!(
        stack.now(),
        t0 + TimeDelta::hours(2) + TimeDelta::minutes(12)
    );
    let overview = stack.overview(&district, None).await;
    assert_eq!(overview.overdue, 2, "the petition and the fire lane");
    assert_eq!(overview.reported_today, 3);
    assert_eq!(overview.resolved_today, 1);
    let rates = overview.rates.unwrap();
    assert_eq!((rates.due, rates.resolved_in_time), (3, 1));
    assert!((rates.resolution_rate - 1.0 / 3.0).abs() < 1e-9);
    // Whatever else the timers dispatched meanwhile (the fire lane's street window whistles by
    // itself), only the petitions task reported in on time.
    let (dispatched, whistles): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM tasks t JOIN incidents i ON i.id = t.incident_id
                 WHERE i.district_code = $1),
                (SELECT count(*) FROM timeline tl JOIN incidents i ON i.id = tl.incident_id
                 WHERE i.district_code = $1 AND tl.kind = 'incident.whistled')",
    )
    .bind(&district)
    .fetch_one(&stack.db.pool)
    .await
    .unwrap();
    assert!(dispatched >= 2 && whistles >= 1);
    assert_eq!(rates.dispatched, dispatched as u64);
    assert_eq!(rates.accepted_in_time, 1);
    assert_eq!(overview.whistles_today, whistles as u64);
    assert_eq!((rates.followed_up, rates.satisfied), (1, 1));

    // Windows are whole days (see overview.rs): nine minutes is today, which holds everything
    // this test did; the deadlines later today are not due yet either way.
    let today = stack
        .overview(&district, Some(TimeDelta::minutes(9)))
        .await
        .rates
        .unwrap();
    assert_eq!(today, rates);
}

/// One gRPC-web call over plain HTTP/1.1, as a browser makes it: the body and the trailers come
/// back as length-prefixed frames in one HTTP response.
pub(crate) async fn grpc_web_call(
    addr: SocketAddr,
    token: &str,
    path: &str,
    message: &[u8],
) -> (String, Vec<u8>, String) {
    let mut body = vec![0u8];
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(message);
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/grpc-web+proto\r\n\
         Accept: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .expect("the gRPC-web response")
        .unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("HTTP headers");
    let headers = String::from_utf8_lossy(&response[..split]).to_string();
    let mut payload = response[split + 4..].to_vec();
    if headers
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        payload = dechunk(&payload);
    }
    let (mut data, mut trailers) = (Vec::new(), String::new());
    let mut rest = payload.as_slice();
    while rest.len() >= 5 {
        let len = u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
        let frame = &rest[5..5 + len];
        if rest[0] & 0x80 == 0 {
            data.extend_from_slice(frame);
        } else {
            trailers.push_str(&String::from_utf8_lossy(frame));
        }
        rest = &rest[5 + len..];
    }
    (headers, data, trailers)
}

pub(crate) fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&body[..line_end]).unwrap().trim(), 16)
                .unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[line_end + 2..line_end + 2 + size]);
        body = &body[line_end + 2 + size + 2..];
    }
}

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

    let stack = Stack::start().await;
    let url = stack.query.url();

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
        stack.query.addr,
        &stack.token,
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
    let metrics = http_get(stack.query.addr, "/metrics").await;
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

/// A plain HTTP/1.1 GET; the whole response, headers and body.
pub(crate) async fn http_get(addr: SocketAddr, path: &str) -> String {
    http_get_with(addr, path, "").await
}

/// A GET with extra header lines (each ending in `\r\n`).
pub(crate) async fn http_get_with(addr: SocketAddr, path: &str, headers: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .expect("the HTTP response")
        .unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn shutdown_stops_the_listener_and_returns_cleanly() {
    let nats = NatsServer::start().await;
    let db = TestDb::create().await;
    let query = Query::start(&nats, &db, Arc::new(whistle_wire::SystemClock)).await;
    let mut client = command_center(&query.url(), &db.token(Role::Viewer, "150600").await).await;
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
    let db = TestDb::create().await;
    let options = whistle_query::Options {
        database_url: db.url.clone(),
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
