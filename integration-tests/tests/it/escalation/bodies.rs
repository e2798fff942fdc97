//! Command bodies and places the escalation tests share.

use whistle_proto::v1::{self, command::Body};

use crate::harness::*;

pub(super) fn grid_of_street(index: usize) -> String {
    grids()[index * 13].clone()
}

pub(super) fn escalate(departments: &[String]) -> Body {
    Body::Escalate(v1::Escalate {
        assisting_department_codes: Vec::new(),
        note: "街道吹哨".into(),
        department_codes: departments.to_vec(),
    })
}

pub(super) fn accept(task: u32) -> Body {
    Body::Accept(v1::Accept {
        task_id: task.to_string(),
        note: String::new(),
    })
}

pub(super) fn resolve(task: Option<u32>) -> Body {
    Body::Resolve(v1::Resolve {
        task_id: task.map(|t| t.to_string()).unwrap_or_default(),
        note: "已处理".into(),
        photo_ids: Vec::new(),
    })
}

pub(super) fn verify(satisfaction: v1::Satisfaction) -> Body {
    Body::Verify(v1::Verify {
        satisfaction: satisfaction as i32,
        note: String::new(),
        tracking_code: String::new(),
    })
}

/// The error code of a refused command (panics on anything else).
pub(super) fn refusal(reply: v1::CommandReply) -> v1::CommandErrorCode {
    match reply.outcome {
        Some(v1::command_reply::Outcome::Error(error)) => {
            v1::CommandErrorCode::try_from(error.code).unwrap()
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// PostgreSQL keeps microseconds; the clock has nanoseconds.
pub(super) fn same_instant(
    a: chrono::DateTime<chrono::Utc>,
    b: chrono::DateTime<chrono::Utc>,
) -> bool {
    (a - b).abs() <= chrono::TimeDelta::microseconds(1)
}
