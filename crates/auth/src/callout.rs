//! The auth callout service: nats-server asks it, on `$SYS.REQ.USER.AUTH`, about every
//! connection that is not a static service user. It checks the bearer token against the token
//! store and answers with a user JWT for the `WHISTLE` account carrying the role's permissions
//! and an expiry, or with an error that refuses the connection.
//!
//! **Invariant:** a user JWT never outlives the re-check interval, so a revoked token's live
//! connection is cut at its expiry and its reconnect is refused.
//!
//! With the revoker's key ([`Keys::revoker`]) the callout also cuts a revoked token's
//! connections at once: it remembers which connections (server id, client id) it authorized for
//! each token until their JWTs expire, listens for revocations (`whistle_store::tokens::CHANNEL`,
//! notified on commit) and asks each server to disconnect them (`$SYS.REQ.SERVER.{id}.KICK`,
//! nats-server ≥ 2.10, from the system account). Every replica of the callout cuts the
//! connections it authorized; the re-check interval stays the bound when a notification is lost.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use nkeys::{KeyPair, KeyPairType};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{debug, info, warn};
use whistle_domain::OrgIndex;
use whistle_store::tokens;

use crate::{
    config::APP_ACCOUNT,
    jwt::{self, AuthorizationRequest, AuthorizationResponse, Claims, SubjectPermission, User},
    permissions::{permissions, Identity, Service, FORBIDDEN_TO_PEOPLE},
    secrets::Secrets,
    Error, Result,
};

/// Where nats-server sends authorization requests.
pub const SUBJECT: &str = "$SYS.REQ.USER.AUTH";
/// The servers' disconnect requests, `$SYS.REQ.SERVER.{server id}.KICK` with `{"cid": N}`.
pub const KICK_SUBJECTS: &str = "$SYS.REQ.SERVER.*.KICK";
/// The audience nats-server puts on its requests.
const REQUEST_AUDIENCE: &str = "nats-authorization-request";

/// Settings of the callout (serde, for the binaries' configuration).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Options {
    pub nats_url: String,
    /// How long a user JWT lives: the longest a revoked token keeps a live connection.
    #[serde(with = "secs")]
    pub recheck_interval: Duration,
    /// Per connection: largest message, most subscriptions, most bytes (`-1` unlimited).
    pub max_payload: i64,
    pub max_subscriptions: i64,
    pub max_data: i64,
    /// Replicas of the callout share requests through this queue group.
    pub queue_group: String,
}

mod secs {
    use std::time::Duration;

    use serde::{Deserialize as _, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            nats_url: "nats://127.0.0.1:4222".into(),
            recheck_interval: Duration::from_secs(60),
            // Above dispatch's 64 KiB report limit, so an oversized report is still rejected
            // with a reason, while anything much larger never reaches the server's streams.
            max_payload: 128 * 1024,
            max_subscriptions: 100,
            max_data: -1,
            queue_group: "whistle-auth".into(),
        }
    }
}

/// The keys the callout needs: its own user, and the account key it signs answers with; and,
/// to cut revoked tokens' connections at once, the revoker's user in the system account.
pub struct Keys {
    pub user: KeyPair,
    pub issuer: KeyPair,
    pub revoker: Option<KeyPair>,
}

impl Keys {
    /// From the seed files a service is given (`auth-callout.nk` and `auth-issuer.nk`).
    pub fn from_seed_files(user: &std::path::Path, issuer: &std::path::Path) -> Result<Keys> {
        let read = |path: &std::path::Path| -> Result<KeyPair> {
            let seed = std::fs::read_to_string(path).map_err(|source| Error::Io {
                path: path.display().to_string(),
                source,
            })?;
            KeyPair::from_seed(seed.trim()).map_err(Error::from)
        };
        let keys = Keys {
            user: read(user)?,
            issuer: read(issuer)?,
            revoker: None,
        };
        if keys.issuer.key_pair_type() != KeyPairType::Account {
            return Err(Error::Secrets {
                path: issuer.display().to_string(),
                why: "the issuer must be an account nkey seed (SA…)".into(),
            });
        }
        Ok(keys)
    }

    /// With the revoker's seed file (`auth-revoker.nk`).
    pub fn with_revoker_file(mut self, path: &std::path::Path) -> Result<Keys> {
        let seed = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        self.revoker = Some(KeyPair::from_seed(seed.trim())?);
        Ok(self)
    }

    pub fn from_secrets(secrets: &Secrets) -> Result<Keys> {
        let copy = |pair: &KeyPair| KeyPair::from_seed(&pair.seed()?).map_err(Error::from);
        Ok(Keys {
            user: copy(secrets.service(Service::Callout))?,
            issuer: copy(&secrets.issuer)?,
            revoker: Some(copy(secrets.service(Service::Revoker))?),
        })
    }
}

/// A connected, subscribed callout; [`Callout::run`] answers until shut down.
pub struct Callout {
    client: async_nats::Client,
    requests: async_nats::Subscriber,
    authorizer: Arc<Authorizer>,
    /// The system account's connection that disconnects revoked tokens' connections.
    revoker: Option<async_nats::Client>,
}

/// A connection the callout authorized: where it is, and when its user JWT expires.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Authorized {
    server: String,
    client: u64,
    expires: i64,
}

/// The live connections authorized for each token, forgotten at their JWTs' expiry.
#[derive(Debug, Default)]
struct Connections(Mutex<HashMap<uuid::Uuid, Vec<Authorized>>>);

impl Connections {
    fn add(&self, token: uuid::Uuid, connection: Authorized, now: i64) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let list = map.entry(token).or_default();
        list.retain(|c| c.expires > now);
        list.push(connection);
    }

    fn take(&self, token: uuid::Uuid, now: i64) -> Vec<Authorized> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut taken = map.remove(&token).unwrap_or_default();
        taken.retain(|c| c.expires > now);
        taken
    }

    fn forget_expired(&self, now: i64) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, list| {
            list.retain(|c| c.expires > now);
            !list.is_empty()
        });
    }
}

impl Callout {
    /// Connects as the callout user and subscribes, so that once this returns the server's
    /// requests are answered.
    pub async fn new(
        options: Options,
        keys: Keys,
        pool: PgPool,
        org: impl Into<SharedOrg>,
    ) -> Result<Callout> {
        let seed = keys.user.seed()?;
        let client = async_nats::ConnectOptions::with_nkey(seed)
            .name("whistle-auth-callout")
            .custom_inbox_prefix(Service::Callout.inbox_prefix())
            .connect(whistle_wire::connect::servers(&options.nats_url))
            .await
            .map_err(|e| Error::Nats(format!("connecting to {}: {e}", options.nats_url)))?;
        let requests = client
            .queue_subscribe(SUBJECT, options.queue_group.clone())
            .await
            .map_err(|e| Error::Nats(format!("subscribing to {SUBJECT}: {e}")))?;
        client
            .flush()
            .await
            .map_err(|e| Error::Nats(format!("flushing the subscription: {e}")))?;
        let revoker = match &keys.revoker {
            None => None,
            Some(pair) => Some(
                async_nats::ConnectOptions::with_nkey(pair.seed()?)
                    .name("whistle-auth-revoker")
                    .custom_inbox_prefix(Service::Revoker.inbox_prefix())
                    .connect(whistle_wire::connect::servers(&options.nats_url))
                    .await
                    .map_err(|e| {
                        Error::Nats(format!(
                            "connecting the revoker to {}: {e}",
                            options.nats_url
                        ))
                    })?,
            ),
        };
        Ok(Callout {
            client,
            requests,
            authorizer: Arc::new(Authorizer {
                options,
                issuer: keys.issuer,
                pool,
                org: org.into(),
                connections: Connections::default(),
            }),
            revoker,
        })
    }

    /// Answers requests until `shutdown`, then waits for the answers under way.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<()> {
        let tracker = TaskTracker::new();
        info!(subject = SUBJECT, "auth callout answering");
        if let Some(revoker) = self.revoker.clone() {
            tracker.spawn(cut_revoked(
                self.authorizer.clone(),
                revoker,
                shutdown.clone(),
            ));
        }
        loop {
            let message = tokio::select! {
                () = shutdown.cancelled() => break,
                message = self.requests.next() => match message {
                    Some(message) => message,
                    None => break,
                },
            };
            let Some(reply) = message.reply.clone() else {
                warn!("authorization request without a reply subject");
                continue;
            };
            let (authorizer, client) = (self.authorizer.clone(), self.client.clone());
            tracker.spawn(async move {
                let Some(answer) = authorizer.answer(&message.payload, Utc::now()).await else {
                    return;
                };
                if let Err(e) = client.publish(reply, answer.into()).await {
                    warn!(error = %e, "answering an authorization request");
                }
            });
        }
        tracker.close();
        tracker.wait().await;
        let _ = self.requests.unsubscribe().await;
        let _ = self.client.flush().await;
        info!("auth callout stopped");
        Ok(())
    }
}

/// The org the callout grants from, shared with whoever follows the org's imports (the query
/// service): swapped whole, each request reading the one current when it came.
#[derive(Debug, Clone)]
pub struct SharedOrg(Arc<std::sync::RwLock<Arc<OrgIndex>>>);

impl SharedOrg {
    pub fn load(&self) -> Arc<OrgIndex> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn replace(&self, org: OrgIndex) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(org);
    }
}

impl From<Arc<OrgIndex>> for SharedOrg {
    fn from(org: Arc<OrgIndex>) -> Self {
        SharedOrg(Arc::new(std::sync::RwLock::new(org)))
    }
}

/// Disconnects the connections of each token revoked, as its revocation commits, until
/// `shutdown`. Forgets expired connections at every re-check interval.
async fn cut_revoked(
    authorizer: Arc<Authorizer>,
    revoker: async_nats::Client,
    shutdown: CancellationToken,
) {
    let mut listener = whistle_store::listen::Listener::new(
        authorizer.pool.clone(),
        &[tokens::CHANNEL],
        Duration::from_secs(5),
        "token revocations",
    );
    let mut tidy = tokio::time::interval(authorizer.options.recheck_interval);
    loop {
        let notice = tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tidy.tick() => {
                authorizer.connections.forget_expired(Utc::now().timestamp());
                continue;
            }
            notice = listener.next() => notice,
        };
        let whistle_store::listen::Notice::Notified { payload, .. } = notice else {
            continue;
        };
        let Ok(token) = payload.parse::<uuid::Uuid>() else {
            continue;
        };
        for connection in authorizer.connections.take(token, Utc::now().timestamp()) {
            kick(&revoker, &connection, token).await;
        }
    }
}

/// Asks the connection's server to disconnect it; a connection already gone is no error.
async fn kick(revoker: &async_nats::Client, connection: &Authorized, token: uuid::Uuid) {
    let subject = format!("$SYS.REQ.SERVER.{}.KICK", connection.server);
    let body = serde_json::json!({ "cid": connection.client }).to_string();
    let request = revoker.request(subject, body.into());
    match tokio::time::timeout(Duration::from_secs(5), request).await {
        Ok(Ok(reply)) => {
            let answer: serde_json::Value =
                serde_json::from_slice(&reply.payload).unwrap_or_default();
            match answer.get("error") {
                None => info!(%token, client = connection.client, "revoked token's connection cut"),
                Some(error) => {
                    debug!(%token, client = connection.client, %error, "revoked token's connection not cut (gone already?)")
                }
            }
        }
        Ok(Err(e)) => {
            warn!(%token, client = connection.client, error = %e, "asking the server to cut a revoked token's connection failed; it ends at its re-check")
        }
        Err(_) => {
            warn!(%token, client = connection.client, "the server did not answer the disconnect; the connection ends at its re-check")
        }
    }
}

/// The pure-ish core: a request in, a signed response out.
struct Authorizer {
    options: Options,
    issuer: KeyPair,
    pool: PgPool,
    org: SharedOrg,
    connections: Connections,
}

impl Authorizer {
    /// The response JWT, or `None` for a request that is not a genuine server request (no
    /// answer is possible without its user key and server id; the server then times out and
    /// refuses the connection).
    async fn answer(&self, payload: &[u8], now: DateTime<Utc>) -> Option<String> {
        let request = match self.verify_request(payload, now) {
            Ok(request) => request,
            Err(why) => {
                warn!(%why, "authorization request ignored");
                return None;
            }
        };
        let nats = request.nats;
        let outcome = self.authorize(&nats, now).await;
        let (jwt, error) = match outcome {
            Ok(jwt) => (jwt, String::new()),
            Err(why) => {
                info!(%why, client = nats.client_info.id, host = nats.client_info.host, "connection refused");
                (String::new(), why)
            }
        };
        let mut response = Claims {
            id: String::new(),
            issued_at: now.timestamp(),
            issuer: String::new(),
            subject: nats.user_nkey,
            audience: nats.server_id.id,
            expires: 0,
            name: String::new(),
            nats: AuthorizationResponse {
                jwt,
                error,
                kind: "authorization_response".into(),
                version: jwt::VERSION,
            },
        };
        match jwt::encode(&mut response, &self.issuer) {
            Ok(token) => Some(token),
            Err(e) => {
                warn!(error = %e, "signing an authorization response");
                None
            }
        }
    }

    /// Decodes the request and checks it comes from a server: signed by the server key it names,
    /// addressed to this issuer, not expired, naming a user key.
    fn verify_request(
        &self,
        payload: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Claims<AuthorizationRequest>, String> {
        let text = std::str::from_utf8(payload)
            .map_err(|_| "not utf-8 (is xkey encryption configured?)".to_owned())?;
        let claims: Claims<AuthorizationRequest> = jwt::decode(text).map_err(|e| e.to_string())?;
        let server_key = KeyPair::from_public_key(&claims.issuer).map_err(|e| e.to_string())?;
        if server_key.key_pair_type() != KeyPairType::Server
            || claims.issuer != claims.nats.server_id.id
        {
            return Err(format!(
                "issuer {} is not the requesting server",
                claims.issuer
            ));
        }
        if claims.audience != REQUEST_AUDIENCE || claims.subject != self.issuer.public_key() {
            return Err("not addressed to this callout".into());
        }
        if claims.expires != 0 && claims.expires < now.timestamp() {
            return Err("expired".into());
        }
        let user = KeyPair::from_public_key(&claims.nats.user_nkey).map_err(|e| e.to_string())?;
        if user.key_pair_type() != KeyPairType::User {
            return Err("the user nkey is not a user key".into());
        }
        Ok(claims)
    }

    /// The user JWT for this connection and its name, or why it is refused (said to the server,
    /// which logs it; the client only learns "authorization violation").
    async fn authorize(
        &self,
        request: &AuthorizationRequest,
        now: DateTime<Utc>,
    ) -> Result<String, String> {
        let Some(secret) = request
            .connect_opts
            .auth_token
            .as_deref()
            .filter(|t| !t.is_empty())
        else {
            return Err("no token".into());
        };
        let token = match tokens::authenticate(&self.pool, secret, now).await {
            Ok(Some(token)) => token,
            Ok(None) => return Err("unknown, revoked or expired token".into()),
            Err(e) => {
                warn!(error = %e, "token store unavailable; refusing");
                return Err("token store unavailable".into());
            }
        };
        let identity = Identity::from_token(&token).map_err(|e| e.to_string())?;
        let granted = permissions(&identity, &self.org.load());
        let recheck = chrono::Duration::from_std(self.options.recheck_interval)
            .unwrap_or(chrono::Duration::seconds(60));
        let expires = token
            .expires_at
            .map_or(now + recheck, |at| at.min(now + recheck));
        let name = identity.name();
        let mut user = Claims {
            id: String::new(),
            issued_at: now.timestamp(),
            issuer: String::new(),
            subject: request.user_nkey.clone(),
            audience: APP_ACCOUNT.into(),
            // Whole seconds; at least one so a JWT is never born expired.
            expires: expires.timestamp().max(now.timestamp() + 1),
            name: name.clone(),
            nats: user_section(granted, &self.options),
        };
        let jwt = jwt::encode(&mut user, &self.issuer).map_err(|e| e.to_string())?;
        debug!(%name, token = %token.id, role = token.role.as_str(), "connection authorized");
        self.connections.add(
            token.id,
            Authorized {
                server: request.server_id.id.clone(),
                client: request.client_info.id,
                expires: user.expires,
            },
            now.timestamp(),
        );
        Ok(jwt)
    }
}

/// The user JWT's permissions: allow lists, and an explicit deny of the system subjects (and
/// of all publishing when nothing is allowed, since an empty allow list means "anything").
fn user_section(granted: crate::permissions::Permissions, options: &Options) -> User {
    let forbidden: Vec<String> = FORBIDDEN_TO_PEOPLE
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let deny = |allow: &[String]| {
        if allow.is_empty() {
            vec![">".to_owned()]
        } else {
            forbidden.clone()
        }
    };
    let mut deny_publish = deny(&granted.publish);
    deny_publish.extend(granted.deny_publish);
    User {
        publish: SubjectPermission {
            deny: deny_publish,
            allow: granted.publish,
        },
        subscribe: SubjectPermission {
            deny: deny(&granted.subscribe),
            allow: granted.subscribe,
        },
        subs: options.max_subscriptions,
        data: options.max_data,
        payload: options.max_payload,
        kind: "user".into(),
        version: jwt::VERSION,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_allowed_means_everything_denied() {
        let user = user_section(
            crate::permissions::Permissions {
                publish: vec![],
                subscribe: vec!["whistle.event.>".into()],
                deny_publish: Vec::new(),
            },
            &Options::default(),
        );
        assert!(user.publish.allow.is_empty());
        assert_eq!(user.publish.deny, [">"]);
        assert_eq!(user.subscribe.allow, ["whistle.event.>"]);
        assert!(user.subscribe.deny.contains(&"$JS.>".to_owned()));
        assert!(user.subscribe.deny.contains(&"_INBOX.>".to_owned()));
        assert_eq!(user.payload, 128 * 1024);
    }

    #[test]
    fn a_role_s_denied_verbs_join_the_system_subjects_in_the_publish_deny_list() {
        let user = user_section(
            crate::permissions::Permissions {
                publish: vec!["whistle.cmd.*.li-150602-heating".into()],
                subscribe: vec!["_INBOX_li-150602-heating.>".into()],
                deny_publish: vec!["whistle.cmd.decide_extension.li-150602-heating".into()],
            },
            &Options::default(),
        );
        assert!(user.publish.deny.contains(&"$JS.>".to_owned()));
        assert!(user
            .publish
            .deny
            .contains(&"whistle.cmd.decide_extension.li-150602-heating".to_owned()));
        assert!(!user
            .subscribe
            .deny
            .iter()
            .any(|s| s.starts_with("whistle.cmd")));
    }

    #[test]
    fn options_read_seconds() {
        let options: Options =
            serde_json::from_str(r#"{"recheck_interval": 2.5, "max_subscriptions": 7}"#).unwrap();
        assert_eq!(options.recheck_interval, Duration::from_millis(2500));
        assert_eq!(options.max_subscriptions, 7);
        assert_eq!(options.queue_group, "whistle-auth");
    }
}
