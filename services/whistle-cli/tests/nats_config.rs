//! `whistle nats-config` renders a configuration that a real nats-server (`WHISTLE_NATS_SERVER_BIN`,
//! ≥ 2.10) starts with: it refuses an anonymous connection (no PONG, an authorization error) and
//! accepts the admin's nkey, with
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

/// What the server finally answers a client that connects without a credential: the protocol
/// by hand, since a client library may report the connection as made before the server decides
/// (with auth callout the server decides after asking the callout).
async fn anonymous_handshake(port: u16) -> String {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connecting");
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let info = lines.next_line().await.expect("reading").expect("INFO");
    assert!(info.starts_with("INFO "), "{info}");
    write
        .write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\nPING\r\n")
        .await
        .expect("writing");
    let answer = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match lines.next_line().await.expect("reading") {
                // The server's own keep-alive while it waits for the callout.
                Some(line) if line == "PING" => {
                    write.write_all(b"PONG\r\n").await.expect("writing")
                }
                Some(line) => return line,
                None => return "closed without an answer".to_owned(),
            }
        }
    })
    .await;
    answer.expect("the server answered within 20 s")
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

    assert_eq!(
        anonymous_handshake(port).await,
        "-ERR 'Authorization Violation'"
    );

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
