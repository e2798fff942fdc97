//! Command bodies the tests send.

use whistle_proto::v1::{self, command::Body};

pub fn escalate() -> Body {
    Body::Escalate(v1::Escalate {
        assisting_department_codes: Vec::new(),
        note: "街道吹哨".into(),
        department_codes: Vec::new(),
    })
}

pub fn accept(task: u32) -> Body {
    Body::Accept(v1::Accept {
        task_id: task.to_string(),
        note: String::new(),
    })
}

pub fn resolve() -> Body {
    Body::Resolve(v1::Resolve {
        task_id: String::new(),
        note: "已处理".into(),
        photo_ids: Vec::new(),
    })
}

pub fn satisfied() -> Body {
    Body::Verify(v1::Verify {
        satisfaction: v1::Satisfaction::Satisfied as i32,
        note: String::new(),
        tracking_code: String::new(),
    })
}
