//! `whistle nats-config` renders a configuration that a real nats-server (`WHISTLE_NATS_SERVER_BIN`,
//! ≥ 2.10) starts with: it refuses an anonymous connection and accepts the admin's nkey, with
//! JetStream (encrypted at rest) available to the admin.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use whistle_testkit::{free_port, TempDir};
use whistle_wire::{connect, Credentials};

/// Kills the server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_for_port(port: u16, server: &mut Server, log: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if let Some(status) = server.0.try_wait().expect("polling nats-server") {
            panic!(
                "nats-server exited ({status}) with the rendered config:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "nats-server did not listen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_rendered_config_starts_a_server_that_refuses_anonymous_connections() {
    let dir = TempDir::new("whistle-cli-nats-config").expect("a temporary directory");
    let (secrets, conf, log) = (
        dir.path().join("secrets"),
        dir.path().join("nats.conf"),
        dir.path().join("nats-server.log"),
    );
    let port = free_port().expect("a free port");
    let rendered = Command::new(env!("CARGO_BIN_EXE_whistle"))
        .arg("nats-config")
        .arg("--secrets")
        .arg(&secrets)
        .args(["--port", &port.to_string(), "--store-dir"])
        .arg(dir.path().join("js"))
        .arg("--output")
        .arg(&conf)
        .output()
        .expect("running whistle nats-config");
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );

    let bin = std::env::var("WHISTLE_NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".into());
    let mut server = Server(
        Command::new(&bin)
            .arg("-c")
            .arg(&conf)
            .arg("-l")
            .arg(&log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {bin}: {e}")),
    );
    wait_for_port(port, &mut server, &log).await;
    let url = format!("nats://127.0.0.1:{port}");

    let anonymous = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(10))
        .connect(&url)
        .await;
    assert!(anonymous.is_err(), "an anonymous connection was accepted");

    let admin = connect::connect(
        &url,
        "test-admin",
        &Credentials::Nkey {
            seed_file: secrets.join("admin.nk"),
            service: "admin".into(),
        },
    )
    .await
    .expect("the admin's nkey is accepted");
    let account = async_nats::jetstream::new(admin)
        .query_account()
        .await
        .expect("the admin reaches JetStream");
    assert_eq!(account.streams, 0);
    assert!(std::fs::read_to_string(&conf)
        .unwrap()
        .contains("cipher: chachapoly"));
}
