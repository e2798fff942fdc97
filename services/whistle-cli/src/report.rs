//! `whistle report`: a grid worker files a report and sees what became of it.
//!
//! With the grid worker's token (`--token`) the report is published on the worker's own NATS
//! connection, as the token's person from the token's grid, and its outcome is read back with
//! `ListMyReports`. Without a token (the admin nkey, or a server without authentication) any
//! grid worker may be named and the outcome is watched on the event subjects.

use std::{path::PathBuf, time::Duration};

use anyhow::{bail, Context as _};
use async_nats::{header::NATS_MESSAGE_ID, jetstream, HeaderMap};
use futures::StreamExt;
use prost::Message as _;
use whistle_domain::AreaCode;
use whistle_proto::v1;

use whistle_wire::subject;

use crate::{
    door::{self, Person},
    Connection,
};

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    pub monthly: Option<Monthly>,
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

/// `whistle report monthly`: not a grid worker's report but the command centre's.
#[derive(Debug, clap::Subcommand)]
pub enum Monthly {
    /// The monthly assessment report (月度考核通报) of an area as XLSX and PDF, from the
    /// scoreboards (an operator's token).
    Monthly(crate::monthly::Args),
}

fn build(args: &Args, person: Option<&Person>) -> anyhow::Result<v1::Report> {
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
    if let Some(person) = person {
        if person.role != "grid_worker" {
            bail!(
                "reports are filed by grid workers; this token is a {}'s ({})",
                person.role,
                person.id
            );
        }
        if !report.grid_code.is_empty() && report.grid_code != person.area {
            bail!(
                "--grid {} is not the token's grid {}: a grid worker reports from its own grid",
                report.grid_code,
                person.area
            );
        }
        report.grid_code.clone_from(&person.area);
        let named = Some(report.reporter_id.as_str()).filter(|r| !r.is_empty());
        report.reporter_id = person.actor("--reporter", named)?;
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
    let person = match conn.token {
        Some(_) => Some(conn.person().await?),
        None => None,
    };
    let report = build(&args, person.as_ref())?;
    let grid: AreaCode = report.grid_code.parse().context("--grid")?;
    let client = match &person {
        Some(person) => door::nats(conn, "whistle-cli", &person.credentials(conn.token()?)).await?,
        None => door::nats_admin(conn).await?,
    };
    // Subscribe before publishing so the outcome cannot slip past. A grid worker reads no
    // events: it asks the query service about its own reports instead.
    let mut events = match person {
        Some(_) => None,
        None => Some(client.subscribe(subject::ALL_INCIDENT_EVENTS).await?),
    };

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
        let Some(events) = events.as_mut() else {
            return my_report_outcome(conn, &report.report_id).await;
        };
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

/// Asks `ListMyReports` until the report became an incident or was rejected.
async fn my_report_outcome(conn: &Connection, report_id: &str) -> anyhow::Result<String> {
    let mut query = conn.query().await?;
    loop {
        let reports = query
            .list_my_reports(v1::ListMyReportsRequest { page_size: 200 })
            .await
            .map_err(|status| door::grpc_error("ListMyReports", status))?
            .into_inner()
            .reports;
        if let Some(line) = reports
            .iter()
            .find(|r| r.report_id == report_id)
            .and_then(outcome_line)
        {
            return line;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What became of a report as its worker sees it, once something did.
fn outcome_line(report: &v1::MyReport) -> Option<anyhow::Result<String>> {
    if !report.rejected_reason.is_empty() {
        return Some(Err(anyhow::anyhow!(
            "rejected ({}): {}",
            report.rejected_reason,
            report.rejected_message
        )));
    }
    let incident = report.incident.as_ref()?;
    let level = v1::Level::try_from(incident.level)
        .map(|l| l.as_str_name())
        .unwrap_or("?");
    let line = if report.attached {
        format!(
            "attached to incident {} ({}) as a duplicate",
            incident.incident_id, incident.category_name
        )
    } else {
        format!(
            "incident {} opened: {} at {level} level",
            incident.incident_id, incident.category_name
        )
    };
    // The code to give the resident (查询码), for the public page /track#CODE.
    Some(Ok(if report.tracking_code.is_empty() {
        line
    } else {
        format!(
            "{line}\ntracking code (查询码) for the resident: {}",
            report.tracking_code
        )
    }))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn args(extra: &[&str]) -> Args {
        Cli::try_parse_from(
            ["report", "--category", "heating.no_heat", "--title", "cold"]
                .into_iter()
                .chain(extra.iter().copied()),
        )
        .unwrap()
        .args
    }

    fn worker() -> Person {
        Person {
            id: "gw-150602001001001".into(),
            role: "grid_worker".into(),
            area: "150602001001001".into(),
            department: String::new(),
        }
    }

    #[test]
    fn a_token_reports_as_its_worker_from_its_grid() {
        let report = build(&args(&[]), Some(&worker())).unwrap();
        assert_eq!(report.grid_code, "150602001001001");
        assert_eq!(report.reporter_id, "gw-150602001001001");

        let other_grid = build(&args(&["--grid", "150602001001002"]), Some(&worker()));
        assert!(other_grid
            .unwrap_err()
            .to_string()
            .contains("not the token's grid 150602001001001"));
        let other_worker = build(&args(&["--reporter", "gw-x"]), Some(&worker()));
        assert!(other_worker
            .unwrap_err()
            .to_string()
            .contains("--reporter gw-x does not match the token"));
        let liaison = Person {
            role: "liaison".into(),
            ..worker()
        };
        assert!(build(&args(&[]), Some(&liaison))
            .unwrap_err()
            .to_string()
            .contains("filed by grid workers"));
    }

    #[test]
    fn without_a_token_the_grid_is_required_and_names_its_worker() {
        assert!(build(&args(&[]), None).is_err());
        let report = build(&args(&["--grid", "150602001001002"]), None).unwrap();
        assert_eq!(report.reporter_id, "gw-150602001001002");
    }

    #[test]
    fn a_workers_view_of_its_report_gives_the_outcome() {
        let pending = v1::MyReport {
            report_id: "r".into(),
            ..Default::default()
        };
        assert!(outcome_line(&pending).is_none());
        let rejected = v1::MyReport {
            rejected_reason: "unknown_category".into(),
            rejected_message: "no such category".into(),
            ..pending.clone()
        };
        assert_eq!(
            outcome_line(&rejected).unwrap().unwrap_err().to_string(),
            "rejected (unknown_category): no such category"
        );
        let opened = v1::MyReport {
            incident: Some(v1::IncidentSummary {
                incident_id: "i-1".into(),
                category_name: "供暖不热".into(),
                level: v1::Level::Community as i32,
                ..Default::default()
            }),
            ..pending
        };
        assert_eq!(
            outcome_line(&opened).unwrap().unwrap(),
            "incident i-1 opened: 供暖不热 at LEVEL_COMMUNITY level"
        );
        let with_code = v1::MyReport {
            tracking_code: "7K3M-Q9XD-2HPA".into(),
            ..opened
        };
        assert_eq!(
            outcome_line(&with_code).unwrap().unwrap(),
            "incident i-1 opened: 供暖不热 at LEVEL_COMMUNITY level\ntracking code (查询码) for the resident: 7K3M-Q9XD-2HPA"
        );
    }
}
