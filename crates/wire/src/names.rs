//! Names of the JetStream streams, the dispatch consumer and the dispatch micro service.

/// Reports from grid workers (`whistle.report.>`).
pub const REPORTS_STREAM: &str = "WHISTLE_REPORTS";
/// Every state change, in commit order (`whistle.event.>` and `whistle.task.>`).
pub const EVENTS_STREAM: &str = "WHISTLE_EVENTS";
/// On a province's hub: every city's `WHISTLE_EVENTS`, sourced across the cities' JetStream
/// domains (it has no subjects of its own).
pub const PROVINCE_EVENTS_STREAM: &str = "WHISTLE_PROVINCE_EVENTS";
/// Reports that failed validation or delivery, with reason and original bytes (`whistle.rejected.>`).
pub const REJECTED_STREAM: &str = "WHISTLE_REJECTED";

/// The object store bucket of incidents' photos (JetStream stream [`PHOTOS_STREAM`]); only the
/// query service writes and reads it.
pub const PHOTOS_BUCKET: &str = "WHISTLE_PHOTOS";
/// The stream behind [`PHOTOS_BUCKET`], as JetStream names an object store's.
pub const PHOTOS_STREAM: &str = "OBJ_WHISTLE_PHOTOS";

/// The durable pull consumer on `WHISTLE_REPORTS` that all dispatch replicas share, unless an
/// operator names another.
pub const DISPATCH_CONSUMER: &str = "whistle-dispatch";
/// Dispatch's durable consumer of the events that notify people.
pub const NOTIFY_CONSUMER: &str = "whistle-notify";

/// The NATS micro service that answers commands; `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS` answer
/// under this name.
pub const DISPATCH_SERVICE: &str = "whistle-dispatch";

/// What a micro service is asked on `$SRV.{verb}.{name}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceRequest {
    Ping,
    Info,
    Stats,
}

impl ServiceRequest {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceRequest::Ping => "PING",
            ServiceRequest::Info => "INFO",
            ServiceRequest::Stats => "STATS",
        }
    }

    /// `$SRV.{PING|INFO|STATS}.{service}`, e.g. `$SRV.PING.whistle-dispatch`.
    pub fn subject(self, service: &str) -> String {
        format!("$SRV.{}.{service}", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_requests_follow_the_micro_protocol() {
        assert_eq!(
            ServiceRequest::Ping.subject(DISPATCH_SERVICE),
            "$SRV.PING.whistle-dispatch"
        );
        assert_eq!(ServiceRequest::Stats.subject("x"), "$SRV.STATS.x");
    }
}
