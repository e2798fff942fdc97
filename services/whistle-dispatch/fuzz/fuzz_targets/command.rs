//! Any bytes sent to any `whistle.cmd.{verb}`, as protobuf or proto3 JSON: decoding and checking
//! the command answers it or refuses it with an error reply, and never panics.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use whistle_dispatch::{commands::decode, Catalog};
use whistle_domain::OrgIndex;

static CATALOG: LazyLock<Catalog> = LazyLock::new(|| Catalog {
    org: OrgIndex::build(whistle_domain::ordos::dataset()).expect("the Ordos data"),
    policy: whistle_domain::policy::builtin("ordos").expect("the Ordos policy"),
});

fuzz_target!(|data: &[u8]| {
    let Some((&flags, payload)) = data.split_first() else {
        return;
    };
    // The high nibble picks the verb, bit 3 the encoding.
    let verb =
        whistle_wire::Verb::ALL[usize::from(flags >> 4) % whistle_wire::Verb::ALL.len()].as_str();
    let json = flags & 8 != 0;
    if let Err(reply) = decode(verb, payload, json, &CATALOG) {
        assert!(reply.outcome.is_some(), "a refusal without an outcome");
    }
});
