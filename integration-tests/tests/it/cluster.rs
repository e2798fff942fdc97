//! A JetStream cluster of three nats-server nodes, each with the configuration `whistle
//! nats-config` renders for a node (its name, the `cluster` block, routes authenticated with the
//! secrets' route password), the streams at three replicas, and dispatch given all three nodes:
//! a report reaches dispatch, the node leading `WHISTLE_REPORTS` is killed, the next report is
//! still stored (acked by the two nodes left) and recorded, and the killed node, started again,
//! catches up; then a node stopped with its sockets open (a partition, as a client sees it) is
//! left by a client for another node within seconds. deploy/cluster/ runs the same
//! configuration with every node in its own network namespace.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream::ClusterInfo};
use whistle_auth::{
    streams::{self, HardenedOptions},
    Cluster, Secrets, Service,
};
use whistle_testkit::{free_port, write_contact_keyring, NatsConfig, NatsServer, TempDir, TestDb};
use whistle_wire::names::{EVENTS_STREAM, PHOTOS_STREAM, REJECTED_STREAM, REPORTS_STREAM};

use crate::harness::{dispatch_options, eventually, report, Dispatch, Reporter};

const NODES: usize = 3;

/// The three nodes, started together: a node's JetStream answers only once the cluster has
/// elected its meta leader, which takes two of the three.
/// How long the cluster may take to reach a state the test waits for. Elections take seconds when
/// the machine is idle; the suite runs this beside its heaviest tests on two cores.
const WAIT: u64 = 60;

async fn start_cluster(secrets: &Secrets, dir: &TempDir) -> Vec<NatsServer> {
    let route_ports: Vec<u16> = (0..NODES)
        .map(|_| free_port().expect("a free port"))
        .collect();
    let starts = (0..NODES).map(|i| {
        let routes = route_ports
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(_, port)| format!("127.0.0.1:{port}"))
            .collect();
        let cluster = Cluster {
            name: "whistle-it".into(),
            host: "127.0.0.1".into(),
            port: route_ports[i],
            routes,
            password: secrets.route_password.clone(),
            tls: None,
        };
        NatsConfig::new()
            .dir(dir.path().join(format!("n{i}")))
            .secured_with(secrets, |config| {
                config.server_name = Some(format!("n{i}"));
                config.server_tags = vec![format!("node:n{i}"), "dc:it".into()];
                config.cluster = Some(cluster);
            })
            .start()
    });
    futures::future::try_join_all(starts)
        .await
        .unwrap_or_else(|e| panic!("starting the three nodes: {e}"))
}

/// The admin's JetStream on `server`.
async fn admin(server: &NatsServer) -> jetstream::Context {
    jetstream::new(server.connect().await.expect("the admin connects"))
}

async fn cluster_of(js: &jetstream::Context, stream: &str) -> Option<ClusterInfo> {
    let mut stream = js.get_stream(stream).await.ok()?;
    stream.info().await.ok()?.cluster.clone()
}

/// A leader and every other copy current and online.
fn healthy(cluster: &Option<ClusterInfo>, copies: usize) -> bool {
    cluster.as_ref().is_some_and(|c| {
        c.leader.is_some()
            && c.replicas.len() == copies - 1
            && c.replicas.iter().all(|p| p.current && !p.offline)
    })
}

async fn recorded(db: &TestDb, report_id: &str) -> bool {
    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM reports WHERE report_id = $1")
        .bind(report_id)
        .fetch_one(&db.pool)
        .await
        .unwrap()
        == 1
}

#[tokio::test]
async fn three_nodes_keep_reports_flowing_when_the_stream_leader_dies() {
    let dir = TempDir::new("cluster").unwrap();
    let secrets = Secrets::load_or_create(&dir.path().join("secrets")).unwrap();
    let mut nodes = start_cluster(&secrets, &dir).await;
    let js = admin(&nodes[0]).await;

    // `whistle streams --replicas 3`, retried while the cluster settles its meta leader.
    let options = HardenedOptions {
        replicas: Some(3),
        placement_tags: vec!["dc:it".into()],
        ..HardenedOptions::small()
    };
    let last_error = std::sync::Mutex::new(String::new());
    let created = eventually(
        "the streams created at R3",
        Duration::from_secs(WAIT),
        || {
            let (js, options, last_error) = (&js, &options, &last_error);
            async move {
                match streams::ensure(js, options).await {
                    Ok(()) => true,
                    Err(e) => {
                        *last_error.lock().unwrap() = e.to_string();
                        false
                    }
                }
            }
        },
    )
    .await;
    assert!(
        created.is_ok(),
        "{created:?}: {}",
        last_error.lock().unwrap()
    );
    for stream in [
        REPORTS_STREAM,
        EVENTS_STREAM,
        REJECTED_STREAM,
        PHOTOS_STREAM,
    ] {
        eventually(
            &format!("{stream} with a leader and two current copies"),
            Duration::from_secs(WAIT),
            || async { healthy(&cluster_of(&js, stream).await, NODES) },
        )
        .await
        .unwrap();
    }
    // An update without --replicas or --placement-tag keeps the three copies and their
    // placement (it must never shrink a cluster).
    streams::ensure(&js, &HardenedOptions::small())
        .await
        .unwrap();
    let mut reports = js.get_stream(REPORTS_STREAM).await.unwrap();
    let config = reports.info().await.unwrap().config.clone();
    assert_eq!(config.num_replicas, 3);
    assert_eq!(
        config.placement.map(|p| p.tags),
        Some(vec!["dc:it".to_owned()])
    );
    // A placement no three servers carry is refused, and says why.
    let refused = streams::ensure(
        &js,
        &HardenedOptions {
            replicas: Some(3),
            placement_tags: vec!["node:n0".into()],
            ..HardenedOptions::small()
        },
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(refused.contains("3 replica(s)"), "{refused}");
    let mut reports = js.get_stream(REPORTS_STREAM).await.unwrap();
    assert_eq!(reports.info().await.unwrap().config.num_replicas, 3);

    // Dispatch knows all three nodes, as deploy/cluster/ starts it.
    let db = TestDb::create().await.expect("a test database");
    let urls: Vec<String> = nodes.iter().map(NatsServer::url).collect();
    let mut options = dispatch_options(urls.join(","), db.dispatch_url.clone());
    options.nkey_file = Some(secrets.seed_path(Service::Dispatch));
    let keys = TempDir::new("cluster-keys").unwrap();
    options.contact_keys = Some(write_contact_keyring(keys.path()).unwrap());
    let dispatch = Dispatch::start(options, std::sync::Arc::new(whistle_wire::SystemClock)).await;

    let grids = crate::harness::grids();
    let reporter = Reporter::connect(&nodes[1]).await;
    reporter.publish(&report("cluster-1", &grids[0])).await;
    eventually(
        "the first report recorded",
        Duration::from_secs(WAIT),
        || recorded(&db, "cluster-1"),
    )
    .await
    .unwrap();

    // kill -9 the node leading WHISTLE_REPORTS; the publisher sits on another node.
    let leader = cluster_of(&js, REPORTS_STREAM)
        .await
        .and_then(|c| c.leader)
        .expect("a leader");
    let dead: usize = leader[1..].parse().expect("nodes are named n0, n1, n2");
    nodes[dead].kill();
    let alive = (dead + 1) % NODES;
    let reporter = Reporter::connect(&nodes[alive]).await;
    let killed_at = Instant::now();
    // JetStream elects a new leader among the two left; until then a publish gets no ack.
    let second = report("cluster-2", &grids[1]);
    let acked = loop {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, "cluster-2");
        let sent = reporter
            .js
            .publish_with_headers(
                crate::harness::subject_for(&second.grid_code),
                headers,
                prost::Message::encode_to_vec(&second).into(),
            )
            .await;
        if let Ok(ack) = sent {
            if let Ok(ack) = ack.await {
                break ack;
            }
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(WAIT),
            "no publish ack within 15 s of killing the leader {leader}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(acked.stream, REPORTS_STREAM);
    let acked_after = killed_at.elapsed();
    let js_alive = admin(&nodes[alive]).await;
    let new_leader = loop {
        if let Some(leader) = cluster_of(&js_alive, REPORTS_STREAM)
            .await
            .and_then(|c| c.leader)
        {
            break leader;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(2 * WAIT),
            "no leader named within {} s of killing {leader}",
            2 * WAIT
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_ne!(new_leader, leader, "the killed node cannot lead");
    eventually(
        "the second report recorded with a node down",
        Duration::from_secs(WAIT),
        || recorded(&db, "cluster-2"),
    )
    .await
    .unwrap();
    eprintln!(
        "leader {leader} killed; publish acked after {:?} (new leader {new_leader}); \
         the report recorded {:?} after the kill",
        acked_after,
        killed_at.elapsed()
    );
    // Both incidents' events reached WHISTLE_EVENTS through the two nodes left.
    eventually(
        "both incidents' events relayed",
        Duration::from_secs(WAIT),
        || {
            let js = &js_alive;
            // An API request during the events stream's election may fail: not yet, not a fault.
            async move {
                let Ok(mut events) = js.get_stream(EVENTS_STREAM).await else {
                    return false;
                };
                events.info().await.is_ok_and(|i| i.state.messages >= 2)
            }
        },
    )
    .await
    .unwrap();

    // Back again, the node catches up from the leaders and every stream is whole.
    nodes[dead].start_again().await.expect("the node restarts");
    for stream in [REPORTS_STREAM, EVENTS_STREAM] {
        eventually(
            &format!("{stream} whole again with {leader} back"),
            Duration::from_secs(WAIT),
            || async { healthy(&cluster_of(&js_alive, stream).await, NODES) },
        )
        .await
        .unwrap();
    }

    // A node gone silent — stopped with its sockets open, as a partition looks to a client: a
    // connection made as every service makes it (`whistle_wire::connect`), given only that node,
    // leaves it after a few unanswered pings for a node the cluster told it of, and goes on.
    let silent = &nodes[alive];
    let client = whistle_wire::connect::connect(
        &silent.url(),
        "it-silent-node",
        &whistle_wire::Credentials::Nkey {
            seed_file: secrets.seed_path(Service::Admin),
            service: "admin".into(),
        },
    )
    .await
    .expect("the admin connects to one node");
    let js_client = jetstream::new(client.clone());
    assert!(js_client.get_stream(REPORTS_STREAM).await.is_ok());
    let signal = |name: &str| {
        let pid = silent.pid().expect("the node runs").to_string();
        let status = std::process::Command::new("kill")
            .args([name, pid.as_str()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {name} {pid}");
    };
    // Stopped for certain before the first question: the kernel shows it in state T.
    let stopped = || {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", silent.pid().unwrap()))
            .expect("the node's /proc stat");
        // `pid (comm) state …`: the state is the first field after the command's parenthesis.
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('T'))
    };
    signal("-STOP");
    while !stopped() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stopped_at = Instant::now();
    let answered = loop {
        let asked = tokio::time::timeout(Duration::from_secs(3), async {
            let mut stream = js_client.get_stream(REPORTS_STREAM).await.ok()?;
            stream.info().await.ok().cloned()
        })
        .await;
        if let Ok(Some(info)) = asked {
            break info;
        }
        // The client's default (a ping a minute) would take three minutes to give up.
        if stopped_at.elapsed() > Duration::from_secs(40) {
            signal("-CONT");
            panic!("the client still waits on the silent node after 40 s");
        }
    };
    let left_after = stopped_at.elapsed();
    // Answered while the node was stopped throughout: through another node.
    let still_stopped = stopped();
    let now_on = client.server_info().server_name;
    signal("-CONT");
    assert!(still_stopped, "the silent node ran again before the answer");
    assert_eq!(answered.config.name, REPORTS_STREAM);
    eprintln!("node n{alive} stopped; the client answered through {now_on} after {left_after:?}");
    dispatch.stop().await;
}
