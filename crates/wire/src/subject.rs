//! Every subject of the contract, built and parsed here and nowhere else:
//!
//! | what | subject |
//! | --- | --- |
//! | report | `whistle.report.{district}.{street}.{community}.{grid}` |
//! | report of another channel | `whistle.report.{district}.{street}.{community}.{grid}.{channel}` |
//! | incident event | `whistle.event.{district}.{street}.{kind}` |
//! | task event | `whistle.task.{department}.{kind}` |
//! | command | `whistle.cmd.{verb}.{person}` (the acting person) |
//! | rejected report | `whistle.rejected.{reason}` |

use whistle_domain::{AreaCode, Level};
use whistle_proto::v1;

use crate::{kind, Error, Verb};

/// Every report: the subjects of `WHISTLE_REPORTS` and of dispatch's consumer.
pub const ALL_REPORTS: &str = "whistle.report.>";
/// Every incident event.
pub const ALL_INCIDENT_EVENTS: &str = "whistle.event.>";
/// Every task event.
pub const ALL_TASK_EVENTS: &str = "whistle.task.>";
/// Every rejected report: the subjects of `WHISTLE_REJECTED`.
pub const ALL_REJECTED: &str = "whistle.rejected.>";
/// The micro-service group the command endpoints (one per [`Verb`]) are added to.
pub const COMMAND_GROUP: &str = "whistle.cmd";

/// The district and street token of an event that has no known place (a report rejected for its
/// subject).
pub const UNKNOWN_AREA: &str = "unknown";

/// The subject a report of `grid` is published on.
pub fn report(grid: &AreaCode) -> String {
    let at = |level| {
        grid.at_level(level)
            .expect("a grid has every ancestor")
            .to_string()
    };
    format!(
        "whistle.report.{}.{}.{}.{}",
        at(Level::District),
        at(Level::Street),
        at(Level::Community),
        grid
    )
}

/// The subject a report of `grid` that came in through `channel` is published on: a grid
/// worker's own report on the grid's subject ([`report`]), any other channel's on the grid's
/// subject plus the channel's token. Only the query service (the Open311 door) and the grid's
/// devices (`.device`, docs/devices.md) may publish below a grid's subject, so where a report was
/// published proves its channel: a grid worker cannot pass its report off as a 12345 work order
/// or a sensor's, nor a device its reading off as a person's.
pub fn channel_report(grid: &AreaCode, channel: v1::Channel) -> String {
    match channel_token(channel) {
        Some(token) => format!("{}.{token}", report(grid)),
        None => report(grid),
    }
}

/// The last subject token of a report of `channel`; none for a grid worker's own.
fn channel_token(channel: v1::Channel) -> Option<&'static str> {
    match channel {
        v1::Channel::Unspecified | v1::Channel::GridWorker => None,
        v1::Channel::Open311 => Some("open311"),
        v1::Channel::Hotline12345 => Some("hotline_12345"),
        v1::Channel::Device => Some("device"),
    }
}

/// What a report subject names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportSubject {
    pub grid: AreaCode,
    /// [`v1::Channel::GridWorker`] on a grid's own subject.
    pub channel: v1::Channel,
}

/// The grid and channel a report subject names, after checking that each token is the parent
/// of the next. The message of an [`Error::Subject`] says what is wrong, for the rejection.
pub fn parse_report(subject: &str) -> Result<ReportSubject, Error> {
    let tokens: Vec<&str> = subject.split('.').collect();
    let (place, channel) = match tokens.as_slice() {
        [place @ .., channel] if place.len() == 6 => {
            let channel = [
                v1::Channel::Open311,
                v1::Channel::Hotline12345,
                v1::Channel::Device,
            ]
            .into_iter()
            .find(|c| channel_token(*c) == Some(*channel))
            .ok_or_else(|| {
                Error::Subject(format!(
                    "subject {subject:?} ends in {channel:?}, which is no report channel \
                         (open311, hotline_12345, device)"
                ))
            })?;
            (place, channel)
        }
        place => (place, v1::Channel::GridWorker),
    };
    let [whistle, report, district, street, community, grid] = place else {
        return Err(Error::Subject(format!(
            "subject {subject:?} must be whistle.report.{{district}}.{{street}}.{{community}}.{{grid}}"
        )));
    };
    if (*whistle, *report) != ("whistle", "report") {
        return Err(Error::Subject(format!(
            "subject {subject:?} must start with whistle.report."
        )));
    }
    let grid: AreaCode = grid
        .parse()
        .map_err(|e| Error::Subject(format!("subject grid token: {e}")))?;
    if grid.level() != Level::Grid {
        return Err(Error::Subject(format!(
            "subject grid token {grid} is not a 15-digit grid code"
        )));
    }
    for (level, token) in [
        (Level::District, district),
        (Level::Street, street),
        (Level::Community, community),
    ] {
        let expected = grid.at_level(level).expect("grid has every ancestor");
        if expected.as_str() != *token {
            return Err(Error::Subject(format!(
                "subject {} token {token:?} does not contain grid {grid} (expected {expected})",
                level.as_str()
            )));
        }
    }
    Ok(ReportSubject { grid, channel })
}

/// `whistle.event.{district}.{street}.{kind}`; an empty district or street is [`UNKNOWN_AREA`].
pub fn incident_event(district: &str, street: &str, kind: &str) -> String {
    let or_unknown = |s: &str| if s.is_empty() { UNKNOWN_AREA } else { s }.to_owned();
    format!(
        "whistle.event.{}.{}.{kind}",
        or_unknown(district),
        or_unknown(street)
    )
}

/// `whistle.task.{department}.{kind}`.
pub fn task_event(department: &str, kind: &str) -> String {
    format!("whistle.task.{department}.{kind}")
}

/// Where an event was published, read back from its subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventSubject<'a> {
    Incident {
        district: &'a str,
        street: &'a str,
        kind: &'a str,
    },
    Task {
        department: &'a str,
        kind: &'a str,
    },
}

/// Parses `whistle.event.{district}.{street}.{kind}` or `whistle.task.{department}.{kind}`.
pub fn parse_event(subject: &str) -> Result<EventSubject<'_>, Error> {
    let bad = || Error::Subject(format!("{subject:?} is not an event subject"));
    let dotted = |kind: &str| {
        kind.split_once('.')
            .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty() && !b.contains('.'))
    };
    if let Some(rest) = subject.strip_prefix("whistle.event.") {
        let mut tokens = rest.splitn(3, '.');
        let (Some(district), Some(street), Some(kind)) =
            (tokens.next(), tokens.next(), tokens.next())
        else {
            return Err(bad());
        };
        if district.is_empty() || street.is_empty() || !dotted(kind) {
            return Err(bad());
        }
        return Ok(EventSubject::Incident {
            district,
            street,
            kind,
        });
    }
    if let Some(rest) = subject.strip_prefix("whistle.task.") {
        let (department, kind) = rest.split_once('.').ok_or_else(bad)?;
        if department.is_empty() || !dotted(kind) {
            return Err(bad());
        }
        return Ok(EventSubject::Task { department, kind });
    }
    Err(bad())
}

/// `whistle.cmd.{verb}.{person}`: a command is sent on its acting person's subject, so a
/// connection allowed only its own person's subjects cannot act as anyone else.
pub fn command(verb: Verb, person: &str) -> String {
    format!("{COMMAND_GROUP}.{verb}.{person}")
}

/// What dispatch's endpoint of `verb` serves: every person's commands of that verb.
pub fn command_endpoint(verb: Verb) -> String {
    format!("{COMMAND_GROUP}.{verb}.>")
}

/// The verb and the acting person of a command subject. The person is everything after the verb
/// (person ids may contain dots); a subject without one is not a command.
pub fn parse_command(subject: &str) -> Result<(Verb, &str), Error> {
    let bad = || {
        Error::Subject(format!(
            "{subject:?} is not whistle.cmd.{{verb}}.{{person}}"
        ))
    };
    let rest = subject
        .strip_prefix(COMMAND_GROUP)
        .and_then(|rest| rest.strip_prefix('.'))
        .ok_or_else(bad)?;
    let (verb, person) = rest.split_once('.').ok_or_else(bad)?;
    if !is_person_token(person) {
        return Err(bad());
    }
    Ok((verb.parse()?, person))
}

/// Whether `person` can stand as the person of a subject: dot-separated non-empty tokens without
/// whitespace or wildcards.
pub fn is_person_token(person: &str) -> bool {
    !person.is_empty()
        && person.split('.').all(|token| {
            !token.is_empty()
                && !token
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '*' || c == '>')
        })
}

/// Every verb's commands acted by `person`: what a person's connection may publish.
pub fn person_commands(person: &str) -> String {
    format!("{COMMAND_GROUP}.*.{person}")
}

/// Every command of every person: what dispatch serves.
pub const ALL_COMMANDS: &str = "whistle.cmd.>";

/// A grid's report subject as a permission names it (the same as [`report`]).
pub fn grid_reports(grid: &AreaCode) -> String {
    report(grid)
}

/// The subject a device of `grid` publishes its reports on: the grid's plus `.device`.
pub fn device_reports(grid: &AreaCode) -> String {
    channel_report(grid, v1::Channel::Device)
}

/// Every event of `area` as a subscription filter. Incident events carry district and street,
/// so an area below a street reads its whole street's events: the finest grain subjects carry.
pub fn area_events(area: &AreaCode) -> String {
    match area.level() {
        Level::City => ALL_INCIDENT_EVENTS.into(),
        Level::District => format!("whistle.event.{area}.>"),
        _ => {
            let district = area.at_level(Level::District).expect("below a district");
            let street = area.at_level(Level::Street).expect("at or below a street");
            format!("whistle.event.{district}.{street}.>")
        }
    }
}

/// Every task event of one department (a department code, or `*`).
pub fn department_tasks(department: &str) -> String {
    format!("whistle.task.{department}.>")
}

/// `whistle.rejected.{reason}`.
pub fn rejected(reason: &str) -> String {
    format!("whistle.rejected.{reason}")
}

/// The reason of a rejected-report subject.
pub fn parse_rejected(subject: &str) -> Result<&str, Error> {
    subject
        .strip_prefix("whistle.rejected.")
        .filter(|reason| !reason.is_empty() && !reason.contains('.'))
        .ok_or_else(|| Error::Subject(format!("{subject:?} is not a rejected-report subject")))
}

/// The narrowest stream filter for events of `kind` inside `area` (none: the city). Incident
/// events carry district and street in their subject, task events do not; a filter may match
/// events of neighbouring areas below the street, so readers still check [`event_in_area`].
pub fn event_filter(area: Option<&AreaCode>, kind: &str) -> String {
    if kind::is_task(kind) {
        return task_event("*", kind);
    }
    match area.map(|a| (a.level(), a)) {
        None | Some((Level::City, _)) => incident_event("*", "*", kind),
        Some((Level::District, a)) => incident_event(a.as_str(), "*", kind),
        Some((_, a)) => {
            let district = a.at_level(Level::District).expect("below district");
            let street = a.at_level(Level::Street).expect("at or below street");
            incident_event(district.as_str(), street.as_str(), kind)
        }
    }
}

/// Whether an event of `WHISTLE_EVENTS` happened inside `area`, judged by the most precise org
/// code it carries. Events with no place (a rejected report with a bad subject) belong to the
/// city alone.
pub fn event_in_area(area: &AreaCode, event: &v1::Event) -> bool {
    if area.level() == Level::City {
        return true;
    }
    [
        &event.grid_code,
        &event.community_code,
        &event.street_code,
        &event.district_code,
    ]
    .into_iter()
    .find(|code| !code.is_empty())
    .is_some_and(|code| code.starts_with(area.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBJECT: &str = "whistle.report.150602.150602001.150602001001.150602001001001";

    #[test]
    fn report_subject_names_every_level() {
        let grid = "150602001002003".parse().unwrap();
        assert_eq!(
            report(&grid),
            "whistle.report.150602.150602001.150602001002.150602001002003"
        );
    }

    #[test]
    fn report_subjects_round_trip() {
        let parsed = parse_report(SUBJECT).unwrap();
        assert_eq!(parsed.channel, v1::Channel::GridWorker);
        assert_eq!(report(&parsed.grid), SUBJECT);
        for channel in [
            v1::Channel::Open311,
            v1::Channel::Hotline12345,
            v1::Channel::Device,
        ] {
            let subject = channel_report(&parsed.grid, channel);
            assert!(subject.starts_with(&format!("{SUBJECT}.")), "{subject}");
            let back = parse_report(&subject).unwrap();
            assert_eq!((back.grid, back.channel), (parsed.grid.clone(), channel));
        }
        assert_eq!(
            channel_report(&parsed.grid, v1::Channel::GridWorker),
            SUBJECT
        );
        assert_eq!(
            channel_report(&parsed.grid, v1::Channel::Unspecified),
            SUBJECT
        );
    }

    #[test]
    fn subjects_must_name_the_grid_and_its_ancestors() {
        for bad in [
            "whistle.report.150602.150602001.150602001001",
            "whistle.report.150602.150602002.150602001001.150602001001001",
            "whistle.event.150602.150602001.150602001001.150602001001001",
            "whistle.report.150602.150602001.150602001001.150602001001001.extra",
            "whistle.report.150602.150602001.150602001001.150602001001001.grid_worker",
            "whistle.report.150602.150602001.150602001001.150602001001001.open311.more",
            "whistle.report.150602.150602001.150602001.150602001.open311",
            "whistle.report.150602.150602001.150602001.150602001",
        ] {
            assert!(matches!(parse_report(bad), Err(Error::Subject(_))), "{bad}");
        }
    }

    #[test]
    fn event_subjects_round_trip() {
        let subject = incident_event("150602", "150602001", kind::INCIDENT_WHISTLED);
        assert_eq!(
            parse_event(&subject).unwrap(),
            EventSubject::Incident {
                district: "150602",
                street: "150602001",
                kind: "incident.whistled"
            }
        );
        let subject = task_event("150602001-housing", kind::TASK_ACCEPTED);
        assert_eq!(
            parse_event(&subject).unwrap(),
            EventSubject::Task {
                department: "150602001-housing",
                kind: "task.accepted"
            }
        );
        assert!(parse_event("whistle.event.150602.incident.whistled").is_err());
        assert!(parse_event("whistle.report.1.2.3.4").is_err());
    }

    #[test]
    fn an_event_without_a_place_is_unknown() {
        assert_eq!(
            incident_event("", "", kind::REPORT_REJECTED),
            "whistle.event.unknown.unknown.report.rejected"
        );
    }

    #[test]
    fn command_and_rejected_subjects_round_trip() {
        for verb in Verb::ALL {
            for person in ["op-150600", "a.b.c"] {
                assert_eq!(
                    parse_command(&command(verb, person)).unwrap(),
                    (verb, person)
                );
            }
            assert_eq!(command_endpoint(verb), format!("whistle.cmd.{verb}.>"));
        }
        assert!(parse_command("whistle.cmd.fly.op-1").is_err());
        assert!(parse_command("whistle.cmd.accept").is_err());
        assert!(parse_command("whistle.cmd.accept.").is_err());
        assert!(parse_command("whistle.cmd.accept.a..b").is_err());
        assert!(parse_command("whistle.cmdaccept.op-1").is_err());
        assert_eq!(person_commands("gw-1"), "whistle.cmd.*.gw-1");
        assert_eq!(parse_rejected(&rejected("too_large")).unwrap(), "too_large");
        assert!(parse_rejected("whistle.rejected.").is_err());
    }

    #[test]
    fn permission_filters_cover_an_area_at_street_grain() {
        let area = |code: &str| code.parse::<AreaCode>().unwrap();
        assert_eq!(area_events(&area("150600")), "whistle.event.>");
        assert_eq!(area_events(&area("150602")), "whistle.event.150602.>");
        assert_eq!(
            area_events(&area("150602001001")),
            "whistle.event.150602.150602001.>"
        );
        assert_eq!(department_tasks("150602-x"), "whistle.task.150602-x.>");
    }

    #[test]
    fn filters_narrow_by_kind_and_area() {
        assert_eq!(
            event_filter(None, "incident.reported"),
            "whistle.event.*.*.incident.reported"
        );
        let community: AreaCode = "150602001001".parse().unwrap();
        assert_eq!(
            event_filter(Some(&community), "incident.whistled"),
            "whistle.event.150602.150602001.incident.whistled"
        );
        let district: AreaCode = "150602".parse().unwrap();
        assert_eq!(
            event_filter(Some(&district), "incident.whistled"),
            "whistle.event.150602.*.incident.whistled"
        );
        assert_eq!(
            event_filter(Some(&community), "task.accepted"),
            "whistle.task.*.task.accepted"
        );
        let city: AreaCode = "150600".parse().unwrap();
        assert_eq!(
            event_filter(Some(&city), "incident.reported"),
            "whistle.event.*.*.incident.reported"
        );
        assert_eq!(
            event_filter(Some(&district), "task.accepted"),
            "whistle.task.*.task.accepted"
        );
    }
}
