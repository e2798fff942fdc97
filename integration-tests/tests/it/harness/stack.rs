//! The one way a test starts what it needs: [`Stack::start`] for NATS, a database and dispatch,
//! [`Stack::command_center`] for that plus the query service, [`Stack::builder`] for the rest.
//!
//! Every stack runs as production does: nats-server with the configuration whistle-auth renders
//! from fresh key material in the test's temp dir (JetStream encrypted at rest), the streams
//! created by the admin identity, dispatch and query with their nkeys, and the auth callout
//! answering (inside query when the stack runs it, else in the harness). The test's own clients
//! are the admin's ([`Stack::admin`], [`Stack::reporter`]) or a person's ([`Stack::connect_as`]).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use async_nats::jetstream::{self, stream};
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use whistle_auth::{Secrets, Service};
use whistle_proto::v1::command_center_client::CommandCenterClient;
use whistle_store::tokens::Role;
use whistle_testkit::{NatsConfig, NatsServer, TempDir, TestDb};
use whistle_wire::{Clock as _, ManualClock};

use super::{
    command_center_on, dispatch_options, ten_o_clock_in_ordos, Authed, Dispatch, Person, Query,
    Reporter,
};

type AdjustDispatch = Box<dyn FnOnce(&mut whistle_dispatch::Options)>;
type AdjustQuery = Box<dyn FnOnce(&mut whistle_query::Options)>;
type AdjustStreams = Box<dyn FnOnce(&mut [stream::Config; 3])>;

/// How long a person's NATS authorization lives unless a test says otherwise (production's).
pub const RECHECK: Duration = Duration::from_secs(60);

/// What to start; see the methods.
#[must_use = "a builder does nothing until `start`"]
pub struct StackBuilder {
    nats: bool,
    dispatch: bool,
    clock: Option<ManualClock>,
    dispatch_options: Vec<AdjustDispatch>,
    query: Option<Vec<AdjustQuery>>,
    streams: Option<Vec<AdjustStreams>>,
    recheck: Duration,
    /// A superuser's URL of the PostgreSQL server to make the test database on, instead of
    /// `DATABASE_URL`'s.
    database_server: Option<String>,
}

/// A private nats-server and database, and whichever of dispatch and the query service the test
/// asked for, sharing one clock; everything stops when it drops.
pub struct Stack {
    server: Option<NatsServer>,
    db: TestDb,
    clock: Option<ManualClock>,
    dispatch_options: Option<whistle_dispatch::Options>,
    dispatch: Option<Dispatch>,
    nats: Option<async_nats::Client>,
    reporter: Option<Reporter>,
    query: Option<Query>,
    channel: Option<Channel>,
    token: Option<String>,
    /// The deployment's key material, in the test's temp dir.
    secrets: Secrets,
    _secrets_dir: TempDir,
    recheck: Duration,
    /// The harness's own callout, when query (which runs one) is not part of the stack.
    callout: Option<(
        CancellationToken,
        tokio::task::JoinHandle<whistle_auth::Result<()>>,
    )>,
    /// The contact keyring dispatch and query are given, in a directory of the test's own.
    contact_keys: std::path::PathBuf,
    _contact_dir: TempDir,
}

impl StackBuilder {
    /// The test database on this server (a superuser's URL, such as a private cluster's) rather
    /// than on `DATABASE_URL`'s.
    pub fn on_database_server(mut self, admin_url: String) -> StackBuilder {
        self.database_server = Some(admin_url);
        self
    }

    /// A manual clock for dispatch and query: deadlines fire when the test moves it.
    pub fn with_clock(mut self, clock: ManualClock) -> StackBuilder {
        self.clock = Some(clock);
        self
    }

    /// A manual clock standing at `now`.
    pub fn at(self, now: DateTime<Utc>) -> StackBuilder {
        self.with_clock(ManualClock::new(now))
    }

    /// Dispatch's options as the test wants them (also for dispatches started later).
    pub fn with_dispatch_options(
        mut self,
        adjust: impl FnOnce(&mut whistle_dispatch::Options) + 'static,
    ) -> StackBuilder {
        self.dispatch_options.push(Box::new(adjust));
        self
    }

    /// No dispatch at start; [`Stack::start_dispatch`] starts one when the test wants it.
    pub fn without_dispatch(mut self) -> StackBuilder {
        self.dispatch = false;
        self
    }

    /// Only the database: no nats-server, no services.
    pub fn database_only(mut self) -> StackBuilder {
        self.nats = false;
        self.dispatch = false;
        self.query = None;
        self
    }

    /// The query service too, with a city operator's token and a client sending it.
    pub fn with_query(mut self) -> StackBuilder {
        self.query.get_or_insert_with(Vec::new);
        self
    }

    /// The streams' configuration as the test wants it before the admin creates them.
    pub fn with_streams(
        mut self,
        adjust: impl FnOnce(&mut [stream::Config; 3]) + 'static,
    ) -> StackBuilder {
        self.streams
            .get_or_insert_with(Vec::new)
            .push(Box::new(adjust));
        self
    }

    /// The streams are not created (a test of something that must not need them).
    pub fn without_streams(mut self) -> StackBuilder {
        self.streams = None;
        self
    }

    /// How long a person's NATS authorization lives before the callout checks its token again.
    pub fn with_recheck(mut self, recheck: Duration) -> StackBuilder {
        self.recheck = recheck;
        self
    }

    /// The query service with options the test adjusts.
    pub fn with_query_options(
        mut self,
        adjust: impl FnOnce(&mut whistle_query::Options) + 'static,
    ) -> StackBuilder {
        self.query
            .get_or_insert_with(Vec::new)
            .push(Box::new(adjust));
        self
    }

    pub async fn start(self) -> Stack {
        let db = match &self.database_server {
            Some(url) => TestDb::create_on(url).await,
            None => TestDb::create().await,
        }
        .unwrap_or_else(|e| panic!("creating the test database: {e}"));
        let secrets_dir = TempDir::new("secrets").expect("a temp dir for the key material");
        let secrets = Secrets::load_or_create(&secrets_dir.path().join("secrets"))
            .unwrap_or_else(|e| panic!("creating the key material: {e}"));
        let contact_dir = TempDir::new("contacts").expect("a temp dir for the contact keyring");
        let contact_keys = whistle_testkit::write_contact_keyring(contact_dir.path())
            .expect("writing the contact keyring");
        let mut stack = Stack {
            secrets,
            _secrets_dir: secrets_dir,
            recheck: self.recheck,
            callout: None,
            server: None,
            db,
            clock: self.clock,
            dispatch_options: None,
            dispatch: None,
            nats: None,
            reporter: None,
            query: None,
            channel: None,
            token: None,
            contact_keys,
            _contact_dir: contact_dir,
        };
        if !self.nats {
            return stack;
        }
        let server = NatsConfig::new()
            .secured(&stack.secrets)
            .start()
            .await
            .unwrap_or_else(|e| panic!("starting nats-server: {e}"));
        let admin = server.connect().await.expect("the admin connects");
        if let Some(adjustments) = self.streams {
            let mut configs =
                whistle_auth::streams::configs(&whistle_auth::streams::HardenedOptions::small());
            for adjust in adjustments {
                adjust(&mut configs);
            }
            create_streams(&admin, configs).await;
        }
        let mut options = dispatch_options(server.url(), stack.db.dispatch_url.clone());
        options.nkey_file = Some(stack.secrets.seed_path(Service::Dispatch));
        options.contact_keys = Some(stack.contact_keys.clone());
        for adjust in self.dispatch_options {
            adjust(&mut options);
        }
        stack.dispatch_options = Some(options);
        if self.dispatch {
            stack.dispatch = Some(stack.spawn_dispatch().await);
        }
        if let Some(adjustments) = self.query {
            let mut options = stack.query_options(&server);
            for adjust in adjustments {
                adjust(&mut options);
            }
            let query = Query::start(options, stack.shared_clock()).await;
            stack.token = Some(stack.token_for(Role::Operator, "150600").await);
            stack.channel = Some(
                tonic::transport::Endpoint::from_shared(query.url())
                    .expect("a query URL")
                    .connect_lazy(),
            );
            stack.query = Some(query);
        } else {
            stack.start_callout(&server).await;
        }
        // The clients connect once the services run (as the tests always had it): one that
        // publishes reports, and one for requests such as commands — both the admin's.
        stack.reporter = Some(Reporter::connect(&server).await);
        stack.nats = Some(admin);
        stack.server = Some(server);
        stack
    }
}

/// Creates the streams as `whistle streams` does (the admin's `ensure`), or with a test's
/// adjusted configuration.
async fn create_streams(admin: &async_nats::Client, configs: [stream::Config; 3]) {
    let js = jetstream::new(admin.clone());
    if configs == whistle_auth::streams::configs(&whistle_auth::streams::HardenedOptions::small()) {
        whistle_auth::streams::ensure(&js, &whistle_auth::streams::HardenedOptions::small())
            .await
            .unwrap_or_else(|e| panic!("creating the streams as admin: {e}"));
        return;
    }
    let photos =
        whistle_auth::streams::photos_config(&whistle_auth::streams::HardenedOptions::small());
    for config in configs.into_iter().chain([photos]) {
        let name = config.name.clone();
        js.create_stream(config)
            .await
            .unwrap_or_else(|e| panic!("creating stream {name} as admin: {e}"));
    }
}

impl Stack {
    /// NATS, a database and dispatch on the system clock.
    pub async fn start() -> Stack {
        Stack::builder().start().await
    }

    /// Dispatch and the query service on one manual clock at 10:00 today in Ordos, with a city
    /// operator's client.
    pub async fn command_center() -> Stack {
        Stack::builder()
            .with_query()
            .at(ten_o_clock_in_ordos())
            .start()
            .await
    }

    pub fn builder() -> StackBuilder {
        StackBuilder {
            nats: true,
            dispatch: true,
            clock: None,
            dispatch_options: Vec::new(),
            query: None,
            streams: Some(Vec::new()),
            recheck: RECHECK,
            database_server: None,
        }
    }

    pub fn server(&self) -> &NatsServer {
        self.server.as_ref().expect("the stack has a nats-server")
    }

    /// Kills nats-server and starts it again on the same port and store.
    pub async fn restart_nats(&mut self) {
        self.server
            .as_mut()
            .expect("the stack has a nats-server")
            .restart()
            .await
            .unwrap_or_else(|e| panic!("restarting nats-server: {e}"));
    }

    /// `kill -9` of nats-server, which stays down until [`Stack::start_nats_again`].
    pub fn kill_nats(&mut self) {
        self.server
            .as_mut()
            .expect("the stack has a nats-server")
            .kill();
    }

    /// Starts the killed nats-server again on the same port and store.
    pub async fn start_nats_again(&mut self) {
        self.server
            .as_mut()
            .expect("the stack has a nats-server")
            .start_again()
            .await
            .unwrap_or_else(|e| panic!("starting nats-server again: {e}"));
    }

    /// The admin's connection to the stack's nats-server (unrestricted, as `whistle` with the
    /// admin nkey): the tests' inspection and command client.
    pub fn admin(&self) -> &async_nats::Client {
        self.nats.as_ref().expect("the stack has a nats-server")
    }

    /// Creates the streams as the admin does with `whistle streams` (after `without_streams`).
    pub async fn create_streams(&self) {
        create_streams(
            self.admin(),
            whistle_auth::streams::configs(&whistle_auth::streams::HardenedOptions::small()),
        )
        .await;
    }

    /// The deployment's key material (seed files for `--nats-nkey-file`).
    pub fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    /// A person's or device's client with the bearer token `secret`, authorized by the callout,
    /// with its identity's private inbox; its connection's events are kept for the test.
    pub async fn connect_as(&self, secret: &str) -> Person {
        Person::connect(self.server(), self.pool(), secret)
            .await
            .unwrap_or_else(|e| panic!("connecting with a token: {e}"))
    }

    /// A service's client with its nkey (as whistle-dispatch, whistle-query or the admin tools
    /// connect), its connection's events kept.
    pub async fn connect_service(&self, service: Service) -> Person {
        let credentials = whistle_wire::Credentials::Nkey {
            seed_file: self.secrets.seed_path(service),
            service: service.name().into(),
        };
        Person::connect_credentials(self.server(), &credentials)
            .await
            .unwrap_or_else(|e| panic!("connecting as {}: {e}", service.name()))
    }

    /// Runs the auth callout in the harness (the stack has no query service to run it), on the
    /// query service's database role as it runs there.
    async fn start_callout(&mut self, server: &NatsServer) {
        let org = whistle_store::org::load(self.pool())
            .await
            .expect("loading the org tree");
        let org = whistle_domain::OrgIndex::build(org).expect("the org tree indexes");
        let options = whistle_auth::Options {
            nats_url: server.url(),
            recheck_interval: self.recheck,
            ..Default::default()
        };
        let keys = whistle_auth::Keys::from_secrets(&self.secrets).expect("the callout's keys");
        let pool = whistle_store::connect(&self.db.query_url, 2)
            .await
            .expect("connecting as the query role");
        let callout = whistle_auth::Callout::new(options, keys, pool, Arc::new(org))
            .await
            .expect("starting the auth callout");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(callout.run(shutdown.clone()));
        self.callout = Some((shutdown, task));
    }

    /// Query's options on this stack: its nkey, and the auth callout inside it.
    fn query_options(&self, server: &NatsServer) -> whistle_query::Options {
        whistle_query::Options {
            listen: "127.0.0.1:0".parse().unwrap(),
            database_url: self.db.query_url.clone(),
            nats_url: server.url(),
            nkey_file: Some(self.secrets.seed_path(Service::Query)),
            callout_nkey_file: Some(self.secrets.seed_path(Service::Callout)),
            callout_issuer_file: Some(self.secrets.issuer_path()),
            callout_revoker_file: Some(self.secrets.seed_path(Service::Revoker)),
            callout_recheck: self.recheck,
            max_db_connections: 4,
            contact_keys: Some(self.contact_keys.clone()),
            ..Default::default()
        }
    }

    pub fn js(&self) -> &jetstream::Context {
        &self.reporter().js
    }

    /// A grid worker's client.
    pub fn reporter(&self) -> &Reporter {
        self.reporter.as_ref().expect("the stack has a nats-server")
    }

    pub fn db(&self) -> &TestDb {
        &self.db
    }

    pub fn pool(&self) -> &PgPool {
        &self.db.pool
    }

    /// The manual clock the stack was built with.
    pub fn clock(&self) -> &ManualClock {
        self.clock.as_ref().expect("the stack has a manual clock")
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock().now()
    }

    pub fn advance(&self, by: TimeDelta) {
        self.clock().advance(by);
    }

    /// The clock of the stack's services, for those a test starts on other servers.
    pub fn shared_clock(&self) -> Arc<dyn whistle_wire::Clock> {
        match &self.clock {
            Some(clock) => Arc::new(clock.clone()),
            None => Arc::new(whistle_wire::SystemClock),
        }
    }

    /// The options dispatches of this stack start with.
    pub fn dispatch_options(&self) -> whistle_dispatch::Options {
        self.dispatch_options
            .clone()
            .expect("the stack has a nats-server")
    }

    /// Another dispatch (a replica) on the stack's servers and clock; the caller stops it.
    pub async fn spawn_dispatch(&self) -> Dispatch {
        self.spawn_dispatch_with(|_| {}).await
    }

    /// A replica with options adjusted for it.
    pub async fn spawn_dispatch_with(
        &self,
        adjust: impl FnOnce(&mut whistle_dispatch::Options),
    ) -> Dispatch {
        let mut options = self.dispatch_options();
        adjust(&mut options);
        Dispatch::start(options, self.shared_clock()).await
    }

    /// Starts the stack's dispatch (after `without_dispatch`, or a stop).
    pub async fn start_dispatch(&mut self) {
        assert!(self.dispatch.is_none(), "dispatch is already running");
        self.dispatch = Some(self.spawn_dispatch().await);
    }

    /// Starts the stack's dispatch with options adjusted for this start.
    pub async fn start_dispatch_with(
        &mut self,
        adjust: impl FnOnce(&mut whistle_dispatch::Options),
    ) {
        assert!(self.dispatch.is_none(), "dispatch is already running");
        self.dispatch = Some(self.spawn_dispatch_with(adjust).await);
    }

    /// The stack's running dispatch.
    pub fn dispatch(&self) -> &Dispatch {
        self.dispatch.as_ref().expect("dispatch is running")
    }

    /// Stops the stack's dispatch gracefully, which must be clean.
    pub async fn stop_dispatch(&mut self) {
        self.dispatch
            .take()
            .expect("dispatch is running")
            .stop()
            .await;
    }

    /// Takes the stack's dispatch out of it, for a test of its own shutdown.
    pub fn take_dispatch(&mut self) -> Dispatch {
        self.dispatch.take().expect("dispatch is running")
    }

    pub async fn restart_dispatch(&mut self) {
        self.stop_dispatch().await;
        self.start_dispatch().await;
    }

    /// Starts and stops a dispatch once: its migrations, streams and consumers exist after.
    pub async fn run_dispatch_once(&self) {
        self.spawn_dispatch().await.stop().await;
    }

    pub fn query(&self) -> &Query {
        self.query
            .as_ref()
            .expect("the stack runs the query service")
    }

    /// Stops the query service, which must be clean.
    pub async fn stop_query(&mut self) {
        self.query.take().expect("query is running").stop().await;
    }

    /// Takes the query service out of the stack, for a test of its own shutdown.
    pub fn take_query(&mut self) -> Query {
        self.query.take().expect("query is running")
    }

    /// Starts the query service again on the same servers and clock (default options).
    pub async fn start_query(&mut self) {
        self.start_query_with(|_| {}).await;
    }

    /// Starts the query service again on the same servers and clock, with options the test
    /// adjusts (which may name the stack's database, unlike [`StackBuilder::with_query_options`]).
    pub async fn start_query_with(&mut self, adjust: impl FnOnce(&mut whistle_query::Options)) {
        let mut options = self.query_options(self.server());
        adjust(&mut options);
        let query = Query::start(options, self.shared_clock()).await;
        self.channel = Some(
            tonic::transport::Endpoint::from_shared(query.url())
                .expect("a query URL")
                .connect_lazy(),
        );
        self.query = Some(query);
    }

    /// The contact keyring file dispatch and query were given (a test rotating keys rewrites it).
    pub fn contact_keys(&self) -> &std::path::Path {
        &self.contact_keys
    }

    pub fn query_addr(&self) -> SocketAddr {
        self.query().addr
    }

    pub fn query_url(&self) -> String {
        self.query().url()
    }

    /// The gRPC channel to the query service (connected on first use).
    pub fn channel(&self) -> Channel {
        self.channel
            .clone()
            .expect("the stack runs the query service")
    }

    /// The city operator's token the stack made for its client.
    pub fn token(&self) -> &str {
        self.token
            .as_deref()
            .expect("the stack runs the query service")
    }

    /// A `CommandCenter` client sending the city operator's token.
    pub fn client(&self) -> CommandCenterClient<Authed> {
        command_center_on(self.channel(), self.token())
    }

    /// A bearer token for the query service, made as `whistle token create` makes it. `scope`
    /// is an area code, or a department code for liaisons.
    pub async fn token_for(&self, role: Role, scope: &str) -> String {
        use whistle_store::tokens::NewToken;
        let department = scope.contains('-') || role == Role::Liaison;
        let new = NewToken {
            role: Some(role),
            area_code: (!department).then(|| scope.to_owned()),
            department_code: department.then(|| scope.to_owned()),
            ..Default::default()
        };
        whistle_store::tokens::create(&self.db.pool, &new, Utc::now(), &super::admin())
            .await
            .unwrap_or_else(|e| panic!("creating a {role:?} token for {scope}: {e}"))
            .1
    }

    /// Registers Party member `person` with `community` (with a unit of their own, as the
    /// registry's seed would) and returns a member token for them (docs/party.md).
    pub async fn member_token(&self, person: &str, community: &str) -> String {
        use whistle_store::tokens::NewToken;
        let unit = format!("pu-{person}");
        sqlx::query(
            "INSERT INTO party_units (id, name, community_code, registered_at) VALUES ($1, '测试单位党支部', $2, now())",
        )
        .bind(&unit)
        .bind(community)
        .execute(&self.db.pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO people (id, name, phone, role, area_code) VALUES ($1, '党员测试', '13900009999', 'member', $2)",
        )
        .bind(person)
        .bind(community)
        .execute(&self.db.pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO party_members (person_id, unit_id, skills, availability, registered_at)
             VALUES ($1, $2, '{patrol}', 'weekends', now())",
        )
        .bind(person)
        .bind(&unit)
        .execute(&self.db.pool)
        .await
        .unwrap();
        let new = NewToken {
            role: Some(Role::Member),
            area_code: Some(community.to_owned()),
            person_id: Some(person.to_owned()),
            label: format!("{person}'s phone"),
            ..Default::default()
        };
        whistle_store::tokens::create(&self.db.pool, &new, Utc::now(), &super::admin())
            .await
            .unwrap_or_else(|e| panic!("creating a member token for {person}: {e}"))
            .1
    }
}

impl Stack {
    /// The server's log lines where it refused dispatch or query something: a permission the
    /// service uses but its configuration lacks.
    pub fn service_violations(&self) -> Vec<String> {
        let Some(server) = &self.server else {
            return Vec::new();
        };
        // The services' own connections, by name ("…:rust:whistle-dispatch-intake"): tests that
        // probe a service's permissions connect with its key under a name of their own.
        let marks = [":rust:whistle-dispatch", ":rust:whistle-query"];
        std::fs::read_to_string(server.log_path())
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("Violation") && marks.iter().any(|m| l.contains(m)))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some((shutdown, task)) = self.callout.take() {
            shutdown.cancel();
            task.abort();
        }
        // Every test is also a check that the services' permissions cover what they do.
        let refused = self.service_violations();
        if std::thread::panicking() {
            for line in &refused {
                eprintln!("nats-server refused a service: {line}");
            }
        } else if !refused.is_empty() {
            panic!("nats-server refused a service:\n{}", refused.join("\n"));
        }
    }
}
