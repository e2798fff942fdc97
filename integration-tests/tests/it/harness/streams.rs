//! Reading the streams back and waiting for things to happen.

use std::time::{Duration, Instant};

use anyhow::bail;
use async_nats::{
    jetstream::{self, consumer},
    HeaderMap,
};
use futures::StreamExt;
use prost::Message as _;
use whistle_proto::v1;

/// A message read back from a stream.
#[derive(Debug, Clone)]
pub struct Stored {
    pub subject: String,
    pub headers: HeaderMap,
    pub payload: bytes::Bytes,
}

impl Stored {
    /// A header's value, empty when absent.
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default()
    }
}

/// Every message currently in `stream`, in order.
pub async fn read_stream(js: &jetstream::Context, stream: &str) -> Vec<Stored> {
    let mut stream = js.get_stream(stream).await.expect("stream exists");
    let last = stream
        .info()
        .await
        .expect("stream info")
        .state
        .last_sequence;
    let mut out = Vec::new();
    if last == 0 {
        return out;
    }
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .expect("ordered consumer");
    let mut messages = consumer.messages().await.expect("messages");
    while let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_secs(5), messages.next()).await
    {
        let message = message.expect("message");
        let sequence = message.info().expect("info").stream_sequence;
        out.push(Stored {
            subject: message.subject.to_string(),
            headers: message.headers.clone().unwrap_or_default(),
            payload: message.payload.clone(),
        });
        if sequence >= last {
            break;
        }
    }
    out
}

/// Every event in `WHISTLE_EVENTS`, decoded.
pub async fn events(js: &jetstream::Context) -> Vec<(String, v1::Event)> {
    read_stream(js, "WHISTLE_EVENTS")
        .await
        .into_iter()
        .map(|m| {
            (
                m.subject,
                v1::Event::decode(m.payload).expect("events are whistle.v1.Event"),
            )
        })
        .collect()
}

/// Polls `check` until it returns true, failing the test after `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The state of dispatch's intake consumer.
pub async fn intake_consumer(js: &jetstream::Context) -> jetstream::consumer::Info {
    js.get_stream(whistle_wire::names::REPORTS_STREAM)
        .await
        .unwrap()
        .consumer_info("whistle-dispatch")
        .await
        .unwrap()
}

/// Waits until dispatch's intake consumer has nothing pending and nothing awaiting an ack.
pub async fn intake_drained(js: &jetstream::Context) {
    eventually(
        "the intake consumer drained",
        Duration::from_secs(20),
        || async {
            let info = intake_consumer(js).await;
            info.num_pending == 0 && info.num_ack_pending == 0
        },
    )
    .await
    .unwrap();
}

/// Number of messages in a stream (0 if it does not exist yet).
pub async fn stream_len(js: &jetstream::Context, name: &str) -> u64 {
    match js.get_stream(name).await {
        Ok(mut stream) => stream.info().await.map(|i| i.state.messages).unwrap_or(0),
        Err(_) => 0,
    }
}
