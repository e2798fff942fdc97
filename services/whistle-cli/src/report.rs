//! `whistle report`: a grid worker files a report and sees what became of it.

use std::{path::PathBuf, time::Duration};

use anyhow::{bail, Context as _};
use async_nats::{header::NATS_MESSAGE_ID, jetstream, HeaderMap};
use futures::StreamExt;
use prost::Message as _;
use whistle_domain::AreaCode;
use whistle_proto::v1;

use whistle_wire::subject;

use crate::{connect_nats, Connection};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A report as proto3 JSON (fields as in proto/whistle/v1/report.proto); flags override it.
    #[arg(long)]
    file: Option<PathBuf>,
    /// 15-digit grid code.
    #[arg(long)]
    grid: Option<String>,
    /// Grid worker filing it; default the grid's worker `gw-{grid}`.
    #[arg(long)]
    reporter: Option<String>,
    /// Category code (see `whistle categories`).
    #[arg(long)]
    category: Option<String>,
    /// normal, urgent or emergency.
    #[arg(long)]
    urgency: Option<String>,
    #[arg(long)]
    title: Option<String>,
    #[arg(long)]
    description: Option<String>,
    #[arg(long, requires = "lon", allow_negative_numbers = true)]
    lat: Option<f64>,
    #[arg(long, requires = "lat", allow_negative_numbers = true)]
    lon: Option<f64>,
    #[arg(long)]
    address: Option<String>,
    /// Attachment URI; repeat for several.
    #[arg(long = "attachment")]
    attachments: Vec<String>,
    /// Your own unique id; default a fresh UUIDv7. Reusing one never opens a second incident.
    #[arg(long)]
    report_id: Option<String>,
    /// Send the payload as proto3 JSON instead of protobuf.
    #[arg(long)]
    json: bool,
    /// Do not wait to see the incident (or the rejection).
    #[arg(long)]
    no_wait: bool,
    /// How long to wait for the outcome.
    #[arg(long, value_parser = crate::parse_duration, default_value = "10s")]
    wait: Duration,
}

fn build(args: &Args) -> anyhow::Result<v1::Report> {
    let mut report = match &args.file {
        Some(path) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            whistle_proto::from_json::<v1::Report>(&bytes)
                .with_context(|| format!("{} is not a report", path.display()))?
        }
        None => v1::Report::default(),
    };
    let set = |field: &mut String, value: &Option<String>| {
        if let Some(value) = value {
            field.clone_from(value);
        }
    };
    set(&mut report.grid_code, &args.grid);
    set(&mut report.reporter_id, &args.reporter);
    set(&mut report.category, &args.category);
    set(&mut report.title, &args.title);
    set(&mut report.description, &args.description);
    set(&mut report.report_id, &args.report_id);
    if report.report_id.is_empty() {
        report.report_id = uuid::Uuid::now_v7().to_string();
    }
    if report.grid_code.is_empty() {
        bail!("--grid is required (or grid_code in --file)");
    }
    if report.reporter_id.is_empty() {
        report.reporter_id = format!("gw-{}", report.grid_code);
    }
    if let Some(urgency) = &args.urgency {
        report.urgency = match urgency.as_str() {
            "normal" => v1::Urgency::Normal,
            "urgent" => v1::Urgency::Urgent,
            "emergency" => v1::Urgency::Emergency,
            other => bail!("--urgency {other:?}: expected normal, urgent or emergency"),
        } as i32;
    }
    if let (Some(lat), Some(lon)) = (args.lat, args.lon) {
        report.location = Some(v1::Location {
            lat,
            lon,
            address: args.address.clone().unwrap_or_default(),
        });
    } else if let Some(address) = &args.address {
        report
            .location
            .get_or_insert_with(Default::default)
            .address
            .clone_from(address);
    }
    report
        .attachments
        .extend(args.attachments.iter().map(|uri| v1::Attachment {
            uri: uri.clone(),
            ..Default::default()
        }));
    if report.reported_at.is_none() {
        report.reported_at = Some(whistle_proto::timestamp_from_unix_millis(
            chrono::Utc::now().timestamp_millis(),
        ));
    }
    Ok(report)
}

pub async fn run(conn: &Connection, args: Args) -> anyhow::Result<()> {
    let report = build(&args)?;
    let grid: AreaCode = report.grid_code.parse().context("--grid")?;
    let client = connect_nats(conn).await?;
    // Subscribe before publishing so the outcome cannot slip past.
    let mut events = client.subscribe(subject::ALL_INCIDENT_EVENTS).await?;

    let (payload, content_type) = if args.json {
        (
            whistle_proto::to_json(&report)?.into_bytes(),
            "application/json",
        )
    } else {
        (report.encode_to_vec(), "application/protobuf")
    };
    let mut headers = HeaderMap::new();
    headers.insert(NATS_MESSAGE_ID, report.report_id.as_str());
    headers.insert("Content-Type", content_type);
    let js = jetstream::new(client.clone());
    let ack = js
        .publish_with_headers(subject::report(&grid), headers, payload.into())
        .await
        .context("publishing the report")?
        .await
        .context("the report was not stored by JetStream")?;
    println!(
        "report {} stored in {} (sequence {}){}",
        report.report_id,
        ack.stream,
        ack.sequence,
        if ack.duplicate {
            ", a duplicate of one already received"
        } else {
            ""
        }
    );
    if args.no_wait {
        return Ok(());
    }

    let outcome = tokio::time::timeout(args.wait, async {
        while let Some(message) = events.next().await {
            let Ok(event) = v1::Event::decode(message.payload) else {
                continue;
            };
            match &event.body {
                Some(v1::event::Body::IncidentReported(body))
                    if body
                        .report
                        .as_ref()
                        .is_some_and(|r| r.report_id == report.report_id) =>
                {
                    return Ok(format!(
                        "incident {} opened: {} at {} level",
                        event.incident_id,
                        body.category_name,
                        v1::Level::try_from(body.level)
                            .map(|l| l.as_str_name())
                            .unwrap_or("?")
                    ));
                }
                Some(v1::event::Body::ReportRejected(body))
                    if body.report_id == report.report_id =>
                {
                    return Err(anyhow::anyhow!(
                        "rejected ({}): {}",
                        body.reason,
                        body.message
                    ));
                }
                _ => {}
            }
        }
        Err(anyhow::anyhow!("the event stream closed"))
    })
    .await;
    match outcome {
        Ok(Ok(line)) => {
            println!("{line}");
            Ok(())
        }
        Ok(Err(e)) => Err(e),
        Err(_) if ack.duplicate => {
            println!("no new event: the report id was already recorded, so no second incident was opened");
            Ok(())
        }
        Err(_) => bail!(
            "no outcome within {:?}: is whistle-dispatch running? (the report is stored and will be processed when it is)",
            args.wait
        ),
    }
}
