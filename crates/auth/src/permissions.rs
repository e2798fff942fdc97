//! Who may publish and subscribe to what, by role: a pure function of the identity and the org
//! tree. Everything not allowed is denied; the JetStream API, system, object store and KV
//! subjects and the shared `_INBOX.>` are denied to people even if an allow were to match.

use whistle_domain::{AreaCode, DepartmentCode, Level, OrgIndex, PersonId};
use whistle_store::tokens::{Role, Token};
use whistle_wire::{connect, names, subject, Verb};

/// Subjects no person's connection may touch, whatever its allow list says.
pub const FORBIDDEN_TO_PEOPLE: [&str; 5] = ["$JS.>", "$SYS.>", "$O.>", "$KV.>", "_INBOX.>"];

/// A person's or device's identity as the callout knows it from the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    GridWorker {
        person: PersonId,
        grid: AreaCode,
    },
    Liaison {
        person: PersonId,
        department: DepartmentCode,
    },
    Operator {
        person: PersonId,
        area: AreaCode,
    },
    /// A registered Party member (docs/party.md): claims, gives back and completes their
    /// community's offers as themselves, and nothing else.
    Member {
        person: PersonId,
        community: AreaCode,
    },
    /// 结对领导: endorses a 督办 (and comments) on incidents of its paired areas, which dispatch
    /// checks; reads through the query service, not NATS.
    Leader {
        person: PersonId,
        area: AreaCode,
    },
    /// A device's credential: files its grid's reports, as no person (docs/devices.md).
    Device {
        token: uuid::Uuid,
        device: String,
        grid: AreaCode,
    },
    /// Reads only; scoped by an area, or by one department's tasks.
    Viewer {
        token: uuid::Uuid,
        area: AreaCode,
        department: Option<DepartmentCode>,
    },
}

/// Why a stored token cannot be turned into an identity (a corrupt row, or a grid worker whose
/// scope is not a grid).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("token {token} cannot authorize a connection: {why}")]
pub struct Unusable {
    pub token: uuid::Uuid,
    pub why: String,
}

impl Identity {
    /// The identity a stored token grants.
    pub fn from_token(token: &Token) -> Result<Identity, Unusable> {
        let unusable = |why: String| Unusable {
            token: token.id,
            why,
        };
        let area: AreaCode = token
            .area_code
            .parse()
            .map_err(|e| unusable(format!("{e}")))?;
        let department: Option<DepartmentCode> = token
            .department_code
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e| unusable(format!("{e}")))?;
        let person = || -> Result<PersonId, Unusable> {
            token
                .person_id
                .as_deref()
                .ok_or_else(|| unusable(format!("a {} token needs a person", token.role.as_str())))?
                .parse()
                .map_err(|e| unusable(format!("{e}")))
        };
        Ok(match token.role {
            Role::GridWorker if area.level() != Level::Grid => {
                return Err(unusable(format!("{area} is not a grid")))
            }
            Role::GridWorker => Identity::GridWorker {
                person: person()?,
                grid: area,
            },
            Role::Liaison => Identity::Liaison {
                person: person()?,
                department: department
                    .ok_or_else(|| unusable("a liaison token needs a department".into()))?,
            },
            Role::Operator => Identity::Operator {
                person: person()?,
                area,
            },
            Role::Member if area.level() != Level::Community => {
                return Err(unusable(format!("{area} is not a community")))
            }
            Role::Member => Identity::Member {
                person: person()?,
                community: area,
            },
            Role::Viewer => Identity::Viewer {
                token: token.id,
                area,
                department,
            },
            Role::Leader => Identity::Leader {
                person: person()?,
                area,
            },
            Role::Device if area.level() != Level::Grid => {
                return Err(unusable(format!("{area} is not a grid")))
            }
            Role::Device => Identity::Device {
                token: token.id,
                device: token
                    .device_id
                    .clone()
                    .ok_or_else(|| unusable("a device token needs its device".into()))?,
                grid: area,
            },
            // Open311 keys speak HTTP to the query service's Open311 door and nothing else.
            Role::Open311 | Role::Hotline => {
                return Err(unusable(format!(
                    "an {} key is for the Open311 door only, not NATS",
                    token.role.as_str()
                )))
            }
        })
    }

    /// The name the connection shows in monitoring: the acting person, or the viewer's token.
    pub fn name(&self) -> String {
        match self {
            Identity::GridWorker { person, .. }
            | Identity::Liaison { person, .. }
            | Identity::Operator { person, .. }
            | Identity::Member { person, .. }
            | Identity::Leader { person, .. } => person.to_string(),
            Identity::Viewer { token, .. } => format!("viewer-{token}"),
            Identity::Device { device, .. } => format!("device-{device}"),
        }
    }

    /// The inbox prefix this identity's client must use (async-nats `custom_inbox_prefix`).
    pub fn inbox_prefix(&self) -> String {
        match self {
            Identity::GridWorker { person, .. }
            | Identity::Liaison { person, .. }
            | Identity::Operator { person, .. }
            | Identity::Member { person, .. }
            | Identity::Leader { person, .. } => connect::person_inbox_prefix(person.as_str()),
            Identity::Viewer { token, .. } | Identity::Device { token, .. } => {
                connect::token_inbox_prefix(&token.to_string())
            }
        }
    }
}

/// The inbox prefix a client of `identity` must set (async-nats `custom_inbox_prefix`): the only
/// inbox it may subscribe to, so nobody else receives its replies.
pub fn inbox_prefix(identity: &Identity) -> String {
    identity.inbox_prefix()
}

/// What a connection may do; anything not allowed is denied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    pub publish: Vec<String>,
    pub subscribe: Vec<String>,
    /// Subjects inside `publish` the role may still not publish: the verbs it never sends.
    pub deny_publish: Vec<String>,
}

/// The permissions of a person's connection. Operators read the task subjects of every
/// department serving inside their area (all of them for the city).
pub fn permissions(identity: &Identity, org: &OrgIndex) -> Permissions {
    let inbox = format!("{}.>", identity.inbox_prefix());
    match identity {
        // A grid worker or a liaison asks for more time and proposes a case for the ledger (挂账);
        // only the level above answers and reviews. A grid worker has no task to dispute or to
        // assist with, and dispatches none to arbitrate or release.
        Identity::GridWorker { person, grid } => Permissions {
            publish: vec![
                subject::grid_reports(grid),
                subject::person_commands(person.as_str()),
            ],
            subscribe: vec![inbox],
            deny_publish: [
                Verb::DecideExtension,
                Verb::Dispute,
                Verb::DecideDispute,
                Verb::SubmitAssist,
                Verb::ReleaseAssist,
                Verb::DecideLedger,
                Verb::ReviewLedger,
                Verb::Adopt,
                Verb::CompleteMilestone,
                Verb::Endorse,
            ]
            .into_iter()
            .chain(Verb::PEOPLE)
            .chain(Verb::VOLUNTEER)
            .map(|verb| subject::command(verb, person.as_str()))
            .collect(),
        },
        // A liaison disputes its department's task and submits its assisting part; the
        // dispatching level arbitrates and releases. Only operators manage people and adopt
        // topics as proactive cases; a lead department's liaison marks their milestones done.
        Identity::Liaison { person, department } => Permissions {
            publish: vec![subject::person_commands(person.as_str())],
            subscribe: vec![subject::department_tasks(department.as_str()), inbox],
            deny_publish: [
                Verb::DecideExtension,
                Verb::DecideDispute,
                Verb::ReleaseAssist,
                Verb::DecideLedger,
                Verb::ReviewLedger,
                Verb::Adopt,
                Verb::Endorse,
            ]
            .into_iter()
            .chain(Verb::PEOPLE)
            .chain(Verb::VOLUNTEER)
            .map(|verb| subject::command(verb, person.as_str()))
            .collect(),
        },
        Identity::Operator { person, area } => {
            let mut subscribe = vec![subject::area_events(area)];
            subscribe.extend(area_task_subjects(area, org));
            subscribe.push(inbox);
            // An operator answers extension requests, arbitrates disputes, releases assisting
            // departments and enters and reviews ledger cases; it never handles a task to ask for
            // more time, dispute it, submit a part or propose it for the ledger.
            Permissions {
                publish: vec![subject::person_commands(person.as_str())],
                subscribe,
                deny_publish: [
                    Verb::RequestExtension,
                    Verb::Dispute,
                    Verb::SubmitAssist,
                    Verb::ProposeLedger,
                    Verb::Endorse,
                ]
                .into_iter()
                // The community offers and confirms; only members claim and do the work.
                .chain(Verb::MEMBER)
                .map(|verb| subject::command(verb, person.as_str()))
                .collect(),
            }
        }
        // A member's phone sends its own claims, give-backs and completions and reads its replies;
        // offers are read over gRPC, limited to the member's community. No event, task or
        // report subject, and no other verb.
        Identity::Member { person, .. } => Permissions {
            publish: Verb::MEMBER
                .iter()
                .map(|verb| subject::command(*verb, person.as_str()))
                .collect(),
            subscribe: vec![inbox],
            deny_publish: Vec::new(),
        },
        // A leader publishes its own 领导督办 and comments, nothing else, and subscribes to its
        // inbox only: what happens in its areas reaches it as notifications.
        Identity::Leader { person, .. } => Permissions {
            publish: [Verb::Endorse, Verb::Comment]
                .map(|verb| subject::command(verb, person.as_str()))
                .to_vec(),
            subscribe: vec![inbox],
            deny_publish: Vec::new(),
        },
        // A device files its grid's reports on the device channel's subject and nothing else: not
        // the grid's own subject (a person's), no command, no event, no task.
        Identity::Device { grid, .. } => Permissions {
            publish: vec![subject::device_reports(grid)],
            subscribe: vec![inbox],
            deny_publish: Vec::new(),
        },
        Identity::Viewer {
            department: Some(department),
            ..
        } => Permissions {
            publish: Vec::new(),
            subscribe: vec![subject::department_tasks(department.as_str()), inbox],
            deny_publish: Vec::new(),
        },
        Identity::Viewer {
            area,
            department: None,
            ..
        } => Permissions {
            publish: Vec::new(),
            subscribe: vec![subject::area_events(area), inbox],
            deny_publish: Vec::new(),
        },
    }
}

fn area_task_subjects(area: &AreaCode, org: &OrgIndex) -> Vec<String> {
    if area.level() == Level::City {
        return vec![subject::ALL_TASK_EVENTS.into()];
    }
    let mut departments: Vec<&DepartmentCode> = org
        .departments()
        .filter(|d| area.contains(&d.area))
        .map(|d| &d.code)
        .collect();
    departments.sort();
    departments
        .into_iter()
        .map(|d| subject::department_tasks(d.as_str()))
        .collect()
}

/// A service identity, a static nkey user of the server configuration that bypasses the callout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Dispatch,
    Query,
    Admin,
    /// The auth callout service itself, alone in the `AUTH` account.
    Callout,
    /// The callout's companion, alone in the system account: it may only ask a server to
    /// disconnect a connection (`$SYS.REQ.SERVER.{id}.KICK`), which the callout does when the
    /// connection's token is revoked.
    Revoker,
}

impl Service {
    pub const ALL: [Service; 5] = [
        Service::Dispatch,
        Service::Query,
        Service::Admin,
        Service::Callout,
        Service::Revoker,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Service::Dispatch => "dispatch",
            Service::Query => "query",
            Service::Admin => "admin",
            Service::Callout => "auth-callout",
            Service::Revoker => "auth-revoker",
        }
    }

    /// The inbox prefix the service's client must use (async-nats `custom_inbox_prefix`).
    pub fn inbox_prefix(self) -> String {
        connect::service_inbox_prefix(self.name())
    }
}

/// A static user's permissions as nats-server configures them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticPermissions {
    /// `None`: no restriction (the admin).
    pub publish: Option<Vec<String>>,
    pub subscribe: Option<Vec<String>>,
    /// May answer requests it received, on whatever reply subject they name.
    pub allow_responses: bool,
}

/// The JetStream streams and dispatch's intake consumer, as the permissions name them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamNames {
    pub reports: String,
    pub events: String,
    pub rejected: String,
    /// Dispatch's durable pull consumer on the reports stream.
    pub intake_durable: String,
    /// The photos' object store bucket and its stream.
    pub photos_bucket: String,
    pub photos: String,
}

impl Default for StreamNames {
    fn default() -> Self {
        StreamNames {
            reports: names::REPORTS_STREAM.into(),
            events: names::EVENTS_STREAM.into(),
            rejected: names::REJECTED_STREAM.into(),
            intake_durable: names::DISPATCH_CONSUMER.into(),
            photos_bucket: names::PHOTOS_BUCKET.into(),
            photos: names::PHOTOS_STREAM.into(),
        }
    }
}

/// What each service may do. Dispatch consumes reports through its own durable consumer,
/// publishes events, tasks and rejections, serves commands; query reads events through
/// ephemeral ordered consumers and forwards commands and reports; the admin does anything.
pub fn service_permissions(service: Service, streams: &StreamNames) -> StaticPermissions {
    let js = |s: &str| format!("$JS.API.{s}");
    let inbox = format!("{}.>", service.inbox_prefix());
    match service {
        Service::Dispatch => {
            let (reports, durable) = (&streams.reports, &streams.intake_durable);
            let (events, notify) = (&streams.events, names::NOTIFY_CONSUMER);
            StaticPermissions {
                publish: Some(vec![
                    subject::ALL_INCIDENT_EVENTS.into(),
                    subject::ALL_TASK_EVENTS.into(),
                    subject::ALL_REJECTED.into(),
                    js(&format!("STREAM.INFO.{reports}")),
                    js(&format!("STREAM.INFO.{}", streams.events)),
                    js(&format!("STREAM.INFO.{}", streams.rejected)),
                    // async-nats names the filter in the subject: `….{durable}.{filter}`.
                    js(&format!("CONSUMER.CREATE.{reports}.{durable}.>")),
                    // Asked by async-nats when a pull stream resumes after a reconnect.
                    js(&format!("CONSUMER.INFO.{reports}.{durable}")),
                    js(&format!("CONSUMER.MSG.NEXT.{reports}.{durable}")),
                    format!("$JS.ACK.{reports}.{durable}.>"),
                    // The notifications' durable consumer on the events: several filters, so
                    // its create request names none.
                    js(&format!("CONSUMER.CREATE.{events}.{notify}")),
                    js(&format!("CONSUMER.INFO.{events}.{notify}")),
                    js(&format!("CONSUMER.MSG.NEXT.{events}.{notify}")),
                    format!("$JS.ACK.{events}.{notify}.>"),
                    // The retention job removes erased photos from their bucket (docs/privacy.md):
                    // it opens the bucket, reads an object's metadata (never its chunks, the
                    // photo), marks it deleted and purges its chunks.
                    js(&format!("STREAM.INFO.{}", streams.photos)),
                    js(&format!(
                        "DIRECT.GET.{}.$O.{}.M.>",
                        streams.photos, streams.photos_bucket
                    )),
                    format!("$O.{}.M.>", streams.photos_bucket),
                    js(&format!("STREAM.PURGE.{}", streams.photos)),
                ]),
                subscribe: Some(vec![subject::ALL_COMMANDS.into(), "$SRV.>".into(), inbox]),
                allow_responses: true,
            }
        }
        Service::Query => {
            let events = &streams.events;
            StaticPermissions {
                publish: Some(vec![
                    subject::ALL_COMMANDS.into(),
                    subject::ALL_REPORTS.into(),
                    js(&format!("STREAM.INFO.{events}")),
                    // Ordered pull consumers: created (named or not), looked up after a
                    // reconnect, deleted when one is recreated after a gap, and pulled from.
                    js(&format!("CONSUMER.CREATE.{events}")),
                    js(&format!("CONSUMER.CREATE.{events}.>")),
                    js(&format!("CONSUMER.INFO.{events}.>")),
                    js(&format!("CONSUMER.DELETE.{events}.>")),
                    js(&format!("CONSUMER.MSG.NEXT.{events}.>")),
                    // The photos' object store: opened, objects written (chunks, then their
                    // metadata) and read by direct gets. Never purged or deleted: an object's
                    // name is its content's hash, so it is never overwritten either.
                    js(&format!("STREAM.INFO.{}", streams.photos)),
                    js(&format!("DIRECT.GET.{}", streams.photos)),
                    js(&format!("DIRECT.GET.{}.>", streams.photos)),
                    format!("$O.{}.C.>", streams.photos_bucket),
                    format!("$O.{}.M.>", streams.photos_bucket),
                ]),
                subscribe: Some(vec![inbox]),
                allow_responses: false,
            }
        }
        Service::Admin => StaticPermissions {
            publish: None,
            subscribe: None,
            allow_responses: false,
        },
        Service::Callout => StaticPermissions {
            publish: Some(Vec::new()),
            subscribe: Some(vec![crate::callout::SUBJECT.into()]),
            allow_responses: true,
        },
        Service::Revoker => StaticPermissions {
            publish: Some(vec![crate::callout::KICK_SUBJECTS.into()]),
            subscribe: Some(vec![inbox]),
            allow_responses: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn org() -> OrgIndex {
        OrgIndex::build(whistle_domain::ordos::dataset()).unwrap()
    }

    fn token(role: Role, area: &str, department: Option<&str>, person: Option<&str>) -> Token {
        Token {
            id: uuid::Uuid::now_v7(),
            role,
            area_code: area.into(),
            department_code: department.map(Into::into),
            person_id: person.map(Into::into),
            device_id: None,
            label: "t".into(),
            created_at: Utc::now(),
            expires_at: None,
            revoked_at: None,
        }
    }

    const GRID: &str = "150602001001001";

    #[test]
    fn a_grid_worker_publishes_its_grids_reports_and_its_own_commands_only() {
        let id = Identity::from_token(&token(
            Role::GridWorker,
            GRID,
            None,
            Some("gw-150602001001001"),
        ))
        .unwrap();
        let p = permissions(&id, &org());
        assert_eq!(
            p.publish,
            [
                "whistle.report.150602.150602001.150602001001.150602001001001",
                "whistle.cmd.*.gw-150602001001001"
            ]
        );
        assert_eq!(p.subscribe, ["_INBOX_gw-150602001001001.>"]);
        assert_eq!(
            p.deny_publish,
            [
                "whistle.cmd.decide_extension.gw-150602001001001",
                "whistle.cmd.dispute.gw-150602001001001",
                "whistle.cmd.decide_dispute.gw-150602001001001",
                "whistle.cmd.submit_assist.gw-150602001001001",
                "whistle.cmd.release_assist.gw-150602001001001",
                "whistle.cmd.decide_ledger.gw-150602001001001",
                "whistle.cmd.review_ledger.gw-150602001001001",
                "whistle.cmd.adopt.gw-150602001001001",
                "whistle.cmd.complete_milestone.gw-150602001001001",
                "whistle.cmd.endorse.gw-150602001001001",
                "whistle.cmd.onboard_person.gw-150602001001001",
                "whistle.cmd.change_person.gw-150602001001001",
                "whistle.cmd.offboard_person.gw-150602001001001",
                "whistle.cmd.offer_to_volunteers.gw-150602001001001",
                "whistle.cmd.claim_offer.gw-150602001001001",
                "whistle.cmd.release_offer.gw-150602001001001",
                "whistle.cmd.complete_offer.gw-150602001001001",
                "whistle.cmd.confirm_offer.gw-150602001001001",
                "whistle.cmd.rate_offer.gw-150602001001001",
                "whistle.cmd.withdraw_offer.gw-150602001001001"
            ]
        );
        assert_eq!(id.inbox_prefix(), "_INBOX_gw-150602001001001");
        assert_eq!(id.name(), "gw-150602001001001");
    }

    #[test]
    fn a_grid_worker_token_must_name_a_grid_and_a_person() {
        let not_grid = token(Role::GridWorker, "150602001", None, Some("gw-x"));
        assert!(Identity::from_token(&not_grid)
            .unwrap_err()
            .why
            .contains("not a grid"));
        let no_person = token(Role::GridWorker, GRID, None, None);
        assert!(Identity::from_token(&no_person).is_err());
        let bad_area = token(Role::Operator, "15060", None, Some("op-x"));
        assert!(Identity::from_token(&bad_area).is_err());
    }

    #[test]
    fn a_member_sends_only_its_own_claims_give_backs_and_completions() {
        let id = Identity::from_token(&token(
            Role::Member,
            "150602001001",
            None,
            Some("pm-150602001001-0001"),
        ))
        .unwrap();
        let p = permissions(&id, &org());
        assert_eq!(
            p.publish,
            [
                "whistle.cmd.claim_offer.pm-150602001001-0001",
                "whistle.cmd.release_offer.pm-150602001001-0001",
                "whistle.cmd.complete_offer.pm-150602001001-0001"
            ]
        );
        assert_eq!(p.subscribe, ["_INBOX_pm-150602001001-0001.>"]);
        assert!(p.deny_publish.is_empty());
        let not_community = token(Role::Member, "150602001", None, Some("pm-x"));
        assert!(Identity::from_token(&not_community)
            .unwrap_err()
            .why
            .contains("not a community"));
        assert!(Identity::from_token(&token(Role::Member, "150602001001", None, None)).is_err());
    }

    #[test]
    fn a_leader_publishes_its_endorsements_and_comments_only() {
        let id = Identity::from_token(&token(Role::Leader, "150602", None, Some("ld-150602-01")))
            .unwrap();
        let p = permissions(&id, &org());
        assert_eq!(
            p.publish,
            [
                "whistle.cmd.endorse.ld-150602-01",
                "whistle.cmd.comment.ld-150602-01"
            ]
        );
        assert_eq!(p.subscribe, ["_INBOX_ld-150602-01.>"]);
        assert!(p.deny_publish.is_empty());
        let nobody = token(Role::Leader, "150602", None, None);
        assert!(Identity::from_token(&nobody).is_err());
    }

    #[test]
    fn a_device_publishes_its_grids_reports_only() {
        let mut device = token(Role::Device, GRID, None, None);
        device.device_id = Some("wl-0001".into());
        let id = Identity::from_token(&device).unwrap();
        let p = permissions(&id, &org());
        assert_eq!(
            p.publish,
            ["whistle.report.150602.150602001.150602001001.150602001001001.device"]
        );
        assert_eq!(p.subscribe, [format!("{}.>", id.inbox_prefix())]);
        assert_eq!(id.name(), "device-wl-0001");
        let mut not_grid = device.clone();
        not_grid.area_code = "150602001".into();
        assert!(Identity::from_token(&not_grid).is_err());
        device.device_id = None;
        assert!(Identity::from_token(&device).is_err());
    }

    #[test]
    fn open311_keys_get_no_nats_identity() {
        for role in [Role::Open311, Role::Hotline] {
            let key = token(role, "150602", None, None);
            assert!(Identity::from_token(&key)
                .unwrap_err()
                .why
                .contains("Open311 door only"));
        }
    }

    #[test]
    fn a_liaison_reads_its_departments_tasks() {
        let id = Identity::from_token(&token(
            Role::Liaison,
            "150602",
            Some("150602-urban_management"),
            Some("li-150602-urban_management"),
        ))
        .unwrap();
        let p = permissions(&id, &org());
        assert_eq!(p.publish, ["whistle.cmd.*.li-150602-urban_management"]);
        assert_eq!(
            p.deny_publish,
            [
                "whistle.cmd.decide_extension.li-150602-urban_management",
                "whistle.cmd.decide_dispute.li-150602-urban_management",
                "whistle.cmd.release_assist.li-150602-urban_management",
                "whistle.cmd.decide_ledger.li-150602-urban_management",
                "whistle.cmd.review_ledger.li-150602-urban_management",
                "whistle.cmd.adopt.li-150602-urban_management",
                "whistle.cmd.endorse.li-150602-urban_management",
                "whistle.cmd.onboard_person.li-150602-urban_management",
                "whistle.cmd.change_person.li-150602-urban_management",
                "whistle.cmd.offboard_person.li-150602-urban_management",
                "whistle.cmd.offer_to_volunteers.li-150602-urban_management",
                "whistle.cmd.claim_offer.li-150602-urban_management",
                "whistle.cmd.release_offer.li-150602-urban_management",
                "whistle.cmd.complete_offer.li-150602-urban_management",
                "whistle.cmd.confirm_offer.li-150602-urban_management",
                "whistle.cmd.rate_offer.li-150602-urban_management",
                "whistle.cmd.withdraw_offer.li-150602-urban_management"
            ]
        );
        assert_eq!(
            p.subscribe,
            [
                "whistle.task.150602-urban_management.>",
                "_INBOX_li-150602-urban_management.>"
            ]
        );
    }

    #[test]
    fn a_district_operator_reads_its_districts_events_and_departments() {
        let org = org();
        let id = Identity::Operator {
            person: "op-150602".parse().unwrap(),
            area: "150602".parse().unwrap(),
        };
        let p = permissions(&id, &org);
        assert_eq!(p.publish, ["whistle.cmd.*.op-150602"]);
        assert_eq!(
            p.deny_publish,
            [
                "whistle.cmd.request_extension.op-150602",
                "whistle.cmd.dispute.op-150602",
                "whistle.cmd.submit_assist.op-150602",
                "whistle.cmd.propose_ledger.op-150602",
                "whistle.cmd.endorse.op-150602",
                "whistle.cmd.claim_offer.op-150602",
                "whistle.cmd.release_offer.op-150602",
                "whistle.cmd.complete_offer.op-150602"
            ]
        );
        assert_eq!(p.subscribe[0], "whistle.event.150602.>");
        assert_eq!(p.subscribe.last().unwrap(), "_INBOX_op-150602.>");
        let tasks: Vec<&String> = p.subscribe[1..p.subscribe.len() - 1].iter().collect();
        let expected = org
            .departments()
            .filter(|d| d.area.as_str() == "150602")
            .count();
        assert!(expected > 0);
        assert_eq!(tasks.len(), expected);
        assert!(tasks
            .iter()
            .all(|s| s.starts_with("whistle.task.150602-") && s.ends_with(".>")));
        assert!(!p.subscribe.iter().any(|s| s.contains("150600-")));
    }

    #[test]
    fn the_city_operator_reads_everything_of_the_city() {
        let id = Identity::Operator {
            person: "op-150600".parse().unwrap(),
            area: "150600".parse().unwrap(),
        };
        let p = permissions(&id, &org());
        assert_eq!(
            p.subscribe,
            ["whistle.event.>", "whistle.task.>", "_INBOX_op-150600.>"]
        );
    }

    #[test]
    fn a_viewer_never_publishes_and_reads_its_scope() {
        let area_viewer = token(Role::Viewer, "150602", None, None);
        let id = Identity::from_token(&area_viewer).unwrap();
        let p = permissions(&id, &org());
        assert!(p.publish.is_empty());
        let inbox = format!("_INBOX_{}.>", area_viewer.id.simple());
        assert_eq!(p.subscribe, ["whistle.event.150602.>".to_owned(), inbox]);

        let department_viewer = token(
            Role::Viewer,
            "150602",
            Some("150602-urban_management"),
            None,
        );
        let p = permissions(&Identity::from_token(&department_viewer).unwrap(), &org());
        assert!(p.publish.is_empty());
        assert_eq!(p.subscribe[0], "whistle.task.150602-urban_management.>");
    }

    #[test]
    fn below_a_street_events_are_read_at_street_grain() {
        assert_eq!(
            subject::area_events(&"150602001".parse().unwrap()),
            "whistle.event.150602.150602001.>"
        );
        assert_eq!(
            subject::area_events(&"150602001001".parse().unwrap()),
            "whistle.event.150602.150602001.>"
        );
    }

    #[test]
    fn no_persons_grant_reaches_system_subjects_or_shared_inboxes() {
        let org = org();
        let identities = [
            Identity::GridWorker {
                person: "gw-150602001001001".parse().unwrap(),
                grid: GRID.parse().unwrap(),
            },
            Identity::Liaison {
                person: "li-150602-urban_management".parse().unwrap(),
                department: "150602-urban_management".parse().unwrap(),
            },
            Identity::Operator {
                person: "op-150600".parse().unwrap(),
                area: "150600".parse().unwrap(),
            },
            Identity::Viewer {
                token: uuid::Uuid::now_v7(),
                area: "150600".parse().unwrap(),
                department: None,
            },
        ];
        for id in &identities {
            let p = permissions(id, &org);
            for subject in p.publish.iter().chain(&p.subscribe) {
                assert!(subject.starts_with("whistle.") || subject.starts_with("_INBOX_"));
                assert_ne!(subject, ">");
                assert!(!subject.starts_with("_INBOX."), "{subject}");
            }
            assert!(!p
                .publish
                .iter()
                .any(|s| s.starts_with("whistle.event") || s.starts_with("whistle.task")));
            assert!(!p.publish.iter().any(|s| s.starts_with("_INBOX")));
        }
    }

    #[test]
    fn a_dotted_person_cannot_read_anothers_inbox() {
        let inbox = |person: &str| {
            Identity::Operator {
                person: person.parse().unwrap(),
                area: "150600".parse().unwrap(),
            }
            .inbox_prefix()
        };
        let (a, ab) = (inbox("a"), inbox("a.b"));
        assert_eq!(ab, "_INBOX_a~b");
        assert!(!ab.starts_with(&format!("{a}.")));
    }

    #[test]
    fn only_dispatch_answers_requests_and_only_admin_is_unrestricted() {
        let streams = StreamNames::default();
        for service in Service::ALL {
            let p = service_permissions(service, &streams);
            assert_eq!(
                p.allow_responses,
                matches!(service, Service::Dispatch | Service::Callout)
            );
            assert_eq!(p.publish.is_none(), service == Service::Admin);
            for subject in p.publish.iter().flatten() {
                assert!(!subject.starts_with("_INBOX"), "{subject}");
                assert!(
                    !subject.contains("STREAM.CREATE")
                        && !subject.contains("STREAM.DELETE")
                        && !subject.contains("STREAM.UPDATE"),
                    "{service:?} {subject}"
                );
                // The one purge: dispatch's of erased photos' chunks.
                assert!(
                    !subject.contains("STREAM.PURGE")
                        || (service == Service::Dispatch
                            && subject == "$JS.API.STREAM.PURGE.OBJ_WHISTLE_PHOTOS"),
                    "{service:?} {subject}"
                );
            }
        }
        let query = service_permissions(Service::Query, &streams);
        assert!(!query
            .publish
            .unwrap()
            .iter()
            .any(|s| s.starts_with("whistle.event") || s.starts_with("whistle.task")));
    }

    #[test]
    fn only_the_query_service_stores_and_reads_photos_and_only_dispatch_erases_them() {
        let streams = StreamNames::default();
        let callout = service_permissions(Service::Callout, &streams);
        assert!(!callout
            .publish
            .iter()
            .flatten()
            .any(|s| s.contains("PHOTOS") || s.starts_with("$O.")));
        // Dispatch removes erased photos: it reaches their metadata and the purge, never a
        // photo's chunks (neither writing nor reading them).
        let dispatch = service_permissions(Service::Dispatch, &streams)
            .publish
            .unwrap();
        let photos: Vec<&str> = dispatch
            .iter()
            .map(String::as_str)
            .filter(|s| s.contains("PHOTOS"))
            .collect();
        assert_eq!(
            photos,
            [
                "$JS.API.STREAM.INFO.OBJ_WHISTLE_PHOTOS",
                "$JS.API.DIRECT.GET.OBJ_WHISTLE_PHOTOS.$O.WHISTLE_PHOTOS.M.>",
                "$O.WHISTLE_PHOTOS.M.>",
                "$JS.API.STREAM.PURGE.OBJ_WHISTLE_PHOTOS",
            ]
        );
        let query = service_permissions(Service::Query, &streams)
            .publish
            .unwrap();
        assert!(query.contains(&"$O.WHISTLE_PHOTOS.C.>".to_owned()));
        assert!(query.contains(&"$JS.API.DIRECT.GET.OBJ_WHISTLE_PHOTOS.>".to_owned()));
        assert!(!query
            .iter()
            .any(|s| s.contains("MSG.DELETE") || s.contains("PURGE")));
    }
}
