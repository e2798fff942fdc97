//! Any bytes on any report subject, as protobuf or proto3 JSON, with or without a Nats-Msg-Id:
//! validation answers a valid report or a rejection with a reason, and never panics.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use whistle_dispatch::validate::{validate, Inbound};
use whistle_domain::{policy::Policy, OrgIndex};

static ORG: LazyLock<OrgIndex> =
    LazyLock::new(|| OrgIndex::build(whistle_domain::ordos::dataset()).expect("the Ordos data"));
static POLICY: LazyLock<Policy> =
    LazyLock::new(|| whistle_domain::policy::builtin("ordos").expect("the Ordos policy"));

/// A valid subject most of the time, so the fuzzer gets past the subject check to the payload.
const SUBJECTS: [&str; 4] = [
    "whistle.report.150602.150602001.150602001001.150602001001001",
    "whistle.report.150627.150627100.150627100001.150627100001002",
    "whistle.report.150602.150603001.150602001001.150602001001001",
    "whistle.report.x",
];

fuzz_target!(|data: &[u8]| {
    let Some((&flags, payload)) = data.split_first() else {
        return;
    };
    let subject = SUBJECTS[usize::from(flags & 3)];
    let json = flags & 4 != 0;
    let msg_id = (flags & 8 != 0).then_some("r-1");
    let outcome = validate(
        Inbound {
            subject,
            payload,
            json,
            msg_id,
        },
        &ORG,
        &POLICY,
        chrono::Utc::now(),
    );
    if let Err(rejection) = outcome {
        assert!(!rejection.message.is_empty(), "a rejection without a message");
    }
});
