//! A private nats-server with JetStream on a free loopback port.

use std::{
    io::{Read as _, Seek as _, SeekFrom},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{free_port, Error, TempDir};

/// How long a (re)started server may take to answer JetStream: recovering a store the chaos
/// suite filled for minutes takes seconds on a busy two-core machine.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How the readiness probe connects; the default is anonymous, a server with accounts needs a
/// user it knows.
type Connect = Arc<dyn Fn() -> async_nats::ConnectOptions + Send + Sync>;

/// Renders the configuration file once the port and the store directory are known.
type Render = Arc<dyn Fn(u16, &Path) -> String + Send + Sync>;

/// What to start: the binary, where its store and log go, and its configuration. The builder
/// always adds the loopback address, the port and JetStream with its store directory; everything
/// else (accounts, users, an auth callout) comes as a configuration file or extra arguments.
#[derive(Clone)]
pub struct NatsConfig {
    bin: String,
    dir: Option<PathBuf>,
    args: Vec<String>,
    config_file: Option<String>,
    render: Option<Render>,
    connect: Connect,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            bin: std::env::var("WHISTLE_NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".into()),
            dir: None,
            args: Vec::new(),
            config_file: None,
            render: None,
            connect: Arc::new(async_nats::ConnectOptions::new),
        }
    }
}

impl NatsConfig {
    /// `WHISTLE_NATS_SERVER_BIN`, else `nats-server` on the PATH; a temp dir removed on drop.
    pub fn new() -> NatsConfig {
        NatsConfig::default()
    }

    pub fn bin(mut self, bin: impl Into<String>) -> NatsConfig {
        self.bin = bin.into();
        self
    }

    /// Keeps the store and the log in `dir` (not removed on drop), e.g. a chaos run's work dir.
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> NatsConfig {
        self.dir = Some(dir.into());
        self
    }

    /// One more command-line argument.
    pub fn arg(mut self, arg: impl Into<String>) -> NatsConfig {
        self.args.push(arg.into());
        self
    }

    /// The contents of a configuration file, written next to the store and passed with `-c`
    /// (command-line flags still win over it, as nats-server does).
    pub fn config_file(mut self, contents: impl Into<String>) -> NatsConfig {
        self.config_file = Some(contents.into());
        self
    }

    /// As production runs it: the configuration whistle-auth renders for `secrets` (the services
    /// as nkey users, every other connection through the auth callout, JetStream encrypted at
    /// rest), probed, and connected to by [`NatsServer::connect`], as the admin.
    pub fn secured(self, secrets: &whistle_auth::Secrets) -> NatsConfig {
        self.secured_with(secrets, |_| {})
    }

    /// [`NatsConfig::secured`] with the configuration adjusted before it is rendered, e.g. a
    /// node's name and `cluster` block (its port and store directory are the builder's).
    pub fn secured_with(
        mut self,
        secrets: &whistle_auth::Secrets,
        adjust: impl FnOnce(&mut whistle_auth::ServerConfig),
    ) -> NatsConfig {
        let mut config = whistle_auth::ServerConfig::new(secrets, "127.0.0.1", 0, PathBuf::new());
        adjust(&mut config);
        self.render = Some(Arc::new(move |port, store_dir| {
            whistle_auth::ServerConfig {
                port,
                store_dir: store_dir.to_owned(),
                ..config.clone()
            }
            .render()
        }));
        let seed = secrets
            .service(whistle_auth::Service::Admin)
            .seed()
            .expect("a generated key has its seed");
        let inbox = whistle_auth::Service::Admin.inbox_prefix();
        self.probe_with(move || {
            async_nats::ConnectOptions::with_nkey(seed.clone()).custom_inbox_prefix(inbox.clone())
        })
    }

    /// How the readiness probe connects (credentials of a user the configuration defines).
    pub fn probe_with(
        mut self,
        connect: impl Fn() -> async_nats::ConnectOptions + Send + Sync + 'static,
    ) -> NatsConfig {
        self.connect = Arc::new(connect);
        self
    }

    pub async fn start(self) -> Result<NatsServer, Error> {
        let (dir, temp) = match &self.dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(Error::io(format!("creating {}", dir.display())))?;
                (dir.clone(), None)
            }
            None => {
                let temp = TempDir::new("nats")?;
                (temp.path().to_owned(), Some(temp))
            }
        };
        let port = free_port()?;
        let store_dir = dir.join("jetstream");
        let rendered = self.render.as_ref().map(|render| render(port, &store_dir));
        let config_path = match rendered.as_ref().or(self.config_file.as_ref()) {
            Some(contents) => {
                let path = dir.join("nats-server.conf");
                std::fs::write(&path, contents)
                    .map_err(Error::io(format!("writing {}", path.display())))?;
                Some(path)
            }
            None => None,
        };
        let mut server = NatsServer {
            port,
            store_dir,
            log: dir.join("nats-server.log"),
            config_path,
            config: self,
            child: None,
            _temp: temp,
        };
        server.start_again().await?;
        Ok(server)
    }
}

/// A running (or killed, until started again) nats-server; killed on drop.
pub struct NatsServer {
    config: NatsConfig,
    child: Option<Child>,
    port: u16,
    store_dir: PathBuf,
    log: PathBuf,
    config_path: Option<PathBuf>,
    _temp: Option<TempDir>,
}

impl NatsServer {
    /// Plain JetStream, no authentication: [`NatsConfig::new`] started.
    pub async fn start() -> Result<NatsServer, Error> {
        NatsConfig::new().start().await
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// A connection as the readiness probe makes it: the admin of a [`NatsConfig::secured`]
    /// server, else anonymous.
    pub async fn connect(&self) -> Result<async_nats::Client, async_nats::ConnectError> {
        (self.config.connect)().connect(self.url()).await
    }

    /// The JetStream store directory (encrypted at rest on a secured server).
    pub fn store_dir(&self) -> &Path {
        &self.store_dir
    }

    /// The server's log (stderr of every start, appended).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The server's process id while it runs (to stop and continue it, as a partition looks to
    /// its clients).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `kill -9`: the process dies with whatever it had not written.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it (again) on the same port and store directory, and waits until it is ready.
    pub async fn start_again(&mut self) -> Result<(), Error> {
        self.spawn()?;
        self.wait_ready().await
    }

    /// Kills it and starts it again on the same port and store.
    pub async fn restart(&mut self) -> Result<(), Error> {
        self.kill();
        self.start_again().await
    }

    fn spawn(&mut self) -> Result<(), Error> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(Error::io(format!("opening {}", self.log.display())))?;
        let mut command = Command::new(&self.config.bin);
        if let Some(path) = &self.config_path {
            command.arg("-c").arg(path);
        }
        command.args(["-a", "127.0.0.1", "-p", &self.port.to_string()]);
        // A rendered configuration has its own JetStream block (and would refuse a second
        // store directory).
        if self.config.render.is_none() {
            command.arg("-js").arg("-sd").arg(&self.store_dir);
        }
        command
            .args(&self.config.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let child = command.spawn().map_err(|source| Error::NatsSpawn {
            bin: self.config.bin.clone(),
            source,
        })?;
        self.child = Some(child);
        Ok(())
    }

    /// Ready means JetStream answers its API, which it does only once it has recovered its
    /// streams; a listening port alone is not enough after a restart on a full store. Of the two
    /// waits this crate replaced (the harness's and the chaos suite's, the same probe with 20 s
    /// and 30 s), this keeps the probe and the longer deadline, and adds what both lacked: a
    /// server that exits (a bad configuration, a taken port) fails at once with its log instead
    /// of after the deadline, and each probe is bounded so a half-open connect cannot eat it.
    async fn wait_ready(&mut self) -> Result<(), Error> {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(Error::NatsExited {
                        port: self.port,
                        status,
                        log: self.log.clone(),
                        tail: log_tail(&self.log),
                    });
                }
            }
            let probe = async {
                let client = (self.config.connect)().connect(self.url()).await.ok()?;
                // A raw request: async-nats cannot parse the account info of nats-server 2.9.
                let reply = client.request("$JS.API.INFO", "".into()).await.ok()?;
                reply
                    .payload
                    .starts_with(b"{\"type\":\"io.nats.jetstream.api.v1.account_info_response\"")
                    .then_some(())
            };
            if let Ok(Some(())) = tokio::time::timeout(Duration::from_secs(2), probe).await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(Error::NatsNotReady {
            port: self.port,
            secs: READY_TIMEOUT.as_secs(),
            log: self.log.clone(),
        })
    }
}

/// The last few kilobytes of a log, for an error message.
fn log_tail(path: &Path) -> String {
    let mut tail = String::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(4096)));
        let mut bytes = Vec::new();
        let _ = file.read_to_end(&mut bytes);
        tail = String::from_utf8_lossy(&bytes).into_owned();
    }
    tail
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
