//! The `WHISTLE_*` streams, the one home of their configuration: the admin identity creates
//! them (`whistle streams`), dispatch only opens them. Raw reports are kept only a day
//! ([`DEFAULT_REPORT_RETENTION`]); messages can be neither deleted nor purged, and every stream has
//! a byte and message-size bound. Names and subjects come from whistle-wire.

use std::time::Duration;

use async_nats::jetstream::{self, context::GetStreamErrorKind, stream, ErrorCode};

use whistle_wire::{
    names::{
        EVENTS_STREAM, PHOTOS_BUCKET, PHOTOS_STREAM, PROVINCE_EVENTS_STREAM, REJECTED_STREAM,
        REPORTS_STREAM,
    },
    subject::{ALL_INCIDENT_EVENTS, ALL_REJECTED, ALL_REPORTS, ALL_TASK_EVENTS},
};

use crate::{Error, Result};

/// Retention and bounds of the three streams.
#[derive(Debug, Clone, PartialEq)]
pub struct HardenedOptions {
    /// How long JetStream remembers a report's `Nats-Msg-Id` to drop a republish.
    pub report_duplicate_window: Duration,
    /// How long a raw report (with its resident's contact) stays in `WHISTLE_REPORTS`: only as
    /// long as intake may need it (redeliveries, a dispatch outage), [`DEFAULT_REPORT_RETENTION`]
    /// unless the operator sets another (docs/operations.md).
    pub report_max_age: Duration,
    pub event_max_age: Duration,
    pub rejected_max_age: Duration,
    pub report_max_bytes: i64,
    pub event_max_bytes: i64,
    pub rejected_max_bytes: i64,
    /// Larger than validation's limit, so oversized reports are rejected by dispatch with a reason.
    pub report_max_message_size: i32,
    pub event_max_message_size: i32,
    /// Holds a rejected report with its reason.
    pub rejected_max_message_size: i32,
    /// All photos together (the bucket refuses new photos when full; photos are kept with their
    /// incidents, so size it for the years the incidents are kept: `whistle streams
    /// --photo-max-gib`).
    pub photo_max_bytes: i64,
    /// Copies of each stream in a JetStream cluster (at most 5). `None` leaves an existing
    /// stream at the count it has and creates a missing one at 1, so an update run without it
    /// never shrinks a clustered deployment's streams.
    pub replicas: Option<usize>,
    /// Server tags (`server_tags` of nats-server) every copy's server must carry, e.g. one
    /// data centre; empty leaves an existing stream's placement as it is.
    pub placement_tags: Vec<String>,
}

/// The default retention of raw reports: a day, ample for intake to ack them after an outage,
/// and the bound on how long a resident's contact sits in the stream.
pub const DEFAULT_REPORT_RETENTION: Duration = Duration::from_secs(24 * 3600);

const GIB: i64 = 1024 * 1024 * 1024;
const MIB: i32 = 1024 * 1024;

impl Default for HardenedOptions {
    fn default() -> Self {
        HardenedOptions {
            report_duplicate_window: Duration::from_secs(10 * 60),
            report_max_age: DEFAULT_REPORT_RETENTION,
            event_max_age: Duration::from_secs(30 * 24 * 3600),
            rejected_max_age: Duration::from_secs(90 * 24 * 3600),
            report_max_bytes: 4 * GIB,
            event_max_bytes: 16 * GIB,
            rejected_max_bytes: GIB,
            report_max_message_size: MIB,
            event_max_message_size: MIB,
            rejected_max_message_size: 2 * MIB,
            photo_max_bytes: 8 * GIB,
            replicas: None,
            placement_tags: Vec::new(),
        }
    }
}

impl HardenedOptions {
    /// Bounds for a test or a laptop: 256 MiB a stream. JetStream reserves every stream's
    /// `max_bytes` against the server's file store (by default 75 % of the free disk), so the
    /// production bounds (21 GiB together) need about 28 GB free on each server that holds them.
    pub fn small() -> HardenedOptions {
        const SMALL: i64 = 256 * 1024 * 1024;
        HardenedOptions {
            report_max_bytes: SMALL,
            event_max_bytes: SMALL,
            rejected_max_bytes: SMALL,
            photo_max_bytes: SMALL,
            ..HardenedOptions::default()
        }
    }

    /// The replica count a new stream gets.
    fn new_replicas(&self) -> usize {
        self.replicas.unwrap_or(1).max(1)
    }

    fn placement(&self) -> Option<stream::Placement> {
        (!self.placement_tags.is_empty()).then(|| stream::Placement {
            cluster: None,
            tags: self.placement_tags.clone(),
        })
    }
}

/// JetStream's ceiling on a stream's replicas.
pub const MAX_REPLICAS: usize = 5;

/// The three stream configurations.
pub fn configs(options: &HardenedOptions) -> [stream::Config; 3] {
    let hardened = |config: stream::Config| stream::Config {
        storage: stream::StorageType::File,
        // When full, refuse new messages rather than silently dropping the oldest unread ones.
        discard: stream::DiscardPolicy::New,
        deny_delete: true,
        deny_purge: true,
        num_replicas: options.new_replicas(),
        placement: options.placement(),
        ..config
    };
    [
        hardened(stream::Config {
            name: REPORTS_STREAM.into(),
            description: Some("reports from grid workers".into()),
            subjects: vec![ALL_REPORTS.into()],
            duplicate_window: options.report_duplicate_window,
            max_age: options.report_max_age,
            max_bytes: options.report_max_bytes,
            max_message_size: options.report_max_message_size,
            ..Default::default()
        }),
        hardened(stream::Config {
            name: EVENTS_STREAM.into(),
            description: Some("every state change, in commit order".into()),
            subjects: vec![ALL_INCIDENT_EVENTS.into(), ALL_TASK_EVENTS.into()],
            duplicate_window: Duration::from_secs(10 * 60),
            max_age: options.event_max_age,
            max_bytes: options.event_max_bytes,
            max_message_size: options.event_max_message_size,
            ..Default::default()
        }),
        hardened(stream::Config {
            name: REJECTED_STREAM.into(),
            description: Some(
                "reports that failed validation or delivery, with reason and original bytes".into(),
            ),
            subjects: vec![ALL_REJECTED.into()],
            duplicate_window: Duration::from_secs(10 * 60),
            max_age: options.rejected_max_age,
            max_bytes: options.rejected_max_bytes,
            max_message_size: options.rejected_max_message_size,
            ..Default::default()
        }),
    ]
}

/// The stream of the photos' object store bucket, as async-nats's `create_object_store` makes
/// it (chunks `$O.{bucket}.C.>`, metadata `$O.{bucket}.M.>`, roll-ups, direct gets), hardened
/// where an object store allows: messages cannot be deleted, new ones are refused when full.
/// Purge stays possible — nats-server refuses roll-ups (which an object's metadata needs) on a
/// stream that denies purge — so only the admin's permissions reach the purge API.
pub fn photos_config(options: &HardenedOptions) -> stream::Config {
    stream::Config {
        name: PHOTOS_STREAM.into(),
        description: Some("incidents' photos (object store bucket WHISTLE_PHOTOS)".into()),
        subjects: vec![
            format!("$O.{PHOTOS_BUCKET}.C.>"),
            format!("$O.{PHOTOS_BUCKET}.M.>"),
        ],
        storage: stream::StorageType::File,
        discard: stream::DiscardPolicy::New,
        allow_rollup: true,
        allow_direct: true,
        deny_delete: true,
        max_bytes: options.photo_max_bytes,
        // A chunk is 128 KiB; metadata far less.
        max_message_size: MIB,
        num_replicas: options.new_replicas(),
        placement: options.placement(),
        ..Default::default()
    }
}

/// The province hub's stream: one source per city, each the city's `WHISTLE_EVENTS` reached
/// through its JetStream domain's API (`$JS.{domain}.API`) over the city's leaf connection.
/// JetStream keeps each source's position in the stream itself, so a cut link resumes where it
/// stopped: every city's events once, each city's in its own order. Bounded and kept like a
/// city's events, scaled by the number of cities.
pub fn province_config(options: &HardenedOptions, domains: &[String]) -> stream::Config {
    let cities = i64::try_from(domains.len().max(1)).unwrap_or(i64::MAX);
    stream::Config {
        name: PROVINCE_EVENTS_STREAM.into(),
        description: Some(format!(
            "every city's events, sourced from {}",
            domains.join(", ")
        )),
        sources: Some(
            domains
                .iter()
                .map(|domain| stream::Source {
                    name: EVENTS_STREAM.into(),
                    external: Some(stream::External {
                        api_prefix: format!("$JS.{domain}.API"),
                        delivery_prefix: None,
                    }),
                    ..Default::default()
                })
                .collect(),
        ),
        storage: stream::StorageType::File,
        discard: stream::DiscardPolicy::New,
        deny_delete: true,
        deny_purge: true,
        max_age: options.event_max_age,
        max_bytes: options.event_max_bytes.saturating_mul(cities),
        max_message_size: options.event_max_message_size,
        num_replicas: options.new_replicas(),
        placement: options.placement(),
        ..Default::default()
    }
}

/// A city's JetStream domain as nats-server accepts it (it becomes a subject token).
pub fn valid_domain(domain: &str) -> bool {
    !domain.is_empty()
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Creates the province's stream on the hub, or brings it to these sources (a city added is
/// sourced from its first event on; one removed is no longer followed, its events already
/// copied stay). Needs the admin identity on the hub.
pub async fn ensure_province(
    js: &jetstream::Context,
    options: &HardenedOptions,
    domains: &[String],
) -> Result<()> {
    check_replicas(options)?;
    if domains.is_empty() {
        return Err(Error::Nats(
            "a province needs at least one city's domain".into(),
        ));
    }
    if let Some(bad) = domains.iter().find(|d| !valid_domain(d)) {
        return Err(Error::Nats(format!(
            "{bad:?} is not a JetStream domain (letters, digits, - and _ only)"
        )));
    }
    let mut unique = domains.to_vec();
    unique.sort();
    unique.dedup();
    if unique.len() != domains.len() {
        return Err(Error::Nats(format!(
            "a city's domain is listed twice in {}",
            domains.join(",")
        )));
    }
    upsert(js, options, province_config(options, domains)).await
}

/// Creates or updates one stream, keeping an existing one's replicas and placement unless the
/// options set them.
async fn upsert(
    js: &jetstream::Context,
    options: &HardenedOptions,
    mut config: stream::Config,
) -> Result<()> {
    let name = config.name.clone();
    let existing = match js.get_stream(&name).await {
        Ok(stream) => Some(stream.cached_info().config.clone()),
        Err(e)
            if matches!(
                e.kind(),
                GetStreamErrorKind::JetStream(ref js_error)
                    if js_error.error_code() == ErrorCode::STREAM_NOT_FOUND
            ) =>
        {
            None
        }
        Err(e) => return Err(Error::Nats(format!("looking up stream {name}: {e}"))),
    };
    let result = match existing {
        Some(current) => {
            if options.replicas.is_none() {
                config.num_replicas = current.num_replicas.max(1);
            }
            if options.placement_tags.is_empty() {
                config.placement = current.placement;
            }
            let n = config.num_replicas;
            js.update_stream(config)
                .await
                .map(drop)
                .map_err(|e| ("updating", n, e.to_string()))
        }
        None => {
            let n = config.num_replicas;
            js.create_stream(config)
                .await
                .map(drop)
                .map_err(|e| ("creating", n, e.to_string()))
        }
    };
    result.map_err(|(doing, n, e)| {
        Error::Nats(format!(
            "{doing} stream {name} with {n} replica(s): {e}{}",
            too_few_servers_hint(&e)
        ))
    })
}

/// Creates the streams, or brings existing ones to these settings (deny-delete and deny-purge
/// cannot be turned off again once set). A changed replica count or placement is applied by
/// JetStream to the running stream: it adds copies (catching them up from the leader) or drops
/// them. Needs the admin identity.
pub async fn ensure(js: &jetstream::Context, options: &HardenedOptions) -> Result<()> {
    check_replicas(options)?;
    for config in configs(options).into_iter().chain([photos_config(options)]) {
        upsert(js, options, config).await?;
    }
    Ok(())
}

fn check_replicas(options: &HardenedOptions) -> Result<()> {
    match options.replicas {
        Some(replicas) if !(1..=MAX_REPLICAS).contains(&replicas) => Err(Error::Nats(format!(
            "{replicas} replicas: JetStream keeps 1 to {MAX_REPLICAS} copies of a stream"
        ))),
        _ => Ok(()),
    }
}

/// What JetStream's refusal to place a stream's copies usually means: fewer servers (with the
/// placement's tags) than copies, or servers without the disk for the stream's bound, which
/// JetStream reserves on every server holding a copy.
fn too_few_servers_hint(error: &str) -> &'static str {
    if error.contains("insufficient storage") {
        " (every server holding a copy reserves the stream's byte bound on its disk, by default at \
         most 75 % of the free space: free disk, or lower the bounds with `whistle streams \
         --report-max-gib/--event-max-gib/--rejected-max-gib/--photo-max-gib`)"
    } else if error.contains("insufficient resources") || error.contains("no suitable peers") {
        " (a stream needs as many JetStream servers of the cluster, carrying its placement tags, \
         as it has replicas; is every node up and routed?)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stream_denies_delete_and_purge_and_is_bounded() {
        for config in configs(&HardenedOptions::default()) {
            assert!(config.deny_delete && config.deny_purge, "{}", config.name);
            assert!(config.max_bytes > 0, "{}", config.name);
            assert!(config.max_message_size > 0, "{}", config.name);
            assert_eq!(config.discard, stream::DiscardPolicy::New);
        }
    }

    #[test]
    fn replicas_and_placement_reach_every_stream_and_default_to_one_copy_anywhere() {
        let single = HardenedOptions::default();
        for config in configs(&single).into_iter().chain([photos_config(&single)]) {
            assert_eq!(config.num_replicas, 1, "{}", config.name);
            assert_eq!(config.placement, None, "{}", config.name);
        }
        let clustered = HardenedOptions {
            replicas: Some(3),
            placement_tags: vec!["dc:ordos-1".into()],
            ..HardenedOptions::default()
        };
        for config in configs(&clustered)
            .into_iter()
            .chain([photos_config(&clustered)])
        {
            assert_eq!(config.num_replicas, 3, "{}", config.name);
            assert_eq!(
                config.placement.as_ref().map(|p| p.tags.clone()),
                Some(vec!["dc:ordos-1".to_owned()]),
                "{}",
                config.name
            );
        }
    }

    #[test]
    fn a_missing_server_is_named_when_jetstream_lacks_resources() {
        assert!(too_few_servers_hint("insufficient resources (10023)").contains("every node up"));
        assert!(too_few_servers_hint(
            "no suitable peers for placement, insufficient storage (10005)"
        )
        .contains("--event-max-gib"));
        assert_eq!(too_few_servers_hint("stream name already in use"), "");
    }

    #[test]
    fn the_province_sources_each_citys_events_through_its_domain_and_is_hardened() {
        let domains = vec!["ordos".to_owned(), "hohhot".to_owned()];
        let config = province_config(&HardenedOptions::default(), &domains);
        assert_eq!(config.name, "WHISTLE_PROVINCE_EVENTS");
        assert!(config.subjects.is_empty(), "sources only");
        let sources = config.sources.unwrap();
        let apis: Vec<_> = sources
            .iter()
            .map(|s| {
                assert_eq!(s.name, "WHISTLE_EVENTS");
                s.external.as_ref().unwrap().api_prefix.as_str()
            })
            .collect();
        assert_eq!(apis, ["$JS.ordos.API", "$JS.hohhot.API"]);
        assert!(config.deny_delete && config.deny_purge);
        assert_eq!(config.discard, stream::DiscardPolicy::New);
        assert_eq!(
            config.max_bytes,
            2 * HardenedOptions::default().event_max_bytes
        );
        assert!(config.max_message_size > 0);
        assert!(valid_domain("ordos") && valid_domain("inner_mongolia-2"));
        for bad in ["", "a.b", "a b", "a>", "*"] {
            assert!(!valid_domain(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_photo_bucket_is_an_object_store_that_denies_delete_and_is_bounded() {
        let config = photos_config(&HardenedOptions::default());
        assert_eq!(config.name, format!("OBJ_{PHOTOS_BUCKET}"));
        assert!(config.allow_rollup && config.allow_direct && config.deny_delete);
        assert!(config.max_bytes > 0 && config.max_message_size > 128 * 1024);
        assert_eq!(config.discard, stream::DiscardPolicy::New);
    }
}
