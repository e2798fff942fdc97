//! Notifications that reach people: every dispatch, reminder (催办), supervision (督办) and answer to
//! a deadline extension (延期申请) goes to the people it concerns, in their console list and through the outbound channels configured —
//! the department's group robot (企业微信 / 钉钉) and an SMS gateway — retried, with each delivery
//! on the incident's timeline.
//!
//! Two loops per replica. The *reader* takes events from its own durable consumer on
//! `WHISTLE_EVENTS` and writes one row per (event, recipient, channel) before acking, so a crash
//! or a redelivery neither loses nor doubles a notification. The *sender* claims due outbound
//! rows (replicas share them: see `whistle_store::notifications`), sends, and records the outcome.
//! A person in their quiet hours gets outbound messages when the hours end; when that is too late
//! (`deputy_after`), or when messages to them keep failing, their deputy is told instead.

use std::{path::Path, sync::Arc, time::Duration};

use async_nats::jetstream::{self, consumer, AckKind};
use chrono::{DateTime, FixedOffset, NaiveTime, TimeDelta, Utc};
use futures::StreamExt as _;
use hmac::{Hmac, Mac as _};
use prost::Message as _;
use serde::Deserialize;
use sha2::Sha256;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use uuid::Uuid;
use whistle_domain::{AreaCode, Level};
use whistle_proto::v1;
use whistle_store::notifications::{self as store, Channel, Due, Entry, NewNotification};
use whistle_wire::{kind, names::EVENTS_STREAM};

use crate::{Error, Shared};

/// The reader's durable consumer on `WHISTLE_EVENTS`, shared by every replica.
pub const CONSUMER: &str = whistle_wire::names::NOTIFY_CONSUMER;

/// The events that notify someone, as subject filters of the consumer.
pub fn filter_subjects() -> Vec<String> {
    let tasks = [
        kind::TASK_DISPATCHED,
        kind::TASK_REMINDED,
        kind::TASK_SUPERVISED,
        kind::TASK_DISPUTED,
        kind::TASK_DISPUTE_UPHELD,
        kind::TASK_DISPUTE_REJECTED,
    ]
    .iter()
    .map(|k| whistle_wire::subject::task_event("*", k));
    let incidents = [
        kind::INCIDENT_SUPERVISED,
        kind::INCIDENT_EXTENSION_APPROVED,
        kind::INCIDENT_EXTENSION_DENIED,
        kind::INCIDENT_ESCALATED,
        kind::INCIDENT_OVERDUE,
        kind::INCIDENT_ENDORSED,
    ]
    .iter()
    .map(|k| whistle_wire::subject::incident_event("*", "*", k));
    tasks.chain(incidents).collect()
}

/// The outbound channels and how hard to try them, from `--notify-config` (TOML; see
/// docs/operations.md, "Notifications"). Without a file only console notifications are written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Attempts of one outbound message before it is given up.
    #[serde(default = "defaults::max_attempts")]
    pub max_attempts: i32,
    /// The first retry's delay; each next one doubles, up to five minutes.
    #[serde(default = "defaults::retry_after_secs")]
    pub retry_after_secs: u64,
    /// Failed attempts after which the person's deputy is told as well.
    #[serde(default = "defaults::deputy_after_attempts")]
    pub deputy_after_attempts: i32,
    /// A person whose quiet hours hold a message back longer than this has their deputy told now.
    #[serde(default = "defaults::deputy_after_secs")]
    pub deputy_after_secs: u64,
    pub sms: Option<Sms>,
    #[serde(default)]
    pub webhook: Vec<Webhook>,
}

mod defaults {
    pub fn max_attempts() -> i32 {
        8
    }
    pub fn retry_after_secs() -> u64 {
        5
    }
    pub fn deputy_after_attempts() -> i32 {
        3
    }
    pub fn deputy_after_secs() -> u64 {
        600
    }
}

impl Default for Config {
    fn default() -> Self {
        toml::from_str("").expect("every field has a default")
    }
}

/// The SMS gateway: `POST {url}` with `{"id", "phone", "text"}` as JSON (and `Authorization:
/// Bearer …` when a token file is given); any 2xx means accepted. A provider's own API sits
/// behind an adapter speaking this.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sms {
    pub url: String,
    pub token_file: Option<std::path::PathBuf>,
    #[serde(skip)]
    token: Option<String>,
}

/// A department's group robot.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    pub department: String,
    pub kind: RobotKind,
    pub url: String,
    /// 钉钉's signing secret (加签), if the robot has one.
    pub secret_file: Option<std::path::PathBuf>,
    #[serde(skip)]
    secret: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RobotKind {
    /// 企业微信群机器人.
    Wecom,
    /// 钉钉群机器人.
    Dingtalk,
}

impl RobotKind {
    fn name_zh(self) -> &'static str {
        match self {
            RobotKind::Wecom => "企业微信群",
            RobotKind::Dingtalk => "钉钉群",
        }
    }
}

fn read_secret(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|e| Error::NotifyConfig(format!("reading {}: {e}", path.display())))
}

impl Config {
    /// Reads and checks a configuration file, with the secrets it names.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::NotifyConfig(format!("reading {}: {e}", path.display())))?;
        let mut config: Config = toml::from_str(&text)
            .map_err(|e| Error::NotifyConfig(format!("{}: {e}", path.display())))?;
        if config.max_attempts < 1 || config.deputy_after_attempts < 1 {
            return Err(Error::NotifyConfig(
                "max_attempts and deputy_after_attempts must be at least 1".into(),
            ));
        }
        if let Some(sms) = &mut config.sms {
            check_url(&sms.url)?;
            if let Some(file) = &sms.token_file {
                sms.token = Some(read_secret(file)?);
            }
        }
        let mut seen = std::collections::HashSet::new();
        for hook in &mut config.webhook {
            check_url(&hook.url)?;
            if !seen.insert(hook.department.clone()) {
                return Err(Error::NotifyConfig(format!(
                    "department {} has two webhooks",
                    hook.department
                )));
            }
            if let Some(file) = &hook.secret_file {
                hook.secret = Some(read_secret(file)?);
            }
        }
        Ok(config)
    }

    fn webhook(&self, department: &str) -> Option<&Webhook> {
        self.webhook.iter().find(|w| w.department == department)
    }

    fn backoff(&self, attempts: i32) -> TimeDelta {
        let secs = self
            .retry_after_secs
            .saturating_mul(1 << attempts.clamp(1, 16).saturating_sub(1))
            .min(300);
        TimeDelta::seconds(secs as i64)
    }
}

fn check_url(url: &str) -> Result<(), Error> {
    if url.starts_with("https://") || url.starts_with("http://") {
        Ok(())
    } else {
        Err(Error::NotifyConfig(format!(
            "{url:?} is not an http(s) URL"
        )))
    }
}

fn shanghai() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset")
}

/// Until when `now` falls in the quiet hours `[start, end)` (local time; an end before the start
/// runs past midnight), or `None` outside them.
pub fn quiet_until(
    now: DateTime<Utc>,
    (start, end): (NaiveTime, NaiveTime),
) -> Option<DateTime<Utc>> {
    let local = now.with_timezone(&shanghai());
    let (date, time) = (local.date_naive(), local.time());
    let end_on = |date: chrono::NaiveDate| {
        date.and_time(end)
            .and_local_timezone(shanghai())
            .single()
            .map(|t| t.with_timezone(&Utc))
    };
    if start == end {
        None
    } else if start < end {
        (start <= time && time < end)
            .then(|| end_on(date))
            .flatten()
    } else if time >= start {
        end_on(date.succ_opt()?)
    } else if time < end {
        end_on(date)
    } else {
        None
    }
}

/// Who an event concerns, and what to tell them.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub audience: Audience,
    pub title: String,
    pub body: String,
    pub task_id: Option<i32>,
    pub department: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Audience {
    /// A department's liaisons.
    Liaisons(String),
    /// The staff of the unit handling the incident (or the grid's workers).
    Unit(String),
    /// The leaders paired with these areas (the incident's street and community).
    PairedLeaders(Vec<String>),
}

fn local(at: &Option<prost_types::Timestamp>) -> String {
    at.as_ref()
        .and_then(|t| DateTime::from_timestamp(t.seconds, 0))
        .map(|t| {
            t.with_timezone(&shanghai())
                .format("%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_else(|| "—".into())
}

/// What an event says to whom; `None` for an event nobody needs telling about.
pub fn plan(event: &v1::Event, department_name: impl Fn(&str) -> String) -> Option<Plan> {
    let Some(v1::event::Body::IncidentChanged(changed)) = &event.body else {
        return None;
    };
    let title = &changed.title;
    match event.kind.as_str() {
        kind::TASK_DISPATCHED | kind::TASK_REMINDED | kind::TASK_SUPERVISED => {
            let task = changed.task.as_ref()?;
            // A missed report-in publishes 督办 and 催办 in one transition: one message says both.
            if event.kind == kind::TASK_REMINDED
                && changed
                    .transition_kinds
                    .iter()
                    .any(|k| k == kind::TASK_SUPERVISED)
            {
                return None;
            }
            let name = department_name(&task.department_code);
            let (tag, body) = match event.kind.as_str() {
                kind::TASK_DISPATCHED => (
                    "派单",
                    format!(
                        "{name}：新任务（任务 {}），请于 {} 前报到，{} 前办结。",
                        task.task_id,
                        local(&task.accept_due_at),
                        local(&task.resolve_due_at)
                    ),
                ),
                kind::TASK_REMINDED => (
                    "催办",
                    format!(
                        "{name}：任务 {} 请于 {} 前报到。{}",
                        task.task_id,
                        local(&task.accept_due_at),
                        changed.note
                    ),
                ),
                _ => (
                    "督办",
                    format!(
                        "{name}：任务 {} 已被督办，请于 {} 前办结。{}",
                        task.task_id,
                        local(&task.resolve_due_at),
                        changed.note
                    ),
                ),
            };
            Some(Plan {
                audience: Audience::Liaisons(task.department_code.clone()),
                title: format!("{tag}｜{title}"),
                body: body.trim_end().to_owned(),
                task_id: i32::try_from(task.task_id).ok(),
                department: Some(task.department_code.clone()),
            })
        }
        // The answer to a 延期申请 goes to whoever asked: the department of the task it names,
        // else the unit handling the incident.
        kind::INCIDENT_EXTENSION_APPROVED | kind::INCIDENT_EXTENSION_DENIED => {
            let tag = if event.kind == kind::INCIDENT_EXTENSION_APPROVED {
                "同意延期"
            } else {
                "不予延期"
            };
            let (audience, department) = match &changed.task {
                Some(task) => (
                    Audience::Liaisons(task.department_code.clone()),
                    Some(task.department_code.clone()),
                ),
                None => (Audience::Unit(handling_unit(event, changed)?), None),
            };
            Some(Plan {
                audience,
                title: format!("{tag}｜{title}"),
                body: format!("{}。办结时限：{}", changed.note, local(&changed.due_at)),
                task_id: changed
                    .task
                    .as_ref()
                    .and_then(|t| i32::try_from(t.task_id).ok()),
                department,
            })
        }
        // A 派单异议 goes to the street that arbitrates it (an operator sees it on the screen);
        // the arbitration goes back to the department that disputed.
        kind::TASK_DISPUTED => {
            let task = changed.task.as_ref()?;
            let street = event
                .grid_code
                .parse::<AreaCode>()
                .ok()?
                .at_level(Level::Street)?;
            Some(Plan {
                audience: Audience::Unit(street.to_string()),
                title: format!("派单异议｜{title}"),
                body: format!(
                    "{} 对任务 {} 提出异议，请仲裁。{}",
                    department_name(&task.department_code),
                    task.task_id,
                    changed.note
                ),
                task_id: i32::try_from(task.task_id).ok(),
                department: None,
            })
        }
        kind::TASK_DISPUTE_UPHELD | kind::TASK_DISPUTE_REJECTED => {
            let task = changed.task.as_ref()?;
            let (tag, next) = if event.kind == kind::TASK_DISPUTE_UPHELD {
                ("异议成立", String::new())
            } else {
                (
                    "异议不成立",
                    format!("请于 {} 前报到。", local(&task.accept_due_at)),
                )
            };
            Some(Plan {
                audience: Audience::Liaisons(task.department_code.clone()),
                title: format!("{tag}｜{title}"),
                body: format!("任务 {}：{} {next}", task.task_id, changed.note)
                    .trim_end()
                    .to_owned(),
                task_id: i32::try_from(task.task_id).ok(),
                department: Some(task.department_code.clone()),
            })
        }
        // 领导督办 goes to the unit handling the incident, as an operator's 督办 does.
        kind::INCIDENT_ENDORSED => Some(Plan {
            audience: Audience::Unit(handling_unit(event, changed)?),
            title: format!("领导督办｜{title}"),
            body: format!("结对领导督办：{}", changed.note),
            task_id: None,
            department: None,
        }),
        kind::INCIDENT_SUPERVISED => Some(Plan {
            audience: Audience::Unit(handling_unit(event, changed)?),
            title: format!("督办｜{title}"),
            body: format!(
                "本事件已被督办，请于 {} 前办结。{}",
                local(&changed.due_at),
                changed.note
            )
            .trim_end()
            .to_owned(),
            task_id: None,
            department: None,
        }),
        _ => None,
    }
}

/// What the leaders paired with the incident's street and community are told (领导结对联系): an
/// escalation to the district or above, an overdue incident, a supervision. `None` for any other
/// event, and for an incident outside any street.
pub fn leader_plan(event: &v1::Event) -> Option<Plan> {
    let Some(v1::event::Body::IncidentChanged(changed)) = &event.body else {
        return None;
    };
    let level = v1::Level::try_from(changed.level).ok()?;
    let (tag, what) = match event.kind.as_str() {
        kind::INCIDENT_ESCALATED if matches!(level, v1::Level::District | v1::Level::City) => {
            ("升级", format!("已升级至{}层级处置", level_zh(level)))
        }
        kind::INCIDENT_OVERDUE => ("超期", format!("已超过{}层级办理时限", level_zh(level))),
        kind::INCIDENT_SUPERVISED => ("督办", "已被指挥中心督办".to_owned()),
        _ => return None,
    };
    let grid = event.grid_code.parse::<AreaCode>().ok()?;
    let areas: Vec<String> = [Level::Street, Level::Community]
        .into_iter()
        .filter_map(|level| grid.at_level(level))
        .map(|a| a.to_string())
        .collect();
    if areas.is_empty() {
        return None;
    }
    let title = &changed.title;
    Some(Plan {
        audience: Audience::PairedLeaders(areas),
        title: format!("结对联系·{tag}｜{title}"),
        body: format!(
            "您结对联系的区域有事件{what}，办结时限 {}。可在领导视图中查看并领导督办。{}",
            local(&changed.due_at),
            changed.note
        )
        .trim_end()
        .to_owned(),
        task_id: None,
        department: None,
    })
}

fn level_zh(level: v1::Level) -> &'static str {
    match level {
        v1::Level::Grid => "网格",
        v1::Level::Community => "社区",
        v1::Level::Street => "街道",
        v1::Level::District => "旗区",
        v1::Level::City => "市级",
        v1::Level::Unspecified => "—",
    }
}

/// The unit at the incident's level (its grid at grid level).
fn handling_unit(event: &v1::Event, changed: &v1::IncidentChanged) -> Option<String> {
    let level = match v1::Level::try_from(changed.level).ok()? {
        v1::Level::Grid => Level::Grid,
        v1::Level::Community => Level::Community,
        v1::Level::Street => Level::Street,
        v1::Level::District => Level::District,
        v1::Level::City => Level::City,
        v1::Level::Unspecified => return None,
    };
    let unit = event.grid_code.parse::<AreaCode>().ok()?.at_level(level)?;
    Some(unit.to_string())
}

pub(crate) struct Notifier {
    pub shared: Arc<Shared>,
    pub config: Arc<Config>,
    pub http: reqwest::Client,
    pub wakeup: Arc<Notify>,
}

impl Notifier {
    pub fn new(shared: Arc<Shared>, config: Config) -> Result<Notifier, Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .user_agent("whistle-dispatch")
            .build()
            .map_err(|e| Error::NotifyConfig(format!("HTTP client: {e}")))?;
        Ok(Notifier {
            shared,
            config: Arc::new(config),
            http,
            wakeup: Arc::new(Notify::new()),
        })
    }

    /// Runs the reader and the sender until `shutdown`.
    pub async fn run(self, consumer: consumer::PullConsumer, shutdown: CancellationToken) {
        let this = Arc::new(self);
        let reader = tokio::spawn(this.clone().read(consumer, shutdown.clone()));
        this.send(shutdown).await;
        let _ = reader.await;
        info!("notifications stopped");
    }

    async fn read(self: Arc<Self>, consumer: consumer::PullConsumer, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            let messages = match consumer
                .stream()
                .max_messages_per_batch(100)
                .heartbeat(Duration::from_secs(5))
                .expires(Duration::from_secs(30))
                .messages()
                .await
            {
                Ok(messages) => messages,
                Err(e) => {
                    warn!(error = %e, "cannot start the notification pull; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(self.shared.options.retry_delay) => continue,
                    }
                }
            };
            let mut messages = std::pin::pin!(messages.take_until(shutdown.cancelled()));
            while let Some(message) = messages.next().await {
                let message = match message {
                    Ok(message) => message,
                    Err(e) => {
                        warn!(error = %e, "notification pull reported an error");
                        continue;
                    }
                };
                match self.take(&message.payload).await {
                    Ok(written) => {
                        if written > 0 {
                            self.wakeup.notify_one();
                        }
                        if let Err(e) = message.ack().await {
                            debug!(error = %e, "ack not sent; the event comes back and adds nothing");
                        }
                    }
                    Err(e) => {
                        warn!(error = %whistle_wire::chain(&e), "writing notifications failed; the event will be redelivered");
                        let delay = self.shared.options.retry_delay;
                        let _ = message.ack_with(AckKind::Nak(Some(delay))).await;
                    }
                }
            }
        }
    }

    /// Writes the notifications an event causes; how many outbound ones are new.
    async fn take(&self, payload: &[u8]) -> Result<u64, Error> {
        let Ok(event) = v1::Event::decode(payload) else {
            warn!("an event that does not decode; no one is notified of it");
            return Ok(0);
        };
        let catalog = self.shared.catalog.load();
        let department_name = |code: &str| {
            code.parse()
                .ok()
                .and_then(|code| catalog.org.department(&code))
                .map_or_else(|| code.to_owned(), |d| d.name.clone())
        };
        // The people the event concerns, and the leaders paired with its area (领导结对联系).
        let plans: Vec<Plan> = plan(&event, department_name)
            .into_iter()
            .chain(leader_plan(&event))
            .collect();
        if plans.is_empty() {
            return Ok(0);
        }
        let (Ok(event_id), incident_id) = (
            event.event_id.parse::<Uuid>(),
            event.incident_id.parse::<Uuid>().ok(),
        ) else {
            warn!(event_id = %event.event_id, "an event without a valid id; no one is notified of it");
            return Ok(0);
        };
        let pool = &self.shared.pool;
        let now = self.shared.clock.now();
        let mut rows = Vec::new();
        let mut held_back = Vec::new();
        for plan in &plans {
            let people = match &plan.audience {
                Audience::Liaisons(department) => store::liaisons(pool, department).await?,
                Audience::Unit(unit) => store::unit_staff(pool, unit).await?,
                Audience::PairedLeaders(areas) => store::paired_leaders(pool, areas).await?,
            };
            let base = |recipient: String, channel, person_id: Option<String>| NewNotification {
                id: Uuid::now_v7(),
                event_id,
                recipient,
                channel,
                person_id,
                kind: event.kind.clone(),
                incident_id,
                task_id: plan.task_id,
                department_code: plan.department.clone(),
                title: plan.title.clone(),
                body: plan.body.clone(),
                created_at: now,
                send_at: None,
                deputy_of: None,
            };
            for person in &people {
                rows.push(base(
                    person.person_id.clone(),
                    Channel::Console,
                    Some(person.person_id.clone()),
                ));
                if self.config.sms.is_some() && !person.phone.is_empty() {
                    let until = person.quiet.and_then(|q| quiet_until(now, q));
                    let mut sms = base(
                        person.person_id.clone(),
                        Channel::Sms,
                        Some(person.person_id.clone()),
                    );
                    sms.send_at = Some(until.unwrap_or(now));
                    if until.is_some_and(|u| u - now > self.deputy_after()) {
                        held_back.push((sms.id, person.clone()));
                    }
                    rows.push(sms);
                }
            }
            if let Some(department) = &plan.department {
                if self.config.webhook(department).is_some() && !people.is_empty() {
                    let mut hook = base(department.clone(), Channel::Webhook, None);
                    hook.send_at = Some(now);
                    rows.push(hook);
                }
            }
        }
        let mut tx = pool.begin().await?;
        store::insert(&mut tx, &rows).await?;
        tx.commit().await?;
        for (id, person) in held_back {
            // Their quiet hours last too long for this: the deputy hears now. On a redelivery the
            // row written the first time stands (and says whether the deputy was told already).
            let row = rows.iter().find(|r| r.id == id).expect("pushed above");
            let Some((stored, escalated)) =
                store::stored(pool, event_id, &row.recipient, Channel::Sms).await?
            else {
                continue;
            };
            let due = Due {
                row: NewNotification {
                    id: stored,
                    ..row.clone()
                },
                person: Some(person),
                attempts: 0,
                escalated,
            };
            self.to_deputy(due, "免打扰时段").await?;
        }
        Ok(rows.iter().filter(|r| r.send_at.is_some()).count() as u64)
    }

    fn deputy_after(&self) -> TimeDelta {
        TimeDelta::seconds(self.config.deputy_after_secs as i64)
    }

    /// Tells the deputy of the person `due` was for, once; nothing if they have none.
    async fn to_deputy(&self, due: Due, why: &str) -> Result<(), Error> {
        let Some(person) = &due.person else {
            return Ok(());
        };
        let Some(deputy_id) = &person.deputy_id else {
            return Ok(());
        };
        let of = &due.row;
        if due.escalated || of.deputy_of.is_some() {
            return Ok(());
        }
        let pool = &self.shared.pool;
        let Some(deputy) = store::person(pool, deputy_id).await? else {
            return Ok(());
        };
        let now = self.shared.clock.now();
        let row = |channel, send_at| NewNotification {
            id: Uuid::now_v7(),
            recipient: deputy.person_id.clone(),
            channel,
            person_id: Some(deputy.person_id.clone()),
            body: format!("（代 {} 接收）{}", person.name, of.body),
            created_at: now,
            send_at,
            deputy_of: Some(of.id),
            ..of.clone()
        };
        let mut rows = vec![row(Channel::Console, None)];
        if self.config.sms.is_some() && !deputy.phone.is_empty() {
            let until = deputy.quiet.and_then(|q| quiet_until(now, q));
            rows.push(row(Channel::Sms, Some(until.unwrap_or(now))));
        }
        let entry = of.incident_id.map(|incident_id| Entry {
            incident_id,
            kind: "notification.escalated",
            at: now,
            note: format!(
                "{}（{why}）未及时收到「{}」，已转告代理人 {}",
                person.name, of.title, deputy.name
            ),
        });
        if store::escalate(pool, of.id, &rows, entry).await? {
            info!(notification = %of.id, deputy = %deputy.person_id, "told a deputy");
            self.wakeup.notify_one();
        }
        Ok(())
    }

    async fn send(&self, shutdown: CancellationToken) {
        let poll = self.shared.options.timer_poll_interval;
        loop {
            let sent = match self.send_due().await {
                Ok(sent) => sent,
                Err(e) => {
                    warn!(error = %whistle_wire::chain(&e), "a notification round failed; retrying");
                    0
                }
            };
            if sent > 0 {
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wakeup.notified() => {}
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// Sends what is due now; how many it tried.
    async fn send_due(&self) -> Result<usize, Error> {
        let now = self.shared.clock.now();
        let due = store::claim_due(&self.shared.pool, now, TimeDelta::seconds(60), 32).await?;
        let tried = due.len();
        let results = futures::stream::iter(due)
            .map(|due| async move {
                let outcome = self.deliver(&due).await;
                self.record(due, outcome).await
            })
            .buffer_unordered(8)
            .collect::<Vec<_>>()
            .await;
        for result in results {
            result?;
        }
        Ok(tried)
    }

    async fn deliver(&self, due: &Due) -> Result<(), String> {
        match due.row.channel {
            Channel::Sms => {
                let sms = self
                    .config
                    .sms
                    .as_ref()
                    .ok_or("no SMS gateway configured")?;
                let phone = due
                    .person
                    .as_ref()
                    .map(|p| p.phone.clone())
                    .ok_or("the person is no longer in the register")?;
                let mut request = self.http.post(&sms.url).json(&serde_json::json!({
                    "id": due.row.id,
                    "phone": phone,
                    "text": text(due),
                }));
                if let Some(token) = &sms.token {
                    request = request.bearer_auth(token);
                }
                let response = request.send().await.map_err(|e| e.to_string())?;
                if response.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("the SMS gateway answered {}", response.status()))
                }
            }
            Channel::Webhook => {
                let hook = self
                    .config
                    .webhook(&due.row.recipient)
                    .ok_or("no webhook configured for the department any more")?;
                let phones: Vec<String> = store::liaisons(&self.shared.pool, &due.row.recipient)
                    .await
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .map(|p| p.phone)
                    .filter(|p| !p.is_empty())
                    .collect();
                robot(
                    &self.http,
                    hook,
                    &text(due),
                    &phones,
                    self.shared.clock.now(),
                )
                .await
            }
            Channel::Console => Ok(()),
        }
    }

    async fn record(&self, due: Due, outcome: Result<(), String>) -> Result<(), Error> {
        let now = self.shared.clock.now();
        let pool = &self.shared.pool;
        let to = match (&due.person, due.row.channel) {
            (Some(person), _) => format!("短信 → {}", person.name),
            (None, _) => {
                let kind = self
                    .config
                    .webhook(&due.row.recipient)
                    .map_or("群机器人", |h| h.kind.name_zh());
                let catalog = self.shared.catalog.load();
                let name = due
                    .row
                    .recipient
                    .parse()
                    .ok()
                    .and_then(|code| catalog.org.department(&code))
                    .map_or_else(|| due.row.recipient.clone(), |d| d.name.clone());
                format!("{kind} → {name}")
            }
        };
        let entry = |kind, note| {
            due.row.incident_id.map(|incident_id| Entry {
                incident_id,
                kind,
                at: now,
                note,
            })
        };
        match outcome {
            Ok(()) => {
                let note = format!("{to}：{}", due.row.title);
                if store::delivered(pool, due.row.id, now, entry("notification.delivered", note))
                    .await?
                {
                    self.shared.metrics.record_notification(true);
                    debug!(notification = %due.row.id, channel = due.row.channel.as_str(), "delivered");
                }
            }
            Err(error) if due.attempts >= self.config.max_attempts => {
                warn!(notification = %due.row.id, %error, attempts = due.attempts, "giving a notification up");
                let note = format!("{to} 未送达（{} 次）：{error}", due.attempts);
                if store::failed(
                    pool,
                    due.row.id,
                    now,
                    &error,
                    entry("notification.failed", note),
                )
                .await?
                {
                    self.shared.metrics.record_notification(false);
                }
                self.to_deputy(due, "多次发送失败").await?;
            }
            Err(error) => {
                debug!(notification = %due.row.id, %error, attempts = due.attempts, "a notification attempt failed");
                store::retry(
                    pool,
                    due.row.id,
                    now + self.config.backoff(due.attempts),
                    &error,
                )
                .await?;
                if due.attempts >= self.config.deputy_after_attempts {
                    self.to_deputy(due, "多次发送失败").await?;
                }
            }
        }
        Ok(())
    }
}

/// The text of an outbound message.
fn text(due: &Due) -> String {
    format!("【Whistle】{}\n{}", due.row.title, due.row.body)
}

/// Posts a text message to a group robot, mentioning `phones`, in the robot's own format; an
/// answer with a non-zero `errcode` is a failure.
async fn robot(
    http: &reqwest::Client,
    hook: &Webhook,
    text: &str,
    phones: &[String],
    now: DateTime<Utc>,
) -> Result<(), String> {
    let (url, body) = match hook.kind {
        RobotKind::Wecom => (
            hook.url.clone(),
            serde_json::json!({
                "msgtype": "text",
                "text": { "content": text, "mentioned_mobile_list": phones },
            }),
        ),
        RobotKind::Dingtalk => {
            let url = match &hook.secret {
                Some(secret) => {
                    let (timestamp, sign) = dingtalk_sign(secret, now.timestamp_millis());
                    let sep = if hook.url.contains('?') { '&' } else { '?' };
                    format!("{}{sep}timestamp={timestamp}&sign={sign}", hook.url)
                }
                None => hook.url.clone(),
            };
            (
                url,
                serde_json::json!({
                    "msgtype": "text",
                    "text": { "content": text },
                    "at": { "atMobiles": phones, "isAtAll": false },
                }),
            )
        }
    };
    let response = http
        .post(url)
        .json(&body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("the robot answered {status}"));
    }
    let answer: serde_json::Value = response
        .json()
        .await
        .map_err(|e| format!("the robot's answer is not JSON: {e}"))?;
    match answer.get("errcode").and_then(serde_json::Value::as_i64) {
        Some(0) => Ok(()),
        Some(code) => Err(format!(
            "the robot refused it: errcode {code} {}",
            answer.get("errmsg").and_then(|m| m.as_str()).unwrap_or("")
        )),
        None => Err("the robot's answer has no errcode".into()),
    }
}

/// 钉钉's signature: `base64(HMAC-SHA256(secret, "{timestamp}\n{secret}"))`, percent-encoded.
fn dingtalk_sign(secret: &str, timestamp: i64) -> (i64, String) {
    use base64::Engine as _;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(format!("{timestamp}\n{secret}").as_bytes());
    let sign = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let encoded = sign
        .bytes()
        .map(|b| match b {
            b'+' => "%2B".to_owned(),
            b'/' => "%2F".to_owned(),
            b'=' => "%3D".to_owned(),
            b => (b as char).to_string(),
        })
        .collect();
    (timestamp, encoded)
}

/// The reader's durable consumer, created or brought to this configuration. It starts at new
/// events: a deployment that gains notifications does not message people about its history.
pub async fn consumer(js: &jetstream::Context) -> Result<consumer::PullConsumer, Error> {
    let stream = js
        .get_stream(EVENTS_STREAM)
        .await
        .map_err(|source| Error::OpenStream {
            stream: EVENTS_STREAM,
            source,
        })?;
    stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some(CONSUMER.into()),
            description: Some("whistle-dispatch notifications".into()),
            filter_subjects: filter_subjects(),
            deliver_policy: consumer::DeliverPolicy::New,
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(30),
            max_deliver: -1,
            ..Default::default()
        })
        .await
        .map_err(|source| Error::Consumer {
            consumer: CONSUMER.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        shanghai()
            .with_ymd_and_hms(2026, 12, 6, h, m, 0)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn t(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    #[test]
    fn quiet_hours_hold_messages_until_they_end_even_past_midnight() {
        let night = (t(22, 0), t(7, 0));
        assert_eq!(
            quiet_until(at(23, 30), night),
            Some(at(7, 0) + TimeDelta::days(1))
        );
        assert_eq!(quiet_until(at(6, 59), night), Some(at(7, 0)));
        assert_eq!(quiet_until(at(7, 0), night), None);
        assert_eq!(quiet_until(at(12, 0), night), None);
        let lunch = (t(12, 0), t(13, 30));
        assert_eq!(quiet_until(at(12, 0), lunch), Some(at(13, 30)));
        assert_eq!(quiet_until(at(13, 30), lunch), None);
        assert_eq!(quiet_until(at(11, 0), lunch), None);
        assert_eq!(quiet_until(at(3, 0), (t(8, 0), t(8, 0))), None);
    }

    fn changed(kind: &str, transition: &[&str]) -> v1::Event {
        v1::Event {
            event_id: Uuid::now_v7().to_string(),
            kind: kind.into(),
            grid_code: "150602001001001".into(),
            body: Some(v1::event::Body::IncidentChanged(v1::IncidentChanged {
                title: "井盖缺失".into(),
                level: v1::Level::Street as i32,
                note: "超过报到时限未报到".into(),
                transition_kinds: transition.iter().map(|k| k.to_string()).collect(),
                task: Some(v1::TaskState {
                    task_id: 2,
                    department_code: "150602-urban_management".into(),
                    accept_due_at: Some(prost_types::Timestamp {
                        seconds: at(10, 30).timestamp(),
                        nanos: 0,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    #[test]
    fn a_dispatch_tells_the_departments_liaisons_when_to_report_in() {
        let plan = plan(&changed(kind::TASK_DISPATCHED, &[]), |_| "城管局".into()).unwrap();
        assert_eq!(
            plan.audience,
            Audience::Liaisons("150602-urban_management".into())
        );
        assert_eq!(plan.title, "派单｜井盖缺失");
        assert!(
            plan.body
                .starts_with("城管局：新任务（任务 2），请于 12-06 10:30 前报到"),
            "{}",
            plan.body
        );
        assert_eq!(plan.task_id, Some(2));
    }

    #[test]
    fn a_missed_report_in_is_one_message_not_two() {
        let both = [kind::TASK_SUPERVISED, kind::TASK_REMINDED];
        assert!(plan(&changed(kind::TASK_REMINDED, &both), |c| c.into()).is_none());
        let supervised = plan(&changed(kind::TASK_SUPERVISED, &both), |c| c.into()).unwrap();
        assert!(supervised.title.starts_with("督办"));
        assert!(supervised.body.contains("超过报到时限未报到"));
        assert!(
            plan(&changed(kind::TASK_REMINDED, &[kind::TASK_REMINDED]), |c| c
                .into())
            .is_some()
        );
    }

    #[test]
    fn a_dispute_goes_to_the_street_and_its_arbitration_back_to_the_department() {
        let disputed = plan(&changed(kind::TASK_DISPUTED, &[]), |_| "城管局".into()).unwrap();
        assert_eq!(disputed.audience, Audience::Unit("150602001".into()));
        assert_eq!(disputed.title, "派单异议｜井盖缺失");
        assert!(disputed.body.starts_with("城管局 对任务 2 提出异议"));
        let rejected = plan(&changed(kind::TASK_DISPUTE_REJECTED, &[]), |c| c.into()).unwrap();
        assert_eq!(
            rejected.audience,
            Audience::Liaisons("150602-urban_management".into())
        );
        assert!(rejected.title.starts_with("异议不成立｜"));
        assert!(
            rejected.body.ends_with("请于 12-06 10:30 前报到。"),
            "{}",
            rejected.body
        );
        let upheld = plan(&changed(kind::TASK_DISPUTE_UPHELD, &[]), |c| c.into()).unwrap();
        assert!(upheld.title.starts_with("异议成立｜"));
        assert!(plan(&changed(kind::TASK_DISPUTE_WITHDRAWN, &[]), |c| c.into()).is_none());
    }

    #[test]
    fn supervising_an_incident_tells_the_unit_at_its_level() {
        let supervised = plan(&changed(kind::INCIDENT_SUPERVISED, &[]), |c| c.into()).unwrap();
        assert_eq!(supervised.audience, Audience::Unit("150602001".into()));
        assert!(plan(&changed(kind::TASK_ACCEPTED, &[]), |c| c.into()).is_none());
    }

    #[test]
    fn an_extension_s_answer_goes_to_whoever_asked() {
        let approved = changed(kind::INCIDENT_EXTENSION_APPROVED, &[]);
        let for_task = plan(&approved, |c| c.into()).unwrap();
        assert_eq!(
            for_task.audience,
            Audience::Liaisons("150602-urban_management".into())
        );
        assert!(for_task.title.starts_with("同意延期｜"));
        let mut denied = changed(kind::INCIDENT_EXTENSION_DENIED, &[]);
        if let Some(v1::event::Body::IncidentChanged(c)) = &mut denied.body {
            c.task = None;
        }
        let for_level = plan(&denied, |c| c.into()).unwrap();
        assert_eq!(for_level.audience, Audience::Unit("150602001".into()));
        assert!(for_level.title.starts_with("不予延期｜"));
    }

    #[test]
    fn retries_back_off_to_five_minutes() {
        let config = Config::default();
        let delays: Vec<i64> = (1..=9).map(|a| config.backoff(a).num_seconds()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn dingtalk_signatures_match_an_independent_computation() {
        // `printf '1700000000000\nSECtest' | openssl dgst -sha256 -hmac SECtest -binary | base64`
        let (_, sign) = dingtalk_sign("SECtest", 1_700_000_000_000);
        assert_eq!(sign, "aZLLrriXgn05YbwaGR7knYsLeJADjr9NwLaNNKpxh4g%3D");
    }

    #[test]
    fn a_configuration_names_each_department_once_and_real_urls() {
        let dir = std::env::temp_dir().join(format!("whistle-notify-{}", Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("notify.toml");
        let write = |text: &str| std::fs::write(&file, text).unwrap();
        write("[sms]\nurl = \"http://127.0.0.1:9/sms\"\n[[webhook]]\ndepartment = \"d\"\nkind = \"wecom\"\nurl = \"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k\"\n");
        let config = Config::load(&file).unwrap();
        assert_eq!(config.max_attempts, 8);
        assert!(config.webhook("d").is_some());
        write("[[webhook]]\ndepartment = \"d\"\nkind = \"wecom\"\nurl = \"https://a\"\n[[webhook]]\ndepartment = \"d\"\nkind = \"dingtalk\"\nurl = \"https://b\"\n");
        assert!(Config::load(&file)
            .unwrap_err()
            .to_string()
            .contains("two webhooks"));
        write("[sms]\nurl = \"ftp://x\"\n");
        assert!(Config::load(&file)
            .unwrap_err()
            .to_string()
            .contains("not an http(s) URL"));
        write("[sms]\nurl = \"http://x\"\nretries = 3\n");
        assert!(Config::load(&file).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
