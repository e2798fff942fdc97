//! A province: two cities, each its own nats-server and JetStream domain (`ordos`, `hohhot`),
//! joined as leaf nodes to a provincial hub (domain `province`), every server with the
//! configuration `whistle nats-config` renders (`--jetstream-domain`, `--leafnode-port`,
//! `--leafnode-remote`, the leaf links on TLS with certificates from one CA, each end verifying
//! the other: `--leafnode-tls-*`). Each city keeps its own `WHISTLE_EVENTS`; the hub's
//! `WHISTLE_PROVINCE_EVENTS` sources both across the domains. Events published as dispatch
//! publishes them (its nkey, `Nats-Msg-Id` = event id) reach the hub once each, each city's in
//! its order; with the hub down the cities keep storing their events, and when it is back the
//! province catches up with nothing missed or repeated. The leaf link carries no more than that:
//! a city cannot reach the hub's JetStream API, the hub cannot manage a city's streams or read
//! its reports, and application subjects stay in their city.

use std::{
    collections::{BTreeMap, BTreeSet},
    os::unix::fs::OpenOptionsExt as _,
    path::Path,
    time::Duration,
};

use async_nats::{header::NATS_MESSAGE_ID, jetstream, HeaderMap};
use whistle_auth::{
    streams::{self, HardenedOptions},
    LeafHub, LeafRemote, RouteTls, Secrets, Service,
};
use whistle_proto::v1;
use whistle_testkit::{free_port, NatsConfig, NatsServer, TempDir};
use whistle_wire::{
    names::{EVENTS_STREAM, PROVINCE_EVENTS_STREAM, REPORTS_STREAM},
    subject,
};

use crate::harness::eventually;

/// A city: its JetStream domain and the district its events carry (national admin codes, so
/// two cities' subjects never collide).
struct City {
    domain: &'static str,
    district: &'static str,
    street: &'static str,
}

const CITIES: [City; 2] = [
    City {
        domain: "ordos",
        district: "150602",
        street: "150602001",
    },
    City {
        domain: "hohhot",
        district: "150102",
        street: "150102001",
    },
];

/// A CA, and `name`'s certificate from it (for 127.0.0.1, server and client use: the hub
/// presents it to the cities, a city to the hub, which verifies it), written under `dir`.
struct Ca {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    path: std::path::PathBuf,
}

impl Ca {
    fn new(dir: &Path) -> Ca {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "whistle-it province CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let path = dir.join("ca.crt");
        std::fs::write(&path, cert.pem()).unwrap();
        Ca { params, key, path }
    }

    fn issue(&self, dir: &Path, name: &str) -> RouteTls {
        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        let (cert_file, key_file) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        RouteTls {
            cert_file,
            key_file,
            ca_file: self.path.clone(),
        }
    }
}

/// The city's secrets with the hub's leaf password copied in, as an operator copies
/// `leaf.password` from the hub's secrets directory.
fn city_secrets(dir: &Path, hub: &Secrets) -> Secrets {
    std::fs::create_dir_all(dir).unwrap();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dir.join(whistle_auth::secrets::LEAF_PASSWORD_FILE))
        .unwrap();
    std::io::Write::write_all(&mut file, format!("{}\n", hub.leaf_password).as_bytes()).unwrap();
    Secrets::load_or_create(dir).unwrap()
}

/// A connection as dispatch makes it (`whistle_wire::connect`, its nkey and inbox prefix).
async fn dispatch_of(server: &NatsServer, secrets: &Secrets) -> jetstream::Context {
    let client = whistle_wire::connect::connect(
        &server.url(),
        "it-province-dispatch",
        &whistle_wire::Credentials::Nkey {
            seed_file: secrets.seed_path(Service::Dispatch),
            service: Service::Dispatch.name().into(),
        },
    )
    .await
    .expect("dispatch connects to its city");
    jetstream::new(client)
}

/// Publishes `n` events of `city` as the relay does and returns their ids, in order; each is
/// stored by the city's own `WHISTLE_EVENTS`.
async fn publish(js: &jetstream::Context, city: &City, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let id = uuid::Uuid::now_v7().to_string();
        let event = v1::Event {
            event_id: id.clone(),
            kind: "incident.reported".into(),
            incident_id: uuid::Uuid::now_v7().to_string(),
            district_code: city.district.into(),
            street_code: city.street.into(),
            actor_id: "system".into(),
            ..Default::default()
        };
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, id.as_str());
        let ack = js
            .publish_with_headers(
                subject::incident_event(city.district, city.street, &event.kind),
                headers,
                prost::Message::encode_to_vec(&event).into(),
            )
            .await
            .expect("published")
            .await
            .unwrap_or_else(|e| panic!("{} stores its own event: {e}", city.domain));
        assert_eq!(ack.stream, EVENTS_STREAM);
        assert!(!ack.duplicate);
        ids.push(id);
    }
    ids
}

/// Every message of the province's stream, as (district, event id), in stream order.
async fn province_events(js: &jetstream::Context) -> Vec<(String, String)> {
    let mut stream = js.get_stream(PROVINCE_EVENTS_STREAM).await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut all = Vec::new();
    for seq in 1..=last {
        let message = stream.get_raw_message(seq).await.unwrap();
        let event: v1::Event = prost::Message::decode(message.payload.as_ref()).unwrap();
        let id = message
            .headers
            .get(NATS_MESSAGE_ID)
            .map(|v| v.to_string())
            .unwrap_or_default();
        assert_eq!(id, event.event_id, "the header travels with the event");
        all.push((event.district_code, event.event_id));
    }
    all
}

/// The province's stream holds exactly `published`: each event once, each city's in order.
async fn assert_exactly(js: &jetstream::Context, published: &BTreeMap<&str, Vec<String>>) {
    let all = province_events(js).await;
    let distinct: BTreeSet<_> = all.iter().map(|(_, id)| id).collect();
    assert_eq!(distinct.len(), all.len(), "an event sourced twice");
    for city in &CITIES {
        let of_city: Vec<String> = all
            .iter()
            .filter(|(district, _)| district == city.district)
            .map(|(_, id)| id.clone())
            .collect();
        assert_eq!(
            &of_city, &published[city.district],
            "{}'s events in the province",
            city.domain
        );
    }
    let total: usize = published.values().map(Vec::len).sum();
    assert_eq!(all.len(), total, "nothing but the cities' events");
}

/// Every source is followed with nothing left to copy, and the stream holds `total` messages.
async fn caught_up(js: &jetstream::Context, total: usize) -> bool {
    let Ok(mut stream) = js.get_stream(PROVINCE_EVENTS_STREAM).await else {
        return false;
    };
    let Ok(info) = stream.info().await else {
        return false;
    };
    info.state.messages == total as u64
        && info.sources.len() == CITIES.len()
        && info.sources.iter().all(|s| s.lag == 0)
}

/// A request across the link that must find nobody to answer it.
async fn unanswered(client: &async_nats::Client, subject: &str) -> bool {
    let asked = tokio::time::timeout(
        Duration::from_secs(2),
        client.request(subject.to_owned(), "".into()),
    )
    .await;
    !matches!(asked, Ok(Ok(_)))
}

#[tokio::test]
async fn a_province_sources_every_citys_events_once_and_in_order_across_a_cut_link() {
    let dir = TempDir::new("province").unwrap();
    let hub_secrets = Secrets::load_or_create(&dir.path().join("hub-secrets")).unwrap();
    let leaf_port = free_port().expect("a free port");
    let ca = Ca::new(dir.path());
    let mut hub = NatsConfig::new()
        .dir(dir.path().join("hub"))
        .secured_with(&hub_secrets, |config| {
            config.server_name = Some("province-hub".into());
            config.jetstream_domain = Some("province".into());
            config.leaf_hub = Some(LeafHub {
                host: "127.0.0.1".into(),
                port: leaf_port,
                password: hub_secrets.leaf_password.clone(),
                tls: Some(ca.issue(dir.path(), "province-hub")),
            });
        })
        .start()
        .await
        .expect("the hub starts");

    let mut servers = Vec::new();
    let mut dispatchers = Vec::new();
    for city in &CITIES {
        let secrets = city_secrets(
            &dir.path().join(format!("{}-secrets", city.domain)),
            &hub_secrets,
        );
        let server = NatsConfig::new()
            .dir(dir.path().join(city.domain))
            .secured_with(&secrets, |config| {
                config.server_name = Some(format!("{}-1", city.domain));
                config.jetstream_domain = Some(city.domain.into());
                config.leaf_remote = Some(LeafRemote {
                    urls: vec![format!("127.0.0.1:{leaf_port}")],
                    password: secrets.leaf_password.clone(),
                    tls: Some(ca.issue(dir.path(), city.domain)),
                });
            })
            .start()
            .await
            .unwrap_or_else(|e| panic!("{} starts: {e}", city.domain));
        // `whistle streams` in the city, as its admin.
        let admin = jetstream::new(server.connect().await.unwrap());
        streams::ensure(&admin, &HardenedOptions::small())
            .await
            .unwrap_or_else(|e| panic!("{}'s streams: {e}", city.domain));
        dispatchers.push(dispatch_of(&server, &secrets).await);
        servers.push((server, secrets));
    }

    // `whistle streams --province-sources ordos,hohhot` on the hub, once both leaf links are
    // up: the hub's JetStream reaches a city's API only through its link, and a source set up
    // before it waits 30 s for its answer before trying again. A city's events stream answers
    // the questions sourcing asks (its consumers) across the link.
    let hub_client = hub.connect().await.unwrap();
    for city in &CITIES {
        let subject = format!("$JS.{}.API.CONSUMER.NAMES.{EVENTS_STREAM}", city.domain);
        eventually(
            &format!("{}'s link to the hub", city.domain),
            Duration::from_secs(10),
            || async { !unanswered(&hub_client, &subject).await },
        )
        .await
        .unwrap();
    }
    let hub_admin = jetstream::new(hub_client.clone());
    let domains: Vec<String> = CITIES.iter().map(|c| c.domain.to_owned()).collect();
    streams::ensure_province(&hub_admin, &HardenedOptions::small(), &domains)
        .await
        .expect("the province's stream");

    let mut published: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (city, js) in CITIES.iter().zip(&dispatchers) {
        published.insert(city.district, publish(js, city, 20).await);
    }
    eventually(
        "both cities' events in the province",
        Duration::from_secs(20),
        || caught_up(&hub_admin, 40),
    )
    .await
    .unwrap();
    assert_exactly(&hub_admin, &published).await;

    // What the link does not carry. A city's admin (unrestricted in its city) cannot reach
    // the hub's JetStream, nor through it another city's; the hub's admin cannot manage a
    // city's streams nor read its raw reports; a city's events are not core messages in the hub.
    let ordos_admin = servers[0].0.connect().await.unwrap();
    for subject in [
        format!("$JS.province.API.STREAM.INFO.{PROVINCE_EVENTS_STREAM}"),
        format!("$JS.hohhot.API.STREAM.INFO.{EVENTS_STREAM}"),
    ] {
        assert!(unanswered(&ordos_admin, &subject).await, "{subject}");
    }
    for subject in [
        format!("$JS.ordos.API.STREAM.INFO.{EVENTS_STREAM}"),
        format!("$JS.ordos.API.STREAM.DELETE.{EVENTS_STREAM}"),
        format!("$JS.ordos.API.CONSUMER.CREATE.{REPORTS_STREAM}"),
    ] {
        assert!(unanswered(&hub_client, &subject).await, "{subject}");
    }
    let mut overheard = hub_client.subscribe("whistle.>").await.unwrap();
    hub_client.flush().await.unwrap();
    let ordos_js = &dispatchers[0];
    published
        .get_mut(CITIES[0].district)
        .unwrap()
        .extend(publish(ordos_js, &CITIES[0], 1).await);
    assert!(
        tokio::time::timeout(
            Duration::from_secs(1),
            futures::StreamExt::next(&mut overheard)
        )
        .await
        .is_err(),
        "a city's event crossed the link as a core message"
    );
    let mut ordos_events = jetstream::new(ordos_admin.clone())
        .get_stream(EVENTS_STREAM)
        .await
        .expect("the hub's delete never reached ordos");
    assert_eq!(ordos_events.info().await.unwrap().state.messages, 21);

    // The link cut: the hub killed. Both cities go on storing their events meanwhile.
    hub.kill();
    for (city, js) in CITIES.iter().zip(&dispatchers) {
        let more = publish(js, city, 15).await;
        published.get_mut(city.district).unwrap().extend(more);
    }
    let mut ordos_events = jetstream::new(ordos_admin)
        .get_stream(EVENTS_STREAM)
        .await
        .unwrap();
    assert_eq!(ordos_events.info().await.unwrap().state.messages, 36);

    // The hub back on its store: the province catches up from where each source stopped.
    hub.start_again().await.expect("the hub restarts");
    let restarted_at = std::time::Instant::now();
    let hub_admin = jetstream::new(hub.connect().await.unwrap());
    let total: usize = published.values().map(Vec::len).sum();
    eventually(
        "the province caught up after the cut",
        Duration::from_secs(55),
        || caught_up(&hub_admin, total),
    )
    .await
    .unwrap_or_else(|e| {
        let log = std::fs::read_to_string(hub.log_path()).unwrap_or_default();
        let tail = &log[log.len().saturating_sub(3000)..];
        let city = std::fs::read_to_string(servers[0].0.log_path()).unwrap_or_default();
        let city = &city[city.len().saturating_sub(4000)..];
        panic!("{e}; the hub's log ends:\n{tail}\nordos's:\n{city}")
    });
    let caught_up_after = restarted_at.elapsed();
    assert_exactly(&hub_admin, &published).await;
    // nats-server retries a source whose consumer it could not create (the cities' links come
    // back only after the hub's streams are restored) after 10 s, then 20 s, …, at most 2 min.
    eprintln!(
        "province: {total} events of {} cities sourced once each and in order across a cut \
         link; caught up {caught_up_after:?} after the hub restarted",
        CITIES.len()
    );
}
