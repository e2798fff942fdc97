//! `whistle watch`: follows `WHISTLE_EVENTS` and prints one line per event, with Chinese place and
//! category names.

use std::collections::HashMap;

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer};
use chrono::{DateTime, Local};
use futures::StreamExt;
use prost::Message as _;
use whistle_domain::{AreaCode, Level};
use whistle_proto::v1;
use whistle_wire::subject;

use crate::Connection;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only events inside this area (any org code; default the whole city).
    #[arg(long)]
    area: Option<AreaCode>,
    /// Only this event kind, e.g. incident.reported.
    #[arg(long)]
    kind: Option<String>,
    /// Replay the stream from its first event instead of following new ones.
    #[arg(long, conflicts_with = "since_sequence")]
    all: bool,
    /// Resume after this stream sequence.
    #[arg(long)]
    since_sequence: Option<u64>,
}

/// Names of places and categories, to print events the way a command centre reads them.
pub struct Names {
    places: HashMap<String, String>,
    departments: HashMap<String, String>,
    categories: HashMap<String, String>,
}

impl Names {
    pub fn new(policy: &whistle_domain::policy::Policy) -> Names {
        let dataset = whistle_domain::ordos::dataset();
        let departments = dataset
            .departments
            .into_iter()
            .map(|d| (d.code.to_string(), d.name))
            .collect();
        let places = dataset
            .units
            .into_iter()
            .map(|u| (u.code.to_string(), u.name))
            .collect();
        let categories = policy
            .categories()
            .map(|c| (c.code.to_string(), c.name_zh.clone()))
            .collect();
        Names {
            places,
            departments,
            categories,
        }
    }

    /// The names the query service holds: the catalogue of the policy version dispatch runs, the
    /// departments and the org tree as imported — what a person's command reads, rather than
    /// the compiled dataset and the `--policy` file an admin tool starts from.
    pub async fn fetch(query: &mut crate::door::QueryClient) -> anyhow::Result<Names> {
        let catalogue = query
            .get_catalogue(v1::GetCatalogueRequest {})
            .await
            .context("reading the catalogue (GetCatalogue)")?
            .into_inner();
        let departments = query
            .list_departments(v1::ListDepartmentsRequest::default())
            .await
            .context("reading the departments (ListDepartments)")?
            .into_inner()
            .departments;
        // The city, its districts, streets, communities and grids.
        let tree = query
            .get_org_tree(v1::GetOrgTreeRequest {
                root_code: String::new(),
                depth: 4,
            })
            .await
            .context("reading the org tree (GetOrgTree)")?
            .into_inner();
        let mut places = HashMap::new();
        let mut stack = vec![tree];
        while let Some(node) = stack.pop() {
            places.insert(node.code, node.name);
            stack.extend(node.children);
        }
        Ok(Names {
            places,
            departments: departments.into_iter().map(|d| (d.code, d.name)).collect(),
            categories: catalogue
                .groups
                .into_iter()
                .flat_map(|g| g.categories)
                .map(|c| (c.code, c.name_zh))
                .collect(),
        })
    }

    /// A department's Chinese name, or its code when unknown.
    pub(crate) fn department<'a>(&'a self, code: &'a str) -> &'a str {
        self.departments
            .get(code)
            .map(String::as_str)
            .unwrap_or(code)
    }

    /// A unit's Chinese name, or its code when unknown.
    pub(crate) fn place<'a>(&'a self, code: &'a str) -> &'a str {
        self.places.get(code).map(String::as_str).unwrap_or(code)
    }

    /// Whether this department is known.
    pub(crate) fn knows_department(&self, code: &str) -> bool {
        self.departments.contains_key(code)
    }

    /// A category's Chinese name, or its code when the policy does not have it.
    pub(crate) fn category<'a>(&'a self, code: &'a str) -> &'a str {
        self.categories
            .get(code)
            .map(String::as_str)
            .unwrap_or(code)
    }

    /// The Chinese names of a place from the district down, e.g. `东胜区/交通街道/…社区/…小区`.
    pub(crate) fn place_path(&self, codes: &[&str]) -> String {
        codes
            .iter()
            .filter(|c| !c.is_empty())
            .map(|c| self.place(c))
            .collect::<Vec<_>>()
            .join("/")
    }

    /// One line for an event.
    pub fn line(&self, sequence: u64, event: &v1::Event) -> String {
        let at = event
            .occurred_at
            .as_ref()
            .and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
            .map(|t| t.with_timezone(&Local).format("%H:%M:%S").to_string())
            .unwrap_or_default();
        let place = [
            &event.district_code,
            &event.street_code,
            &event.community_code,
        ]
        .iter()
        .filter(|c| !c.is_empty())
        .map(|c| self.place(c))
        .collect::<Vec<_>>()
        .join("/");
        let detail = match &event.body {
            Some(v1::event::Body::IncidentReported(body)) => {
                let report = body.report.clone().unwrap_or_default();
                let urgency = match v1::Urgency::try_from(report.urgency) {
                    Ok(v1::Urgency::Emergency) => "【紧急】",
                    Ok(v1::Urgency::Urgent) => "【较急】",
                    _ => "",
                };
                let category = self
                    .categories
                    .get(&report.category)
                    .map(String::as_str)
                    .unwrap_or(&body.category_name);
                let level = v1::Level::try_from(body.level).map(level_zh).unwrap_or("");
                format!(
                    "新事件 {urgency}[{category}] {} → {level}办理  事件 {}",
                    report.title,
                    short(&event.incident_id)
                )
            }
            Some(v1::event::Body::ReportRejected(body)) => {
                format!(
                    "上报被拒 {}: {} (report {})",
                    body.reason, body.message, body.report_id
                )
            }
            Some(v1::event::Body::IncidentChanged(body)) => {
                let what = kind_zh(&event.kind);
                let task = body
                    .task
                    .as_ref()
                    .map(|t| format!(" 任务{} {}", t.task_id, self.department(&t.department_code)))
                    .unwrap_or_default();
                let note = if body.note.is_empty() {
                    String::new()
                } else {
                    format!(" — {}", body.note)
                };
                format!(
                    "{what}{task} 「{}」{note}  事件 {}",
                    body.title,
                    short(&event.incident_id)
                )
            }
            Some(v1::event::Body::ReportAttached(body)) => {
                format!(
                    "重复上报并入 (共{}条)  事件 {}",
                    body.report_count,
                    short(&event.incident_id)
                )
            }
            Some(v1::event::Body::ClusterAlert(body)) => {
                format!(
                    "⚠ 聚集预警 [{}] 30分钟内{}条上报",
                    body.category_name, body.reports
                )
            }
            Some(v1::event::Body::DeviceFlagged(body)) => {
                format!(
                    "⚠ 设备待检修 {} [{}] {}",
                    body.device_id, body.category, body.reason
                )
            }
            Some(v1::event::Body::OfferChanged(body)) => {
                let what = if body.offer_kind == "wish" {
                    "微心愿"
                } else {
                    "事件"
                };
                let who = if body.member_id.is_empty() {
                    String::new()
                } else {
                    format!(" {}", body.member_id)
                };
                let note = if body.note.is_empty() {
                    String::new()
                } else {
                    format!(" — {}", body.note)
                };
                format!(
                    "{}{who} {what}「{}」{note}  志愿单 {}",
                    kind_zh(&event.kind),
                    body.title,
                    short(&body.offer_id)
                )
            }
            None => event.kind.clone(),
        };
        format!("{at} #{sequence:<8} {place:<24} {detail}")
    }
}

fn level_zh(level: v1::Level) -> &'static str {
    match level {
        v1::Level::Grid => Level::Grid.name_zh(),
        v1::Level::Community => Level::Community.name_zh(),
        v1::Level::Street => Level::Street.name_zh(),
        v1::Level::District => Level::District.name_zh(),
        v1::Level::City => Level::City.name_zh(),
        v1::Level::Unspecified => "",
    }
}

/// The command centre's words for an event kind.
pub(crate) fn kind_zh(kind: &str) -> &str {
    match kind {
        "incident.reported" => "上报",
        "report.attached" => "重复上报并入",
        "incident.escalated" => "上报上级",
        "incident.whistled" => "吹哨",
        "task.dispatched" => "派单",
        "task.accepted" => "报到签收",
        "task.returned" => "退单",
        "task.reassigned" => "改派",
        "task.supervised" => "督办",
        "task.reminded" => "催办",
        "task.resolved" => "部门办结",
        "incident.resolved" => "办结",
        "incident.verified" => "回访",
        "incident.reopened" => "重办",
        "incident.closed" => "结案",
        "incident.closed_unverified" => "未回访结案",
        "incident.overdue" => "超期",
        "incident.supervised" => "督办事件",
        "incident.commented" => "备注",
        "incident.rescheduled" => "时限重算",
        "incident.extension_requested" => "延期申请",
        "incident.extension_approved" => "同意延期",
        "incident.extension_denied" => "不予延期",
        "incident.extension_withdrawn" => "延期申请撤回",
        "task.disputed" => "派单异议",
        "task.dispute_upheld" => "异议成立",
        "task.dispute_rejected" => "异议不成立",
        "task.dispute_withdrawn" => "派单异议撤回",
        "task.assist_submitted" => "提交协办意见",
        "task.assist_released" => "免于协办",
        "incident.ledger_proposed" => "申请挂账",
        "incident.ledger_approved" => "同意挂账",
        "incident.ledger_denied" => "不同意挂账",
        "incident.ledger_withdrawn" => "挂账撤回",
        "incident.ledger_review_due" => "挂账到期复核",
        "incident.ledger_extended" => "继续挂账",
        "incident.ledger_returned" => "出账恢复办理",
        "offer.created" => "社区派单",
        "offer.claimed" => "党员接单",
        "offer.released" => "党员退单",
        "offer.returned" => "接单超时退回",
        "offer.done" => "志愿服务完成",
        "offer.confirmed" => "社区确认",
        "offer.rated" => "群众评价",
        "offer.withdrawn" => "社区撤回",
        other => other,
    }
}

/// The last 8 characters of an id, as screens print it.
pub(crate) fn short(id: &str) -> &str {
    id.get(id.len().saturating_sub(8)..).unwrap_or(id)
}

/// The stream filter. Incident events carry district and street in their subject; task events
/// (`whistle.task.{department}.{kind}`) do not, so without a kind everything is read and the area
/// is checked on each event ([`subject::event_in_area`]).
fn filter_subject(area: Option<&AreaCode>, kind: Option<&str>) -> String {
    kind.map(|kind| subject::event_filter(area, kind))
        .unwrap_or_default()
}

/// Whether an event happened inside `area` (the city holds everything).
pub async fn run(conn: &Connection, args: Args) -> anyhow::Result<()> {
    let policy = whistle_wire::policy::load(&conn.policy)?;
    let names = Names::new(&policy);
    let client = crate::door::nats_admin(conn).await?;
    let js = jetstream::new(client);
    let stream = js
        .get_stream(whistle_wire::names::EVENTS_STREAM)
        .await
        .context("opening WHISTLE_EVENTS (has whistle-dispatch run once?)")?;
    let deliver_policy = match (args.all, args.since_sequence) {
        (true, _) => consumer::DeliverPolicy::All,
        (_, Some(seq)) => consumer::DeliverPolicy::ByStartSequence {
            start_sequence: seq + 1,
        },
        _ => consumer::DeliverPolicy::New,
    };
    let filter = filter_subject(args.area.as_ref(), args.kind.as_deref());
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: filter.clone(),
            deliver_policy,
            ..Default::default()
        })
        .await
        .context("creating an ordered consumer")?;
    let mut messages = consumer.messages().await?;
    eprintln!(
        "watching {} (Ctrl-C to stop)",
        if filter.is_empty() {
            "all events"
        } else {
            &filter
        }
    );
    loop {
        let message = tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            next = messages.next() => match next {
                Some(message) => message.context("reading events")?,
                None => return Ok(()),
            },
        };
        let sequence = message.info().map(|i| i.stream_sequence).unwrap_or(0);
        let Ok(event) = v1::Event::decode(message.payload.clone()) else {
            eprintln!("#{sequence}: not a whistle.v1.Event, skipped");
            continue;
        };
        if args
            .area
            .as_ref()
            .is_some_and(|area| !subject::event_in_area(area, &event))
        {
            continue;
        }
        println!("{}", names.line(sequence, &event));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_follow_the_kind_and_area() {
        let area = |s: &str| s.parse::<AreaCode>().unwrap();
        assert_eq!(
            filter_subject(None, None),
            "",
            "everything, task events included"
        );
        assert_eq!(filter_subject(Some(&area("150602")), None), "");
        // With a kind, the contract's filter (its shapes are the wire crate's tests).
        for (at, kind) in [
            ("150600", "incident.reported"),
            ("150602001002", "incident.whistled"),
            ("150602", "task.accepted"),
        ] {
            assert_eq!(
                filter_subject(Some(&area(at)), Some(kind)),
                subject::event_filter(Some(&area(at)), kind)
            );
        }
    }

    #[test]
    fn areas_are_checked_on_the_event() {
        let area = |s: &str| s.parse::<AreaCode>().unwrap();
        let event = v1::Event {
            district_code: "150602".into(),
            street_code: "150602001".into(),
            community_code: "150602001002".into(),
            grid_code: "150602001002003".into(),
            ..Default::default()
        };
        assert!(subject::event_in_area(&area("150600"), &event));
        assert!(subject::event_in_area(&area("150602"), &event));
        assert!(subject::event_in_area(&area("150602001002"), &event));
        assert!(!subject::event_in_area(&area("150602001003"), &event));
        assert!(!subject::event_in_area(&area("150603"), &event));
        let unknown = v1::Event {
            district_code: String::new(),
            ..Default::default()
        };
        assert!(!subject::event_in_area(&area("150602"), &unknown));
    }
}
