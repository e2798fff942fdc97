//! Validation of inbound reports: pure, no I/O, `now` passed in.
//!
//! A report is accepted only if every check passes; otherwise it is rejected with exactly one
//! machine-readable [`Reason`] (the first failed check) and a message a person can act on.

use chrono::{DateTime, TimeDelta, Utc};
use prost::Message as _;
use whistle_domain::{
    devices::DeviceKind,
    photo::{PhotoId, MAX_PHOTOS},
    policy::Policy,
    AreaCode, CategoryCode, Level, OrgIndex, PersonId, ReportId, Role,
};
use whistle_proto::v1;
use whistle_wire::subject;

pub use crate::devices::Registry;
use crate::devices::Status;

/// Reports larger than this are refused before decoding.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_DESCRIPTION_CHARS: usize = 4000;
pub const MAX_ADDRESS_CHARS: usize = 200;
pub const MAX_ATTACHMENTS: usize = 20;
pub const MAX_URI_CHARS: usize = 2048;
pub const MAX_CAPTION_CHARS: usize = 200;
pub const MAX_CONTACT_CHARS: usize = 64;
/// The other system's id of a report from another channel (a 12345 work order number).
pub const MAX_CHANNEL_REF_CHARS: usize = 64;
/// Device clocks run ahead; more than this in the future is refused.
pub const MAX_CLOCK_SKEW: TimeDelta = TimeDelta::minutes(5);
/// A phone that was offline may send late, but not later than this.
pub const MAX_REPORT_AGE: TimeDelta = TimeDelta::days(7);
pub const MAX_OCCURRENCE_AGE: TimeDelta = TimeDelta::days(30);

/// Why a report was refused; the string form is the last token of `whistle.rejected.{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    TooLarge,
    InvalidSubject,
    DecodeError,
    MsgIdMismatch,
    InvalidReportId,
    MissingField,
    FieldTooLong,
    InvalidLocation,
    TooManyAttachments,
    InvalidTimestamp,
    InvalidUrgency,
    UnknownGrid,
    GridMismatch,
    /// The report claims another channel than the one its subject proves (a grid worker's own
    /// subject for its own reports, the grid's subject plus a channel token for the Open311 door's).
    ChannelMismatch,
    UnknownReporter,
    ReporterNotInGrid,
    UnknownCategory,
    /// A photo id is not a SHA-256 in lowercase hex, or there are more than `MAX_PHOTOS`.
    InvalidPhoto,
    /// The category's policy requires a photo and the report has none.
    PhotoRequired,
    /// A text field holds a control character (NUL, another C0 or a C1 control; only the
    /// description may hold newlines and tabs).
    ControlCharacter,
    /// Recording the report kept failing on its own, delivery after delivery (not a validation
    /// outcome: the report was valid, the database refused it).
    ProcessingFailed,
    /// A device sent past its rate (the policy's burst at once, so many a minute): refused,
    /// never queued (not a validation outcome: intake's per-device rules, docs/devices.md).
    DeviceRateLimited,
}

impl Reason {
    pub const ALL: [Reason; 22] = [
        Reason::TooLarge,
        Reason::InvalidSubject,
        Reason::DecodeError,
        Reason::MsgIdMismatch,
        Reason::InvalidReportId,
        Reason::MissingField,
        Reason::FieldTooLong,
        Reason::InvalidLocation,
        Reason::TooManyAttachments,
        Reason::InvalidTimestamp,
        Reason::InvalidUrgency,
        Reason::UnknownGrid,
        Reason::GridMismatch,
        Reason::ChannelMismatch,
        Reason::UnknownReporter,
        Reason::ReporterNotInGrid,
        Reason::UnknownCategory,
        Reason::InvalidPhoto,
        Reason::PhotoRequired,
        Reason::ControlCharacter,
        Reason::ProcessingFailed,
        Reason::DeviceRateLimited,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::TooLarge => "too_large",
            Reason::InvalidSubject => "invalid_subject",
            Reason::DecodeError => "decode_error",
            Reason::MsgIdMismatch => "msg_id_mismatch",
            Reason::InvalidReportId => "invalid_report_id",
            Reason::MissingField => "missing_field",
            Reason::FieldTooLong => "field_too_long",
            Reason::InvalidLocation => "invalid_location",
            Reason::TooManyAttachments => "too_many_attachments",
            Reason::InvalidTimestamp => "invalid_timestamp",
            Reason::InvalidUrgency => "invalid_urgency",
            Reason::UnknownGrid => "unknown_grid",
            Reason::GridMismatch => "grid_mismatch",
            Reason::ChannelMismatch => "channel_mismatch",
            Reason::UnknownReporter => "unknown_reporter",
            Reason::ReporterNotInGrid => "reporter_not_in_grid",
            Reason::UnknownCategory => "unknown_category",
            Reason::InvalidPhoto => "invalid_photo",
            Reason::PhotoRequired => "photo_required",
            Reason::ControlCharacter => "control_character",
            Reason::ProcessingFailed => "processing_failed",
            Reason::DeviceRateLimited => "device_rate_limited",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused report, with whatever could be read of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub reason: Reason,
    pub message: String,
    pub report_id: Option<String>,
    pub reporter_id: Option<String>,
    /// The area the subject names, when its codes parse.
    pub subject_grid: Option<AreaCode>,
}

/// A message as it arrived on `whistle.report.>`.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    pub subject: &'a str,
    pub payload: &'a [u8],
    /// `Content-Type: application/json` was set.
    pub json: bool,
    /// The `Nats-Msg-Id` header, if any.
    pub msg_id: Option<&'a str>,
    /// Take a grid subject's report of another channel on its word (`legacy_channel_subjects`).
    pub legacy_channels: bool,
}

/// A report that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidReport {
    pub report: v1::Report,
    pub report_id: ReportId,
    pub reporter_id: PersonId,
    pub grid: AreaCode,
    pub category: CategoryCode,
    pub urgency: v1::Urgency,
    pub occurred_at: Option<DateTime<Utc>>,
    pub reported_at: DateTime<Utc>,
    /// A registered device's report (channel `device`); `reporter_id` is the device's id.
    pub device: Option<DeviceReport>,
}

/// What a device's report says, for intake's per-device rules.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceReport {
    pub kind: DeviceKind,
    /// Its detection of the category ended (`Report.cleared`).
    pub cleared: bool,
}

impl ValidReport {
    pub fn area(&self, level: Level) -> AreaCode {
        self.grid
            .at_level(level)
            .expect("a grid code has every ancestor level")
    }
}

fn reject(reason: Reason, message: impl Into<String>) -> Rejection {
    Rejection {
        reason,
        message: message.into(),
        report_id: None,
        reporter_id: None,
        subject_grid: None,
    }
}

fn timestamp(ts: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(ts.seconds, u32::try_from(ts.nanos).ok()?)
}

fn check_len(field: &str, value: &str, max: usize) -> Result<(), Rejection> {
    let chars = value.chars().count();
    if chars > max {
        return Err(reject(
            Reason::FieldTooLong,
            format!("{field} has {chars} characters; at most {max} are allowed"),
        ));
    }
    Ok(())
}

/// Refuses C0 controls (NUL included), DEL and C1 controls, except the ones `allowed`: they
/// corrupt screens and logs, and PostgreSQL's text cannot hold NUL. The message names the field
/// and the character's position, never the value.
fn check_controls(field: &str, value: &str, allowed: &[char]) -> Result<(), Rejection> {
    match value
        .chars()
        .enumerate()
        .find(|(_, c)| c.is_control() && !allowed.contains(c))
    {
        Some((at, c)) => Err(reject(
            Reason::ControlCharacter,
            format!(
                "{field} holds the control character U+{:04X} at character {at}; only printable text is allowed{}",
                u32::from(c),
                if allowed.is_empty() { "" } else { " (and newlines and tabs)" }
            ),
        )),
        None => Ok(()),
    }
}

/// The report's text fields, checked for control characters; the description alone may hold
/// line breaks and tabs.
fn check_text(report: &v1::Report) -> Result<(), Rejection> {
    for (field, value) in [
        ("reporter_id", &report.reporter_id),
        ("grid_code", &report.grid_code),
        ("category", &report.category),
        ("title", &report.title),
        ("contact_phone", &report.contact_phone),
        ("channel_ref", &report.channel_ref),
    ] {
        check_controls(field, value, &[])?;
    }
    check_controls("description", &report.description, &['\n', '\t'])?;
    if let Some(location) = &report.location {
        check_controls("location.address", &location.address, &[])?;
    }
    for (i, attachment) in report.attachments.iter().enumerate() {
        check_controls(&format!("attachments[{i}].uri"), &attachment.uri, &[])?;
        check_controls(
            &format!("attachments[{i}].media_type"),
            &attachment.media_type,
            &[],
        )?;
        check_controls(
            &format!("attachments[{i}].caption"),
            &attachment.caption,
            &[],
        )?;
    }
    Ok(())
}

fn check_time(
    field: &str,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
    max_age: TimeDelta,
) -> Result<(), Rejection> {
    if at > now + MAX_CLOCK_SKEW {
        return Err(reject(
            Reason::InvalidTimestamp,
            format!(
                "{field} {at} is more than {} minutes in the future (now {now})",
                MAX_CLOCK_SKEW.num_minutes()
            ),
        ));
    }
    if at < now - max_age {
        return Err(reject(
            Reason::InvalidTimestamp,
            format!(
                "{field} {at} is more than {} days in the past (now {now})",
                max_age.num_days()
            ),
        ));
    }
    Ok(())
}

/// Decides whether an inbound message is a valid report, knowing no device (a device's report is
/// refused `unknown_reporter`).
pub fn validate(
    inbound: Inbound<'_>,
    org: &OrgIndex,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<ValidReport, Rejection> {
    validate_with(inbound, org, &Registry::default(), policy, now)
}

/// Decides whether an inbound message is a valid report, a device's checked against `devices`.
pub fn validate_with(
    inbound: Inbound<'_>,
    org: &OrgIndex,
    devices: &Registry,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<ValidReport, Rejection> {
    let subject_grid = subject::parse_report(inbound.subject).ok().map(|s| s.grid);
    let mut outcome = check(inbound, org, devices, policy, now);
    if let Err(rejection) = &mut outcome {
        rejection.subject_grid = subject_grid;
    }
    outcome
}

fn check(
    inbound: Inbound<'_>,
    org: &OrgIndex,
    devices: &Registry,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<ValidReport, Rejection> {
    if inbound.payload.len() > MAX_PAYLOAD_BYTES {
        return Err(reject(
            Reason::TooLarge,
            format!(
                "payload is {} bytes; at most {MAX_PAYLOAD_BYTES} are allowed",
                inbound.payload.len()
            ),
        ));
    }
    let mut subject = subject::parse_report(inbound.subject)
        .map_err(|e| reject(Reason::InvalidSubject, e.to_string()))?;
    let report = if inbound.json {
        whistle_proto::from_json::<v1::Report>(inbound.payload).map_err(|e| {
            reject(
                Reason::DecodeError,
                format!("not a whistle.v1.Report in proto3 JSON: {e}"),
            )
        })?
    } else {
        v1::Report::decode(inbound.payload).map_err(|e| {
            reject(
                Reason::DecodeError,
                format!("not a whistle.v1.Report in protobuf ({e}); set Content-Type: application/json for JSON"),
            )
        })?
    };
    // Ids are kept only when they are text PostgreSQL can store and a screen can show.
    let known = |mut r: Rejection| {
        let usable = |id: &String| !id.is_empty() && !id.chars().any(char::is_control);
        r.report_id = Some(&report.report_id).filter(|id| usable(id)).cloned();
        r.reporter_id = Some(&report.reporter_id).filter(|id| usable(id)).cloned();
        r
    };
    if inbound.legacy_channels && subject.channel == v1::Channel::GridWorker {
        // An older query replica's door, while upgrading across the channel subjects.
        subject.channel = match report.channel() {
            v1::Channel::Unspecified => v1::Channel::GridWorker,
            claimed => claimed,
        };
    }
    check_fields(&report, &subject, inbound.msg_id, org, devices, policy, now).map_err(known)
}

fn check_fields(
    report: &v1::Report,
    subject: &subject::ReportSubject,
    msg_id: Option<&str>,
    org: &OrgIndex,
    devices: &Registry,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<ValidReport, Rejection> {
    let report_id: ReportId = report
        .report_id
        .parse()
        .map_err(|e| reject(Reason::InvalidReportId, format!("report_id: {e}")))?;
    if let Some(msg_id) = msg_id {
        if msg_id != report_id.as_str() {
            return Err(reject(
                Reason::MsgIdMismatch,
                format!("header Nats-Msg-Id {msg_id:?} must equal report_id {report_id:?}"),
            ));
        }
    }
    check_text(report)?;
    for (field, value) in [
        ("reporter_id", &report.reporter_id),
        ("grid_code", &report.grid_code),
        ("category", &report.category),
        ("title", &report.title),
    ] {
        if value.trim().is_empty() {
            return Err(reject(Reason::MissingField, format!("{field} is required")));
        }
    }
    check_len("title", &report.title, MAX_TITLE_CHARS)?;
    check_len("description", &report.description, MAX_DESCRIPTION_CHARS)?;
    check_len("contact_phone", &report.contact_phone, MAX_CONTACT_CHARS)?;
    check_len("channel_ref", &report.channel_ref, MAX_CHANNEL_REF_CHARS)?;
    if let Some(location) = &report.location {
        check_len("location.address", &location.address, MAX_ADDRESS_CHARS)?;
        let finite = location.lat.is_finite() && location.lon.is_finite();
        if !finite
            || !(-90.0..=90.0).contains(&location.lat)
            || !(-180.0..=180.0).contains(&location.lon)
        {
            return Err(reject(
                Reason::InvalidLocation,
                format!(
                    "location ({}, {}) is not a WGS-84 latitude/longitude",
                    location.lat, location.lon
                ),
            ));
        }
    }
    if report.attachments.len() > MAX_ATTACHMENTS {
        return Err(reject(
            Reason::TooManyAttachments,
            format!(
                "{} attachments; at most {MAX_ATTACHMENTS} are allowed",
                report.attachments.len()
            ),
        ));
    }
    for (i, attachment) in report.attachments.iter().enumerate() {
        if attachment.uri.trim().is_empty() {
            return Err(reject(
                Reason::MissingField,
                format!("attachments[{i}].uri is required"),
            ));
        }
        check_len(
            &format!("attachments[{i}].uri"),
            &attachment.uri,
            MAX_URI_CHARS,
        )?;
        check_len(
            &format!("attachments[{i}].caption"),
            &attachment.caption,
            MAX_CAPTION_CHARS,
        )?;
    }

    let reported_at = report
        .reported_at
        .as_ref()
        .ok_or_else(|| reject(Reason::InvalidTimestamp, "reported_at is required"))?;
    let reported_at = timestamp(reported_at).ok_or_else(|| {
        reject(
            Reason::InvalidTimestamp,
            "reported_at is not a valid timestamp",
        )
    })?;
    check_time("reported_at", reported_at, now, MAX_REPORT_AGE)?;
    let occurred_at = match &report.occurred_at {
        None => None,
        Some(ts) => {
            let at = timestamp(ts).ok_or_else(|| {
                reject(
                    Reason::InvalidTimestamp,
                    "occurred_at is not a valid timestamp",
                )
            })?;
            check_time("occurred_at", at, now, MAX_OCCURRENCE_AGE)?;
            Some(at)
        }
    };
    let urgency = v1::Urgency::try_from(report.urgency).map_err(|_| {
        reject(
            Reason::InvalidUrgency,
            format!("urgency {} is not a known value", report.urgency),
        )
    })?;
    let urgency = if urgency == v1::Urgency::Unspecified {
        v1::Urgency::Normal
    } else {
        urgency
    };

    let grid: AreaCode = report
        .grid_code
        .parse()
        .map_err(|e| reject(Reason::UnknownGrid, format!("grid_code: {e}")))?;
    if grid != subject.grid {
        return Err(reject(
            Reason::GridMismatch,
            format!(
                "grid_code {grid} does not match the subject's grid {}",
                subject.grid
            ),
        ));
    }
    let claimed = match v1::Channel::try_from(report.channel) {
        Ok(v1::Channel::Unspecified) => Ok(v1::Channel::GridWorker),
        other => other,
    };
    if claimed != Ok(subject.channel) {
        return Err(reject(
            Reason::ChannelMismatch,
            format!(
                "channel {} was published on the subject of channel {}: only the Open311 door \
                 and the grid's devices file reports of other channels, on the grid's subject \
                 plus the channel's token",
                report.channel,
                subject.channel.as_str_name()
            ),
        ));
    }
    if subject.channel == v1::Channel::GridWorker && !report.channel_ref.is_empty() {
        return Err(reject(
            Reason::ChannelMismatch,
            "channel_ref names another system's work order; a grid worker's own report has none"
                .to_owned(),
        ));
    }
    if report.cleared && subject.channel != v1::Channel::Device {
        return Err(reject(
            Reason::ChannelMismatch,
            "cleared ends a device's detection; only a device's report (channel device) has it"
                .to_owned(),
        ));
    }
    if org.unit(&grid).is_none_or(|u| u.level() != Level::Grid) {
        return Err(reject(
            Reason::UnknownGrid,
            format!("grid {grid} is not in the org tree"),
        ));
    }
    let reporter_id: PersonId = report
        .reporter_id
        .parse()
        .map_err(|e| reject(Reason::UnknownReporter, format!("reporter_id: {e}")))?;
    let device = if subject.channel == v1::Channel::Device {
        Some(check_device(&reporter_id, &grid, report.cleared, devices)?)
    } else {
        check_person(&reporter_id, &grid, org)?;
        None
    };
    let category = check_category(report, policy)?;
    Ok(ValidReport {
        report: report.clone(),
        report_id,
        reporter_id,
        grid,
        category,
        urgency,
        occurred_at,
        reported_at,
        device,
    })
}

/// A device's report names a registered device of the subject's grid that is not retired (one
/// under maintenance is taken: intake keeps its reports and sends them to no department).
fn check_device(
    id: &PersonId,
    grid: &AreaCode,
    cleared: bool,
    devices: &Registry,
) -> Result<DeviceReport, Rejection> {
    let device = devices.get(id.as_str()).ok_or_else(|| {
        reject(
            Reason::UnknownReporter,
            format!("device {id} is not registered (whistle devices register)"),
        )
    })?;
    if device.status == Status::Retired {
        return Err(reject(
            Reason::UnknownReporter,
            format!("device {id} is retired; its reports are refused"),
        ));
    }
    if &device.grid != grid {
        return Err(reject(
            Reason::ReporterNotInGrid,
            format!(
                "device {id} is registered in grid {}, not {grid}",
                device.grid
            ),
        ));
    }
    Ok(DeviceReport {
        kind: device.kind,
        cleared,
    })
}

/// A person's report names the grid's own grid worker.
fn check_person(reporter_id: &PersonId, grid: &AreaCode, org: &OrgIndex) -> Result<(), Rejection> {
    let reporter = org.person(reporter_id).ok_or_else(|| {
        reject(
            Reason::UnknownReporter,
            format!("reporter {reporter_id} is not a known person"),
        )
    })?;
    match &reporter.role {
        Role::GridWorker { grid: own } if own == grid => Ok(()),
        Role::GridWorker { grid: own } => Err(reject(
            Reason::ReporterNotInGrid,
            format!("reporter {reporter_id} is the grid worker of {own}, not of {grid}"),
        )),
        other => Err(reject(
            Reason::ReporterNotInGrid,
            format!(
                "reporter {reporter_id} is a {}, not a grid worker",
                other.kind()
            ),
        )),
    }
}

/// The category is the catalogue's, and the photos are what it asks.
fn check_category(report: &v1::Report, policy: &Policy) -> Result<CategoryCode, Rejection> {
    let category = policy.category(&report.category).ok_or_else(|| {
        reject(
            Reason::UnknownCategory,
            format!(
                "category {:?} is not in the dispatch catalogue {}",
                report.category,
                policy.version()
            ),
        )
    })?;
    if report.photo_ids.len() > MAX_PHOTOS {
        return Err(reject(
            Reason::InvalidPhoto,
            format!(
                "{} photos; at most {MAX_PHOTOS} are allowed",
                report.photo_ids.len()
            ),
        ));
    }
    for (i, photo) in report.photo_ids.iter().enumerate() {
        photo
            .parse::<PhotoId>()
            .map_err(|e| reject(Reason::InvalidPhoto, format!("photo_ids[{i}]: {e}")))?;
    }
    if category.photo_required && report.photo_ids.is_empty() {
        return Err(reject(
            Reason::PhotoRequired,
            format!(
                "category {} requires a photo of the problem (policy {})",
                category.code,
                policy.version()
            ),
        ));
    }
    Ok(category.code.clone())
}

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;

    use chrono::TimeZone;
    use proptest::prelude::*;

    use super::*;

    static ORG: LazyLock<OrgIndex> =
        LazyLock::new(|| OrgIndex::build(whistle_domain::ordos::dataset()).unwrap());
    static POLICY: LazyLock<Policy> =
        LazyLock::new(|| whistle_domain::policy::builtin("ordos").unwrap());
    const GRID: &str = "150602001001001";
    const SUBJECT: &str = "whistle.report.150602.150602001.150602001001.150602001001001";

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap()
    }

    fn valid() -> v1::Report {
        v1::Report {
            report_id: "r-1".into(),
            reporter_id: format!("gw-{GRID}"),
            grid_code: GRID.into(),
            category: "heating.no_heat".into(),
            title: "停暖".into(),
            reported_at: Some(events_timestamp(now())),
            ..Default::default()
        }
    }

    fn events_timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
        prost_types::Timestamp {
            seconds: at.timestamp(),
            nanos: 0,
        }
    }

    fn run(subject: &str, report: &v1::Report) -> Result<ValidReport, Rejection> {
        let payload = report.encode_to_vec();
        validate(
            Inbound {
                subject,
                payload: &payload,
                json: false,
                msg_id: None,
                legacy_channels: false,
            },
            &ORG,
            &POLICY,
            now(),
        )
    }

    fn reason_of(change: impl FnOnce(&mut v1::Report)) -> Reason {
        let mut report = valid();
        change(&mut report);
        run(SUBJECT, &report).unwrap_err().reason
    }

    #[test]
    fn a_devices_report_names_a_registered_device_of_its_grid_on_the_device_subject() {
        use crate::devices::{Registered, Status};
        let registered = |status| Registered {
            kind: DeviceKind::Smoke,
            grid: GRID.parse().unwrap(),
            status,
            history_from: None,
        };
        let devices = Registry::new([
            ("sm-1".to_owned(), registered(Status::Active)),
            ("sm-fixing".to_owned(), registered(Status::Maintenance)),
            ("sm-old".to_owned(), registered(Status::Retired)),
        ]);
        let device_subject = format!("{SUBJECT}.device");
        let reading = |device: &str, cleared: bool| v1::Report {
            reporter_id: device.to_owned(),
            channel: v1::Channel::Device as i32,
            cleared,
            ..valid()
        };
        let run_with = |subject: &str, report: &v1::Report| {
            let payload = report.encode_to_vec();
            let inbound = Inbound {
                subject,
                payload: &payload,
                json: false,
                msg_id: None,
                legacy_channels: false,
            };
            validate_with(inbound, &ORG, &devices, &POLICY, now())
        };
        let ok = run_with(&device_subject, &reading("sm-1", true)).unwrap();
        assert_eq!(
            ok.device,
            Some(DeviceReport {
                kind: DeviceKind::Smoke,
                cleared: true
            })
        );
        assert_eq!(ok.reporter_id.as_str(), "sm-1");
        // Under maintenance it is taken (intake suppresses it).
        assert!(run_with(&device_subject, &reading("sm-fixing", false)).is_ok());
        let reason =
            |subject: &str, report: &v1::Report| run_with(subject, report).unwrap_err().reason;
        assert_eq!(
            reason(&device_subject, &reading("sm-old", false)),
            Reason::UnknownReporter
        );
        assert_eq!(
            reason(&device_subject, &reading("sm-nobody", false)),
            Reason::UnknownReporter
        );
        // The grid's own subject, or a grid worker's report on the device subject.
        assert_eq!(
            reason(SUBJECT, &reading("sm-1", false)),
            Reason::ChannelMismatch
        );
        assert_eq!(reason(&device_subject, &valid()), Reason::ChannelMismatch);
        // Only a device clears a detection.
        let mut clearing = valid();
        clearing.cleared = true;
        assert_eq!(reason(SUBJECT, &clearing), Reason::ChannelMismatch);
        // Another grid's device subject: the device is not of that grid.
        let other = "150602001001002";
        let elsewhere = v1::Report {
            grid_code: other.into(),
            ..reading("sm-1", false)
        };
        assert_eq!(
            reason(
                &format!("whistle.report.150602.150602001.150602001001.{other}.device"),
                &elsewhere
            ),
            Reason::ReporterNotInGrid
        );
        // Without the registry (plain `validate`) no device is known.
        assert_eq!(
            run(&device_subject, &reading("sm-1", false))
                .unwrap_err()
                .reason,
            Reason::UnknownReporter
        );
    }

    #[test]
    fn a_valid_report_passes_and_unspecified_urgency_is_normal() {
        let ok = run(SUBJECT, &valid()).unwrap();
        assert_eq!(ok.grid.as_str(), GRID);
        assert_eq!(ok.urgency, v1::Urgency::Normal);
        assert_eq!(ok.area(Level::Street).as_str(), "150602001");
    }

    #[test]
    fn a_category_may_require_a_photo() {
        let text = include_str!("../../../policy/ordos.toml").replacen(
            "code = \"heating.no_heat\"",
            "code = \"heating.no_heat\"\nphoto_required = true",
            1,
        );
        let policy = Policy::parse(&text, |_| None).unwrap();
        let check = |report: &v1::Report| {
            let payload = report.encode_to_vec();
            let inbound = Inbound {
                subject: SUBJECT,
                payload: &payload,
                json: false,
                msg_id: None,
                legacy_channels: false,
            };
            validate(inbound, &ORG, &policy, now())
        };
        let refused = check(&valid()).unwrap_err();
        assert_eq!(refused.reason, Reason::PhotoRequired);
        assert!(
            refused.message.contains("heating.no_heat"),
            "{}",
            refused.message
        );
        let mut with_photo = valid();
        with_photo.photo_ids = vec!["0f".repeat(32)];
        assert!(check(&with_photo).is_ok());
        // Other categories are unaffected.
        assert!(run(SUBJECT, &valid()).is_ok());
    }

    #[test]
    fn each_check_has_its_own_reason() {
        assert_eq!(
            reason_of(|r| r.report_id = "a b".into()),
            Reason::InvalidReportId
        );
        assert_eq!(reason_of(|r| r.title.clear()), Reason::MissingField);
        assert_eq!(
            reason_of(|r| r.description = "x".repeat(4001)),
            Reason::FieldTooLong
        );
        assert_eq!(
            reason_of(|r| r.location = Some(v1::Location {
                lat: f64::NAN,
                lon: 0.0,
                address: String::new()
            })),
            Reason::InvalidLocation
        );
        assert_eq!(
            reason_of(|r| r.attachments = vec![
                v1::Attachment {
                    uri: "u".into(),
                    ..Default::default()
                };
                21
            ]),
            Reason::TooManyAttachments
        );
        assert_eq!(
            reason_of(|r| r.photo_ids = vec!["not-a-hash".into()]),
            Reason::InvalidPhoto
        );
        assert_eq!(
            reason_of(|r| r.photo_ids = vec!["ab".repeat(32); 10]),
            Reason::InvalidPhoto
        );
        assert_eq!(
            reason_of(|r| r.reported_at = None),
            Reason::InvalidTimestamp
        );
        assert_eq!(
            reason_of(|r| r.reported_at = Some(events_timestamp(now() + TimeDelta::minutes(6)))),
            Reason::InvalidTimestamp
        );
        assert_eq!(
            reason_of(|r| r.reported_at = Some(events_timestamp(now() - TimeDelta::days(8)))),
            Reason::InvalidTimestamp
        );
        assert_eq!(reason_of(|r| r.urgency = 9), Reason::InvalidUrgency);
        assert_eq!(
            reason_of(|r| r.grid_code = "150602001001002".into()),
            Reason::GridMismatch
        );
        assert_eq!(
            reason_of(|r| r.reporter_id = "gw-150602001001002".into()),
            Reason::ReporterNotInGrid
        );
        assert_eq!(
            reason_of(|r| r.reporter_id = "op-150602".into()),
            Reason::ReporterNotInGrid
        );
        assert_eq!(
            reason_of(|r| r.reporter_id = "nobody".into()),
            Reason::UnknownReporter
        );
        assert_eq!(
            reason_of(|r| r.category = "heating".into()),
            Reason::UnknownCategory
        );
    }

    #[test]
    fn a_reports_channel_is_the_one_its_subject_proves() {
        let door = |channel: v1::Channel| {
            let mut report = valid();
            report.channel = channel as i32;
            report.channel_ref = "WO-1".into();
            report
        };
        let hotline_subject = format!("{SUBJECT}.hotline_12345");
        assert!(run(&hotline_subject, &door(v1::Channel::Hotline12345)).is_ok());
        // A grid worker publishing on its own subject cannot pass its report off as the hotline's,
        // nor name another system's work order.
        for (subject, report) in [
            (SUBJECT.to_owned(), door(v1::Channel::Hotline12345)),
            (SUBJECT.to_owned(), door(v1::Channel::GridWorker)),
            (hotline_subject.clone(), door(v1::Channel::Open311)),
            (hotline_subject, valid()),
        ] {
            assert_eq!(
                run(&subject, &report).unwrap_err().reason,
                Reason::ChannelMismatch,
                "{subject} {:?}",
                report.channel
            );
        }
        let mut unspecified = valid();
        unspecified.channel = v1::Channel::Unspecified as i32;
        assert!(run(SUBJECT, &unspecified).is_ok());

        // While upgrading across the channel subjects, an older door's report on the grid's own
        // subject is taken on its word.
        let payload = door(v1::Channel::Hotline12345).encode_to_vec();
        let legacy = Inbound {
            subject: SUBJECT,
            payload: &payload,
            json: false,
            msg_id: None,
            legacy_channels: true,
        };
        assert!(validate(legacy, &ORG, &POLICY, now()).is_ok());
    }

    #[test]
    fn a_slightly_fast_device_clock_is_tolerated() {
        let mut report = valid();
        report.reported_at = Some(events_timestamp(now() + TimeDelta::minutes(4)));
        assert!(run(SUBJECT, &report).is_ok());
    }

    #[test]
    fn subjects_must_name_the_grid_and_its_ancestors() {
        assert!(subject::parse_report(SUBJECT).is_ok());
        for bad in [
            "whistle.report.150602.150602001.150602001001",
            "whistle.report.150602.150602002.150602001001.150602001001001",
            "whistle.event.150602.150602001.150602001001.150602001001001",
            "whistle.report.150602.150602001.150602001001.150602001001001.extra",
            "whistle.report.150602.150602001.150602001.150602001",
        ] {
            assert!(subject::parse_report(bad).is_err(), "{bad}");
        }
        let unknown = "whistle.report.150602.150602001.150602001999.150602001999001";
        let mut report = valid();
        report.grid_code = "150602001999001".into();
        report.reporter_id = "gw-150602001999001".into();
        assert_eq!(
            run(unknown, &report).unwrap_err().reason,
            Reason::UnknownGrid
        );
    }

    #[test]
    fn rejections_keep_what_could_be_read() {
        let mut report = valid();
        report.category = "nope".into();
        let rejection = run(SUBJECT, &report).unwrap_err();
        assert_eq!(rejection.report_id.as_deref(), Some("r-1"));
        assert_eq!(
            rejection.reporter_id.as_deref(),
            Some(format!("gw-{GRID}").as_str())
        );
        assert_eq!(
            rejection.subject_grid.as_ref().map(AreaCode::as_str),
            Some(GRID)
        );
    }

    #[test]
    fn control_characters_in_text_are_refused_with_their_own_reason() {
        for control in ['\0', '\u{1}', '\u{1b}', '\r', '\u{7f}', '\u{85}', '\u{9f}'] {
            let with = |s: &str| format!("停暖{control}{s}");
            for (field, change) in [
                (
                    "title",
                    Box::new(|r: &mut v1::Report| r.title = with(""))
                        as Box<dyn Fn(&mut v1::Report)>,
                ),
                (
                    "description",
                    Box::new(|r: &mut v1::Report| r.description = with("说明")),
                ),
                (
                    "contact_phone",
                    Box::new(|r: &mut v1::Report| r.contact_phone = with("138")),
                ),
                (
                    "location.address",
                    Box::new(|r: &mut v1::Report| {
                        r.location = Some(v1::Location {
                            lat: 39.6,
                            lon: 109.8,
                            address: with("东胜区"),
                        })
                    }),
                ),
                (
                    "attachments[0].caption",
                    Box::new(|r: &mut v1::Report| {
                        r.attachments = vec![v1::Attachment {
                            uri: "https://x/y".into(),
                            caption: with(""),
                            ..Default::default()
                        }]
                    }),
                ),
                (
                    "attachments[0].uri",
                    Box::new(|r: &mut v1::Report| {
                        r.attachments = vec![v1::Attachment {
                            uri: format!("https://x/{control}"),
                            ..Default::default()
                        }]
                    }),
                ),
                (
                    "reporter_id",
                    Box::new(|r: &mut v1::Report| r.reporter_id.push(control)),
                ),
                (
                    "category",
                    Box::new(|r: &mut v1::Report| r.category.push(control)),
                ),
            ] {
                let mut report = valid();
                change(&mut report);
                let rejection = run(SUBJECT, &report).unwrap_err();
                assert_eq!(
                    rejection.reason,
                    Reason::ControlCharacter,
                    "{field} with {control:?}"
                );
                assert!(
                    rejection.message.starts_with(field),
                    "{}",
                    rejection.message
                );
                assert!(
                    !rejection.message.contains(control),
                    "the message does not repeat the character: {:?}",
                    rejection.message
                );
                // An id that could not be stored or shown is not kept with the rejection.
                if field == "reporter_id" {
                    assert_eq!(rejection.reporter_id, None);
                } else {
                    assert_eq!(
                        rejection.reporter_id.as_deref(),
                        Some(valid().reporter_id.as_str())
                    );
                }
            }
        }
        assert_eq!(Reason::ControlCharacter.as_str(), "control_character");
    }

    #[test]
    fn the_description_alone_may_hold_newlines_and_tabs() {
        let mut report = valid();
        report.description = "一楼：\t无暖气\n二楼：\t正常\n".into();
        run(SUBJECT, &report).unwrap();
        // Ordinary non-ASCII text, including spaces of other scripts, is not a control.
        report.title = "停暖\u{3000}（东胜区）\u{a0}🔥".into();
        run(SUBJECT, &report).unwrap();
        for field in ["title", "address"] {
            let mut report = valid();
            let text = "第一行\n第二行".to_owned();
            match field {
                "title" => report.title = text,
                _ => {
                    report.location = Some(v1::Location {
                        lat: 39.6,
                        lon: 109.8,
                        address: text,
                    })
                }
            }
            assert_eq!(
                run(SUBJECT, &report).unwrap_err().reason,
                Reason::ControlCharacter,
                "a newline in {field}"
            );
        }
        assert_eq!(
            reason_of(|r| r.description = "a\rb".into()),
            Reason::ControlCharacter
        );
    }

    #[test]
    fn a_control_character_in_the_report_id_stays_invalid_report_id() {
        // The id is parsed first, as before, and a rejection does not keep it.
        let mut report = valid();
        report.report_id = "r\u{0}1".into();
        let rejection = run(SUBJECT, &report).unwrap_err();
        assert_eq!(rejection.reason, Reason::InvalidReportId);
        assert_eq!(rejection.report_id, None);
    }

    #[test]
    fn reason_names_are_unique_subject_tokens() {
        let names: std::collections::HashSet<&str> =
            Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), Reason::ALL.len());
        assert!(names
            .iter()
            .all(|n| n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..2048), json in any::<bool>()) {
            let _ = validate(Inbound { subject: SUBJECT, payload: &payload, json, msg_id: None, legacy_channels: false }, &ORG, &POLICY, now());
        }

        #[test]
        fn arbitrary_subjects_never_panic(subject in "\\PC{0,80}") {
            let payload = valid().encode_to_vec();
            let outcome = validate(Inbound { subject: &subject, payload: &payload, json: false, msg_id: None, legacy_channels: false }, &ORG, &POLICY, now());
            prop_assert!(subject == SUBJECT || outcome.is_err());
        }

        #[test]
        fn mutated_reports_are_either_valid_or_rejected_with_a_message(title in "\\PC{0,250}", lat in -200.0f64..200.0, attachments in 0usize..30) {
            let mut report = valid();
            report.title = title;
            report.location = Some(v1::Location { lat, lon: 109.0, address: String::new() });
            report.attachments = vec![v1::Attachment { uri: "https://x/y".into(), ..Default::default() }; attachments];
            if let Err(rejection) = run(SUBJECT, &report) {
                prop_assert!(!rejection.message.is_empty());
            }
        }
    }
}
