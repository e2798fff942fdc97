//! The CLI as a Unix tool: a reader that goes away ends it quietly.

use std::process::{Command, Stdio};

#[test]
fn a_closed_pipe_ends_the_listing_quietly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_whistle"))
        .args(["categories", "--policy", "ordos"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting whistle");
    // Hang up before it prints anything, as `whistle categories | head -0` would: its first
    // write meets a pipe with no reader.
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("waiting for whistle");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "stderr: {stderr}"
    );
    // Ended by SIGPIPE, as `cat` would be; never the panic's 101.
    assert_ne!(
        output.status.code(),
        Some(101),
        "status: {:?}",
        output.status
    );
}
