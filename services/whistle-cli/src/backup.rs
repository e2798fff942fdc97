//! Backup and restore of the JetStream streams (`whistle backup streams`, `whistle restore
//! streams`; docs/operations.md, "Backups"), through JetStream's own snapshot API as the admin
//! identity — what `nats stream backup`/`restore` do, without needing the nats CLI on the host.
//!
//! A snapshot (`$JS.API.STREAM.SNAPSHOT.<stream>`) streams the stream's store — messages and its
//! consumers with their delivery and ack state — in chunks to an inbox, each acknowledged for flow
//! control, ending with an empty message. It is written as `<stream>.snapshot` with
//! `<stream>.json` (the configuration and state the server answered with), and `manifest.json`
//! last, naming each file's SHA-256: a directory without the manifest is an unfinished backup.
//! A restore (`$JS.API.STREAM.RESTORE.<stream>`) onto a server that lacks the stream sends the
//! chunks back to the subject the server names, each as a request, and an empty one to finish.
//!
//! The snapshot holds the messages in clear (the server decrypts its store for it): keep the
//! backup as private as the store, its directory is made 0700 and its files 0600.

use std::{
    io::Write as _,
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use futures::StreamExt as _;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

/// The streams a Whistle deployment keeps: raw reports (with intake's consumer), events (with
/// the notifications consumer), rejections and the photos' object store.
pub const STREAMS: [&str; 4] = [
    whistle_wire::names::REPORTS_STREAM,
    whistle_wire::names::EVENTS_STREAM,
    whistle_wire::names::REJECTED_STREAM,
    whistle_wire::names::PHOTOS_STREAM,
];

/// Bytes of one snapshot chunk.
const CHUNK: usize = 128 * 1024;
/// How long a JetStream API request or a silent snapshot may take before it fails.
const TIMEOUT: Duration = Duration::from_secs(30);

/// What one stream's backup or restore held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamCopy {
    pub name: String,
    pub messages: u64,
    /// The last sequence number in the stream.
    pub last_seq: u64,
    /// Bytes of the snapshot file.
    pub snapshot_bytes: u64,
}

fn api_error(response: &Value) -> Option<String> {
    response.get("error").map(|e| {
        format!(
            "{} (code {})",
            e.get("description").and_then(Value::as_str).unwrap_or("?"),
            e.get("err_code")
                .and_then(Value::as_u64)
                .unwrap_or_default()
        )
    })
}

async fn request(
    client: &async_nats::Client,
    subject: String,
    body: Bytes,
) -> anyhow::Result<Value> {
    let reply = tokio::time::timeout(TIMEOUT, client.request(subject.clone(), body))
        .await
        .with_context(|| format!("{subject}: no answer in {TIMEOUT:?}"))?
        .with_context(|| format!("{subject}: request failed"))?;
    let value: Value = serde_json::from_slice(&reply.payload)
        .with_context(|| format!("{subject}: the answer is not JSON"))?;
    if let Some(error) = api_error(&value) {
        bail!("{subject}: {error}");
    }
    Ok(value)
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .with_context(|| format!("writing {}", temporary.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::rename(&temporary, path).with_context(|| format!("writing {}", path.display()))
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Snapshots every stream of [`STREAMS`] the server has into `dir` (created 0700; it must not
/// hold a backup already). The admin's client (`$JS.API` is the admin's alone).
pub async fn snapshot_streams(
    client: &async_nats::Client,
    dir: &Path,
) -> anyhow::Result<Vec<StreamCopy>> {
    if dir.join("manifest.json").exists() {
        bail!("{} already holds a backup", dir.display());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let mut copies = Vec::new();
    let mut manifest = Vec::new();
    for name in STREAMS {
        let info = tokio::time::timeout(
            TIMEOUT,
            client.request(format!("$JS.API.STREAM.INFO.{name}"), Bytes::new()),
        )
        .await
        .context("stream info: no answer")??;
        let info: Value = serde_json::from_slice(&info.payload)?;
        if info.get("error").is_some() {
            // A stream not made yet (the photo bucket before the first photo's deployment).
            continue;
        }
        let (copy, digest) = snapshot_stream(client, dir, name).await?;
        manifest.push(json!({ "stream": name, "sha256": digest, "messages": copy.messages }));
        copies.push(copy);
    }
    let manifest = json!({
        "made_at": chrono::Utc::now(),
        "streams": manifest,
    });
    write_private(
        &dir.join("manifest.json"),
        serde_json::to_string_pretty(&manifest)?.as_bytes(),
    )?;
    Ok(copies)
}

async fn snapshot_stream(
    client: &async_nats::Client,
    dir: &Path,
    name: &str,
) -> anyhow::Result<(StreamCopy, String)> {
    let inbox = client.new_inbox();
    // Subscribed before asking, so no chunk goes to nobody.
    let mut chunks = client.subscribe(inbox.clone()).await?;
    let body = json!({ "deliver_subject": inbox, "chunk_size": CHUNK, "no_consumers": false });
    let answer = request(
        client,
        format!("$JS.API.STREAM.SNAPSHOT.{name}"),
        serde_json::to_vec(&body)?.into(),
    )
    .await?;
    let (config, state) = match (answer.get("config"), answer.get("state")) {
        (Some(c), Some(s)) => (c.clone(), s.clone()),
        _ => bail!("{name}: the snapshot answer has no configuration and state: {answer}"),
    };
    let path = dir.join(format!("{name}.snapshot"));
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .with_context(|| format!("writing {}", temporary.display()))?;
    let mut hasher = Sha256::new();
    let mut written = 0u64;
    loop {
        let chunk = tokio::time::timeout(TIMEOUT, chunks.next())
            .await
            .with_context(|| format!("{name}: the snapshot stalled"))?
            .with_context(|| format!("{name}: the snapshot's subscription ended"))?;
        if let Some(status) = chunk.status {
            if chunk.payload.is_empty() && status.as_u16() >= 400 {
                bail!(
                    "{name}: the server ended the snapshot with {status} {}",
                    chunk.description.unwrap_or_default()
                );
            }
        }
        if chunk.payload.is_empty() {
            break;
        }
        file.write_all(&chunk.payload)?;
        hasher.update(&chunk.payload);
        written += chunk.payload.len() as u64;
        // The flow-control ack the server waits for before sending more.
        if let Some(reply) = chunk.reply {
            client.publish(reply, Bytes::new()).await?;
        }
    }
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, &path)?;
    write_private(
        &dir.join(format!("{name}.json")),
        serde_json::to_string_pretty(&json!({ "config": config, "state": state }))?.as_bytes(),
    )?;
    let number = |key: &str| state.get(key).and_then(Value::as_u64).unwrap_or_default();
    Ok((
        StreamCopy {
            name: name.to_owned(),
            messages: number("messages"),
            last_seq: number("last_seq"),
            snapshot_bytes: written,
        },
        hex(&hasher.finalize()),
    ))
}

/// Restores every stream of the backup in `dir` onto a server that has none of them (a new one:
/// restore before `whistle streams`, which would create them empty). Each file is checked
/// against the manifest's SHA-256 first, so a damaged backup restores nothing.
pub async fn restore_streams(
    client: &async_nats::Client,
    dir: &Path,
) -> anyhow::Result<Vec<StreamCopy>> {
    let manifest_path = dir.join("manifest.json");
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(&manifest_path)
            .with_context(|| format!("{}: not a finished backup", manifest_path.display()))?,
    )
    .with_context(|| format!("reading {}", manifest_path.display()))?;
    let entries = manifest
        .get("streams")
        .and_then(Value::as_array)
        .context("the manifest lists no streams")?;
    let mut planned: Vec<(String, PathBuf, Value)> = Vec::new();
    for entry in entries {
        let name = entry
            .get("stream")
            .and_then(Value::as_str)
            .context("a manifest entry without a stream")?;
        let data = dir.join(format!("{name}.snapshot"));
        let bytes = std::fs::read(&data).with_context(|| format!("reading {}", data.display()))?;
        let expected = entry
            .get("sha256")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if hex(&Sha256::digest(&bytes)) != expected {
            bail!(
                "{}: its SHA-256 is not the manifest's; the backup is damaged",
                data.display()
            );
        }
        let meta_path = dir.join(format!("{name}.json"));
        let meta: Value = serde_json::from_slice(
            &std::fs::read(&meta_path)
                .with_context(|| format!("reading {}", meta_path.display()))?,
        )?;
        planned.push((name.to_owned(), data, meta));
    }
    let mut copies = Vec::new();
    for (name, data, meta) in planned {
        let answer = request(
            client,
            format!("$JS.API.STREAM.RESTORE.{name}"),
            serde_json::to_vec(&meta)?.into(),
        )
        .await
        .with_context(|| format!("restoring {name} (a new server must not have it yet)"))?;
        let deliver = answer
            .get("deliver_subject")
            .and_then(Value::as_str)
            .with_context(|| format!("{name}: the restore answer names no subject: {answer}"))?
            .to_owned();
        let bytes = std::fs::read(&data)?;
        for chunk in bytes.chunks(CHUNK) {
            tokio::time::timeout(
                TIMEOUT,
                client.request(deliver.clone(), Bytes::copy_from_slice(chunk)),
            )
            .await
            .with_context(|| format!("{name}: the server did not take a chunk"))?
            .with_context(|| format!("{name}: sending a chunk"))?;
        }
        let done = request(client, deliver, Bytes::new())
            .await
            .with_context(|| format!("{name}: finishing the restore"))?;
        let state = done.get("state").cloned().unwrap_or(Value::Null);
        let number = |key: &str| state.get(key).and_then(Value::as_u64).unwrap_or_default();
        copies.push(StreamCopy {
            name,
            messages: number("messages"),
            last_seq: number("last_seq"),
            snapshot_bytes: bytes.len() as u64,
        });
    }
    Ok(copies)
}
