//! Generates the server side of `whistle.v1.CommandCenter`, `whistle.v1.Dispatch` and
//! `whistle.v1.Reporting` for this crate.
//!
//! The messages are not generated again: `.whistle.v1` maps to `whistle_proto::v1`, so the types
//! are the ones every other crate uses. Only the server traits are generated here.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = ["command_center.proto", "dispatch.proto", "reporting.proto"]
        .map(|f| proto_root.join("whistle/v1").join(f));
    println!(
        "cargo:rerun-if-changed={}",
        proto_root.join("whistle/v1").display()
    );
    let descriptors = protox::compile(&files, [&proto_root])?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        // A request body that does not decode is INVALID_ARGUMENT, not tonic-prost's INTERNAL.
        .codec_path("crate::codec::RequestCodec")
        // WatchEvents answers with a wire-identical type that carries each event's bytes as read
        // from the stream, so an event is encoded once, not once per watching screen.
        .extern_path(
            ".whistle.v1.WatchEventsResponse",
            "crate::watch::WireResponse",
        )
        .extern_path(".whistle.v1", "::whistle_proto::v1")
        .compile_fds(descriptors)?;
    Ok(())
}
