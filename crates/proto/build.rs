//! Compiles `proto/whistle/v1/*.proto` with protox (pure Rust, no system protoc) and generates
//! prost messages and tonic services; also writes the descriptor set used for reflection and
//! proto3 JSON.

use std::{env, fs, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let dir = proto_root.join("whistle/v1");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "proto"));
    files.sort();
    println!("cargo:rerun-if-changed={}", dir.display());
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let descriptors = protox::compile(&files, [&proto_root])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("whistle_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // A people's or volunteer command's result and refusal ride in every `CommandReply`:
        // boxed, so the incident commands' replies stay small.
        .boxed(".whistle.v1.CommandOk.person")
        .boxed(".whistle.v1.CommandOk.offer")
        .boxed(".whistle.v1.CommandError.holdings")
        .compile_fds(descriptors)?;
    Ok(())
}
