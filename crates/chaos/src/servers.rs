//! Servers the fault suite owns: a private nats-server with JetStream and a private PostgreSQL
//! cluster, both on loopback ports of their own, so the suite can kill and restart them without
//! touching anyone else's.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

/// Ports other people's servers use on shared machines; never picked.
const RESERVED_PORTS: [u16; 6] = [4222, 5432, 50051, 54222, 54322, 55432];

/// A free loopback port that is not one of [`RESERVED_PORTS`].
pub fn free_port() -> anyhow::Result<u16> {
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if !RESERVED_PORTS.contains(&port) && port != 55532 {
            return Ok(port);
        }
    }
    bail!("no free port")
}

/// A private nats-server with JetStream; killed on drop.
pub struct NatsServer {
    bin: String,
    child: Option<Child>,
    pub port: u16,
    store_dir: PathBuf,
    log: PathBuf,
}

impl NatsServer {
    /// `bin`: WHISTLE_NATS_SERVER_BIN, else `nats-server` on PATH.
    pub async fn start(bin: &str, dir: &Path) -> anyhow::Result<NatsServer> {
        let mut server = NatsServer {
            bin: bin.to_owned(),
            child: None,
            port: free_port()?,
            store_dir: dir.join("jetstream"),
            log: dir.join("nats-server.log"),
        };
        server.spawn()?;
        server.wait_ready().await?;
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.bin)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store_dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (set WHISTLE_NATS_SERVER_BIN or --nats-server)",
                    self.bin
                )
            })?;
        self.child = Some(child);
        Ok(())
    }

    /// `kill -9`: the process dies with whatever it had not written.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and store directory, and waits for JetStream.
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        self.spawn()?;
        self.wait_ready().await
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(client) = async_nats::connect(self.url()).await {
                // JetStream answers once it has recovered its streams (a raw request: async-nats
                // cannot parse nats-server 2.9's account info).
                let info = client.request("$JS.API.INFO", "".into()).await;
                if info.is_ok_and(|reply| {
                    reply.payload.starts_with(
                        b"{\"type\":\"io.nats.jetstream.api.v1.account_info_response\"",
                    )
                }) {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("nats-server on port {} did not become ready", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A private PostgreSQL cluster (initdb + pg_ctl), run as the `postgres` user when we are root
/// (the server refuses root). Stopped on drop.
pub struct PgCluster {
    bindir: PathBuf,
    data: PathBuf,
    log: PathBuf,
    socket_dir: PathBuf,
    pub port: u16,
    run_as: Option<String>,
    running: bool,
}

/// The highest /usr/lib/postgresql/*/bin with initdb and pg_ctl.
pub fn find_pg_bindir() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").exists() && bin.join("pg_ctl").exists()).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

impl PgCluster {
    /// initdb in `dir/pg` and start on a free port. fsync stays on (the default): the suite
    /// tests the configuration production runs.
    pub async fn start(bindir: &Path, dir: &Path) -> anyhow::Result<PgCluster> {
        let root = dir.join("pg");
        std::fs::create_dir_all(&root)?;
        let run_as = is_root().then(|| "postgres".to_owned());
        if let Some(user) = &run_as {
            let status = Command::new("chown")
                .args(["-R", &format!("{user}:")])
                .arg(&root)
                .status()?;
            if !status.success() {
                bail!("chown of {} to {user} failed", root.display());
            }
        }
        let mut cluster = PgCluster {
            bindir: bindir.to_owned(),
            data: root.join("data"),
            log: root.join("postgres.log"),
            socket_dir: root.clone(),
            port: free_port()?,
            run_as,
            running: false,
        };
        let out = cluster
            .command("initdb")
            .arg("-D")
            .arg(&cluster.data)
            .args([
                "--auth=trust",
                "--username=postgres",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        cluster.start_again().await?;
        Ok(cluster)
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bindir.join(program);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        };
        command.current_dir("/").stdin(Stdio::null());
        command
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// `pg_ctl start`, waiting until it accepts connections.
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_buffers=64MB",
            self.port,
            self.socket_dir.display()
        );
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(["-w", "-t", "60", "-o", &options, "start"])
            .output()?;
        if !out.status.success() {
            bail!(
                "pg_ctl start failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        self.running = true;
        Ok(())
    }

    /// `pg_ctl stop -m immediate`: every backend is killed without a checkpoint; the next start
    /// runs crash recovery from the WAL, as after a power cut with fsync on.
    pub fn stop_immediate(&mut self) -> anyhow::Result<()> {
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "-t", "60", "stop"])
            .output()?;
        self.running = false;
        if !out.status.success() {
            bail!(
                "pg_ctl stop failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.running {
            let _ = self.stop_immediate();
        }
    }
}
