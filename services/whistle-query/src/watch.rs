//! `WatchEvents`: live events of `WHISTLE_EVENTS` for the screens, resumable by stream sequence.
//!
//! One ordered consumer per process (the [`Feed`]) reads the stream and fans each event out on a
//! bounded broadcast channel, so a thousand screens cost one consumer on the NATS server. Each
//! stream RPC then runs its own task:
//!
//! 1. it subscribes to the feed first, then, when the client asks to resume after a sequence,
//!    **catches up** from JetStream itself (an ordered consumer of its own, from that sequence to
//!    the stream's last one when it began) and then joins the feed, skipping what it already sent;
//! 2. a client too slow for the broadcast buffer only lags its own receiver: it goes back to step 1
//!    from the last sequence it was sent, so it is never silently short of events and never slows
//!    the feed or other clients;
//! 3. only events the stream no longer holds (older than its retention) are skipped, and then the
//!    client is told with a `Gap` saying what was skipped, before the next event.
//!
//! Events are filtered by area (the token's area when the request names none) and kind.

use std::{collections::HashSet, sync::Arc, time::Duration};

use async_nats::jetstream::{self, consumer};
use bytes::Bytes;
use futures::StreamExt as _;
use prost::Message as _;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tracing::{debug, warn};
use whistle_domain::AreaCode;
use whistle_proto::v1;
use whistle_wire::{names::EVENTS_STREAM as EVENTS, subject::event_in_area};

use crate::{metrics::Metrics, replica::Replica, Error, Result};

/// Events buffered per process for live streams by default; a client further behind catches up
/// from JetStream instead.
/// 65,536 events is about a minute of a busy city's events (tens of MB): enough that a screen
/// behind by a few seconds under load never needs a catch-up, which costs a NATS consumer.
pub const DEFAULT_WATCH_BUFFER: usize = 65_536;
/// Responses queued for one client's connection before its task waits on it.
const CLIENT_QUEUE: usize = 256;
pub const MAX_KINDS: usize = 64;

/// One event of the stream, decoded once (for the filters) for every client, with its bytes as
/// stored (sent as they are). `event` is `None` for a message that is not a `whistle.v1.Event`:
/// it is logged once and keeps the sequence numbers contiguous.
#[derive(Debug)]
pub(crate) struct Sequenced {
    pub sequence: u64,
    pub event: Option<v1::Event>,
    pub payload: Bytes,
}

/// `whistle.v1.WatchEventsResponse` as it goes on the wire, with the event as its encoded bytes:
/// an embedded message field is length-delimited bytes on the wire, so this encodes exactly as
/// the proto type does (tested below) without encoding the event again for every client.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireResponse {
    #[prost(oneof = "WireItem", tags = "1, 2")]
    pub item: Option<WireItem>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum WireItem {
    /// `SequencedEvent { sequence = 1; Event event = 2 }`.
    #[prost(message, tag = "1")]
    Event(WireEvent),
    #[prost(message, tag = "2")]
    Gap(v1::Gap),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WireEvent {
    #[prost(uint64, tag = "1")]
    pub sequence: u64,
    #[prost(bytes = "bytes", tag = "2")]
    pub event: Bytes,
}

fn decode(sequence: u64, payload: &Bytes) -> Arc<Sequenced> {
    let event = match v1::Event::decode(payload.clone()) {
        Ok(event) => Some(event),
        Err(e) => {
            warn!(sequence, error = %e, "not a whistle.v1.Event in WHISTLE_EVENTS; skipped");
            None
        }
    };
    Arc::new(Sequenced {
        sequence,
        event,
        payload: payload.clone(),
    })
}

/// The process's one reader of `WHISTLE_EVENTS`.
#[derive(Debug, Clone)]
pub(crate) struct Feed {
    sender: broadcast::Sender<Arc<Sequenced>>,
    jetstream: jetstream::Context,
}

impl Feed {
    /// Starts following the stream's new events until `shutdown`; waits for the stream to exist
    /// (dispatch creates it) rather than failing.
    pub fn start(
        nats: async_nats::Client,
        buffer: usize,
        metrics: Metrics,
        replica: Replica,
        shutdown: CancellationToken,
    ) -> Feed {
        let (sender, _) = broadcast::channel(buffer);
        let feed = Feed {
            sender,
            jetstream: jetstream::new(nats),
        };
        tokio::spawn(feed.clone().follow(metrics, replica, shutdown));
        feed
    }

    async fn follow(self, metrics: Metrics, replica: Replica, shutdown: CancellationToken) {
        let mut start = consumer::DeliverPolicy::New;
        loop {
            let messages = async {
                let stream = self.jetstream.get_stream(EVENTS).await?;
                let consumer = stream
                    .create_consumer(consumer::pull::OrderedConfig {
                        deliver_policy: start,
                        ..Default::default()
                    })
                    .await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(consumer.messages().await?)
            };
            let mut messages = tokio::select! {
                _ = shutdown.cancelled() => return,
                opened = messages => match opened {
                    Ok(messages) => messages,
                    Err(e) => {
                        warn!(error = %e, "cannot follow WHISTLE_EVENTS yet; retrying");
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        }
                    }
                },
            };
            loop {
                // `unconstrained`: a busy stream would otherwise stall on tokio's co-op budget.
                let next = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    next = tokio::task::unconstrained(messages.next()) => next,
                };
                match next {
                    Some(Ok(message)) => {
                        let Ok(info) = message.info() else { continue };
                        let sequence = info.stream_sequence;
                        metrics.feed_sequence(sequence);
                        let event = decode(sequence, &message.payload);
                        // Whoever acted reads their action from the primary until the standby
                        // has it (a command sent straight over NATS comes this way only).
                        if let Some(event) = &event.event {
                            replica.saw(&event.actor_id);
                        }
                        // No receivers is fine: nobody is watching.
                        let _ = self.sender.send(event);
                        start = consumer::DeliverPolicy::ByStartSequence {
                            start_sequence: sequence + 1,
                        };
                    }
                    Some(Err(e)) => {
                        // The ordered consumer recreates itself; a persistent error reopens it.
                        warn!(error = %e, "reading WHISTLE_EVENTS");
                        break;
                    }
                    None => break,
                }
            }
        }
    }
}

/// What a client asked to see.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    pub area: AreaCode,
    pub kinds: HashSet<String>,
}

impl Filter {
    /// Kinds are dotted lowercase names such as `incident.reported`.
    pub fn new(area: AreaCode, kinds: &[String]) -> Result<Filter> {
        if kinds.len() > MAX_KINDS {
            return Err(Error::invalid(format!(
                "at most {MAX_KINDS} kinds, not {}",
                kinds.len()
            )));
        }
        for kind in kinds {
            let valid = !kind.is_empty()
                && kind.len() <= 64
                && kind
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_');
            if !valid {
                return Err(Error::invalid(format!(
                    "kinds: {kind:?} is not an event kind like incident.reported"
                )));
            }
        }
        Ok(Filter {
            area,
            kinds: kinds.iter().cloned().collect(),
        })
    }

    fn matches(&self, event: &v1::Event) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&event.kind))
            && event_in_area(&self.area, event)
    }
}

/// The response stream of one `WatchEvents` call.
pub(crate) type Responses =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<WireResponse, Status>> + Send>>;

/// Starts the task that serves one client and returns its response stream.
pub(crate) fn watch(
    feed: &Feed,
    filter: Filter,
    since_sequence: u64,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> Responses {
    let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
    let client = Client {
        feed: feed.clone(),
        filter,
        tx,
        metrics: metrics.clone(),
    };
    tokio::spawn(async move {
        let _active = metrics.watch_started();
        let ended = tokio::select! {
            ended = client.run(since_sequence) => ended,
            _ = shutdown.cancelled() => Err(CatchUp::Failed(Status::unavailable(
                "the server is shutting down; reconnect and resume from the last sequence you saw",
            ))),
        };
        if let Err(CatchUp::Failed(status)) = ended {
            debug!(code = ?status.code(), message = status.message(), "watch ended");
            // Best effort: a client that stopped reading is not waited for.
            let _ = client.tx.try_send(Err(status));
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

struct Client {
    feed: Feed,
    filter: Filter,
    tx: mpsc::Sender<Result<WireResponse, Status>>,
    metrics: Metrics,
}

impl Client {
    /// Serves the client until it goes away (`Ok`) or the events cannot be read.
    async fn run(&self, since_sequence: u64) -> Result<(), CatchUp> {
        // Subscribe before reading the stream's state, so that every event after the catch-up's
        // end reaches the receiver.
        let mut live = self.feed.sender.subscribe();
        let mut next = self
            .catch_up((since_sequence > 0).then_some(since_sequence + 1))
            .await?;
        loop {
            match live.recv().await {
                Ok(item) if item.sequence < next => {} // sent while catching up
                Ok(item) if item.sequence == next => {
                    next += 1;
                    self.send(&item).await?;
                }
                // Behind the live buffer (or, should the feed ever skip, a hole): read what is
                // missing from JetStream, then rejoin.
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    self.metrics.watch_lagged();
                    live = self.feed.sender.subscribe();
                    next = self.catch_up(Some(next)).await?;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    return Err(CatchUp::Failed(Status::unavailable(
                        "the event feed stopped",
                    )));
                }
            }
        }
    }

    async fn send(&self, item: &Sequenced) -> Result<(), CatchUp> {
        if !item.event.as_ref().is_some_and(|e| self.filter.matches(e)) {
            return Ok(());
        }
        let response = WireResponse {
            item: Some(WireItem::Event(WireEvent {
                sequence: item.sequence,
                event: item.payload.clone(),
            })),
        };
        self.tx.send(Ok(response)).await.map_err(|_| CatchUp::Gone)
    }

    /// Sends every event from `from` to the stream's last one (as of now) straight from
    /// JetStream, and returns the sequence that follows; `None` sends nothing and starts after
    /// the last one. Events the stream no longer holds are announced with a gap.
    async fn catch_up(&self, from: Option<u64>) -> Result<u64, CatchUp> {
        let unavailable = |e: &dyn std::fmt::Display| {
            CatchUp::Failed(Status::unavailable(format!("reading WHISTLE_EVENTS: {e}")))
        };
        let mut stream = self
            .feed
            .jetstream
            .get_stream(EVENTS)
            .await
            .map_err(|e| unavailable(&e))?;
        let state = stream
            .info()
            .await
            .map_err(|e| unavailable(&e))?
            .state
            .clone();
        let last = state.last_sequence;
        let mut from = from.unwrap_or(last + 1);
        if state.first_sequence > from {
            let gap = v1::Gap {
                from_sequence: from,
                next_sequence: state.first_sequence,
                reason: format!(
                    "events {from}..{} are no longer held by {EVENTS}; reload state from the other RPCs",
                    state.first_sequence - 1
                ),
            };
            self.metrics.watch_gap();
            self.tx
                .send(Ok(WireResponse {
                    item: Some(WireItem::Gap(gap)),
                }))
                .await
                .map_err(|_| CatchUp::Gone)?;
            from = state.first_sequence;
        }
        if from > last {
            return Ok(from);
        }
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: from,
                },
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable(&e))?;
        let mut messages = consumer.messages().await.map_err(|e| unavailable(&e))?;
        let mut next = from;
        while next <= last {
            let message = match messages.next().await {
                Some(Ok(message)) => message,
                Some(Err(e)) => return Err(unavailable(&e)),
                None => return Err(unavailable(&"the stream ended")),
            };
            let Ok(info) = message.info() else { continue };
            let item = decode(info.stream_sequence, &message.payload);
            next = item.sequence + 1;
            self.send(&item).await?;
        }
        Ok(next)
    }
}

/// Why a client's task ends early.
enum CatchUp {
    /// The client went away: nothing more to do.
    Gone,
    /// Tell the client, which may reconnect and resume.
    Failed(Status),
}

#[cfg(test)]
mod tests {
    use whistle_proto::v1::watch_events_response::Item;

    use super::*;

    #[test]
    fn the_wire_response_encodes_exactly_as_the_proto_type() {
        let event = v1::Event {
            event_id: "019ad6c4-0000-7000-8000-000000000000".into(),
            kind: "incident.reported".into(),
            grid_code: "150602001001001".into(),
            ..Default::default()
        };
        let wire = WireResponse {
            item: Some(WireItem::Event(WireEvent {
                sequence: 42,
                event: event.encode_to_vec().into(),
            })),
        };
        let proto = v1::WatchEventsResponse {
            item: Some(Item::Event(v1::SequencedEvent {
                sequence: 42,
                event: Some(event),
            })),
        };
        assert_eq!(wire.encode_to_vec(), proto.encode_to_vec());
        let gap = v1::Gap {
            from_sequence: 2,
            next_sequence: 9,
            reason: "purged".into(),
        };
        let wire = WireResponse {
            item: Some(WireItem::Gap(gap.clone())),
        };
        let proto = v1::WatchEventsResponse {
            item: Some(Item::Gap(gap)),
        };
        assert_eq!(wire.encode_to_vec(), proto.encode_to_vec());
    }

    fn event(kind: &str, grid: &str) -> v1::Event {
        v1::Event {
            kind: kind.into(),
            grid_code: grid.into(),
            district_code: grid.get(..6).unwrap_or_default().into(),
            ..Default::default()
        }
    }

    #[test]
    fn filters_by_area_and_kind() {
        let district = Filter::new("150602".parse().unwrap(), &[]).unwrap();
        assert!(district.matches(&event("incident.reported", "150602001001001")));
        assert!(!district.matches(&event("incident.reported", "150603001001001")));
        assert!(!district.matches(&event("report.rejected", "")));
        let kinds = Filter::new(
            "150600".parse().unwrap(),
            &["incident.whistled".into(), "task.accepted".into()],
        )
        .unwrap();
        assert!(kinds.matches(&event("task.accepted", "150603001001001")));
        assert!(!kinds.matches(&event("incident.reported", "150603001001001")));
        assert!(kinds.matches(&event("incident.whistled", "")));
    }

    #[test]
    fn bad_kinds_are_refused() {
        let city: AreaCode = "150600".parse().unwrap();
        for bad in [
            "",
            "Incident.Reported",
            "incident reported",
            "a>b",
            &"x".repeat(65),
        ] {
            assert!(
                matches!(
                    Filter::new(city.clone(), &[bad.into()]),
                    Err(Error::InvalidArgument(_))
                ),
                "{bad:?}"
            );
        }
        let many: Vec<String> = (0..=MAX_KINDS)
            .map(|_| "incident.reported".into())
            .collect();
        assert!(Filter::new(city, &many).is_err());
    }
}
