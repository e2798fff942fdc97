//! Bearer tokens (`authorization: Bearer wst_…`) and what each may see and do.
//!
//! Tokens are made by `whistle token create` and stored hashed (`whistle_store::tokens`). Every
//! `CommandCenter` and `Dispatch` call is checked here; health and reflection are not, so load
//! balancers and tools keep working without a token. A valid token is cached for
//! [`CACHE_TTL`]; a revocation (`whistle token revoke`, an offboarding or transfer) notifies
//! `whistle_store::tokens::CHANNEL` on commit and [`Auth::follow_revocations`] drops the token
//! from the cache at once, so the TTL only bounds a revocation whose notification was lost (the
//! listening connection down; the cache is emptied when it comes back).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use dashmap::DashMap;
use sqlx::PgPool;
use tonic::Request;
use whistle_domain::AreaCode;
use whistle_store::tokens::{self, Role};
use whistle_wire::Clock;

use crate::{area, limits::Limits, Error, Result};

pub const CACHE_TTL: Duration = Duration::from_secs(10);
/// Past this many cached tokens the cache starts over, so random tokens cannot grow it unbounded.
const CACHE_MAX: usize = 10_000;

/// Who is calling, from a valid token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Principal {
    pub token_id: uuid::Uuid,
    pub role: Role,
    /// Everything the caller may read lies inside this area.
    pub area: AreaCode,
    /// The department of a liaison token (or of a viewer scoped by department).
    pub department: Option<String>,
    /// Who acts on commands; `None` for viewers.
    pub person: Option<String>,
    /// A leader's paired streets and communities (empty for every other role), read with the
    /// token: a leader reads inside these, not its whole post.
    pub paired: Vec<AreaCode>,
}

impl Principal {
    /// The area a read names, checked against the token: an empty code means the token's own
    /// area; one outside it is PERMISSION_DENIED.
    pub fn read_area(&self, field: &str, requested: &str) -> Result<AreaCode> {
        let Some(requested) = area::parse_optional(field, requested)? else {
            if self.role == Role::Leader {
                return Err(Error::PermissionDenied(format!(
                    "a leader token names one of its paired areas in {field}"
                )));
            }
            return Ok(self.area.clone());
        };
        if self.may_see(&requested) {
            Ok(requested)
        } else {
            Err(self.outside(&requested))
        }
    }

    pub fn may_see(&self, code: &AreaCode) -> bool {
        if self.role == Role::Leader {
            return self.paired.iter().any(|area| area.contains(code));
        }
        self.area.contains(code)
    }

    pub fn outside(&self, code: &AreaCode) -> Error {
        if self.role == Role::Leader {
            return Error::PermissionDenied(format!(
                "this leader token reads only the areas paired with its leader; {code} is not one"
            ));
        }
        Error::PermissionDenied(format!(
            "this {} token is limited to area {}; {code} is outside it",
            self.role.as_str(),
            self.area
        ))
    }

    /// The person commands are sent as; viewers may not send commands. Dispatch checks what
    /// each person may do (a grid worker, for one, only follows up its own grid's incidents).
    pub fn actor(&self) -> Result<&str> {
        match (&self.person, self.role) {
            (
                Some(person),
                Role::Operator | Role::Liaison | Role::GridWorker | Role::Member | Role::Leader,
            ) => Ok(person),
            _ => Err(Error::PermissionDenied(format!(
                "a {} token cannot send commands",
                self.role.as_str()
            ))),
        }
    }
}

/// Least privilege: a member's phone reaches the volunteers' RPCs and nothing else.
fn refuse_member(principal: &Principal) -> Result<()> {
    if principal.role == Role::Member {
        return Err(Error::PermissionDenied(
            "a member token is for the volunteers' offers only".into(),
        ));
    }
    Ok(())
}

/// A leader reads its paired areas and endorses there, nothing else.
fn refuse_leader(principal: &Principal) -> Result<()> {
    if principal.role == Role::Leader {
        return Err(Error::PermissionDenied(
            "a leader token reads its paired areas through ListPairedIncidents, GetIncident \
             and its notifications, and acts with Endorse and Comment; not this RPC"
                .into(),
        ));
    }
    Ok(())
}

/// Valid tokens by the SHA-256 of their secret, with when they were checked.
type Cache = DashMap<[u8; 32], (Instant, Arc<Principal>)>;

/// Checks tokens against the database, with a short-lived cache of valid ones.
#[derive(Debug, Clone)]
pub(crate) struct Auth {
    pool: PgPool,
    clock: Arc<dyn Clock>,
    cache: Arc<Cache>,
    limits: Limits,
}

impl Auth {
    pub fn new(pool: PgPool, clock: Arc<dyn Clock>, limits: Limits) -> Auth {
        Auth {
            pool,
            clock,
            cache: Arc::default(),
            limits,
        }
    }

    /// The per-token limits (the `WatchEvents` cap is taken by its handler).
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The caller of a request, or UNAUTHENTICATED; every call counts against the token's rate
    /// limit (RESOURCE_EXHAUSTED, `rate_limited`, past it). A member's and a leader's tokens are
    /// refused here: the RPCs they may call ask [`Auth::volunteer_principal`] and
    /// [`Auth::principal_or_leader`].
    pub async fn principal<T>(&self, request: &Request<T>) -> Result<Arc<Principal>> {
        let principal = self.checked(request).await?;
        refuse_member(&principal)?;
        refuse_leader(&principal)?;
        Ok(principal)
    }

    /// [`Auth::principal`] for the volunteers' RPCs (docs/party.md), which member tokens may
    /// call too.
    pub async fn volunteer_principal<T>(&self, request: &Request<T>) -> Result<Arc<Principal>> {
        let principal = self.checked(request).await?;
        refuse_leader(&principal)?;
        Ok(principal)
    }

    /// As [`Auth::principal`], a leader's token accepted too (scoped to its paired areas by
    /// [`Principal::may_see`]): for the leader's view, `GetIncident`, the notifications and the
    /// commands a leader sends.
    pub async fn principal_or_leader<T>(&self, request: &Request<T>) -> Result<Arc<Principal>> {
        let principal = self.checked(request).await?;
        refuse_member(&principal)?;
        Ok(principal)
    }

    /// Any role the console serves, members and leaders included: for `GetSession`, which
    /// tells a console whose token it holds and so which page to open, and for the city's
    /// public reads every page names things from (`GetOrgTree`, `GetCatalogue`).
    pub async fn session_principal<T>(&self, request: &Request<T>) -> Result<Arc<Principal>> {
        self.checked(request).await
    }

    /// The caller of a request of any role but the keys of other doors (Open311 keys,
    /// devices), counted against its rate limit.
    async fn checked<T>(&self, request: &Request<T>) -> Result<Arc<Principal>> {
        let principal = self.identify(bearer(request)?).await?;
        if principal.role.is_open311_key() {
            return Err(Error::PermissionDenied(format!(
                "an {} key is for the Open311 door only",
                principal.role.as_str()
            )));
        }
        if principal.role == Role::Device {
            return Err(Error::PermissionDenied(
                "a device token files its grid's reports over NATS only".into(),
            ));
        }
        self.limits.request(principal.token_id)?;
        Ok(principal)
    }

    /// The key of an Open311 call (`api_key`), which must be an `open311` or `hotline` token;
    /// it counts against the key's rate limit as any call does.
    pub async fn open311_key(&self, secret: &str) -> Result<Arc<Principal>> {
        let principal = self.identify(secret).await?;
        if !principal.role.is_open311_key() {
            return Err(Error::PermissionDenied(format!(
                "a {} token is not an Open311 key (make one with `whistle token create --role open311`)",
                principal.role.as_str()
            )));
        }
        self.limits.request(principal.token_id)?;
        Ok(principal)
    }

    async fn identify(&self, secret: &str) -> Result<Arc<Principal>> {
        let key = tokens::digest(secret);
        if let Some(hit) = self.cache.get(&key) {
            if hit.0.elapsed() < CACHE_TTL {
                return Ok(hit.1.clone());
            }
        }
        let token = tokens::authenticate(&self.pool, secret, self.clock.now())
            .await
            .map_err(|e| match e {
                whistle_store::Error::Database(e) => Error::Database(e),
                other => Error::Corrupt(other.to_string()),
            })?
            .ok_or_else(|| {
                Error::Unauthenticated("the token is unknown, revoked or expired".into())
            })?;
        let paired = match (token.role, &token.person_id) {
            (Role::Leader, Some(person)) => {
                let mut conn = self.pool.acquire().await?;
                whistle_store::leaders::areas_of(&mut conn, person)
                    .await
                    .map_err(|e| match e {
                        whistle_store::Error::Database(e) => Error::Database(e),
                        other => Error::Corrupt(other.to_string()),
                    })?
            }
            _ => Vec::new(),
        };
        let principal = Arc::new(Principal {
            paired,
            token_id: token.id,
            role: token.role,
            area: token
                .area_code
                .parse()
                .map_err(|e| Error::Corrupt(format!("token {}: {e}", token.id)))?,
            department: token.department_code,
            person: token.person_id,
        });
        if self.cache.len() >= CACHE_MAX {
            self.cache.clear();
        }
        self.cache.insert(key, (Instant::now(), principal.clone()));
        Ok(principal)
    }
}

impl Auth {
    /// Drops revoked tokens from the cache as their revocations commit, until `shutdown`. The
    /// cache is emptied whenever the listener (re)connects, since notifications sent meanwhile
    /// are lost.
    pub async fn follow_revocations(self, shutdown: tokio_util::sync::CancellationToken) {
        use whistle_store::listen::{Listener, Notice};
        let mut listener = Listener::new(
            self.pool.clone(),
            &[tokens::CHANNEL],
            CACHE_TTL,
            "token revocations",
        );
        loop {
            let notice = tokio::select! {
                _ = shutdown.cancelled() => return,
                notice = listener.next() => notice,
            };
            match notice {
                Notice::Notified { payload, .. } => match payload.parse::<uuid::Uuid>() {
                    Ok(revoked) => self.cache.retain(|_, (_, p)| p.token_id != revoked),
                    Err(_) => self.cache.clear(),
                },
                Notice::Connected => self.cache.clear(),
            }
        }
    }
}

/// The token of `authorization: Bearer <token>` (the scheme is case-insensitive, as in RFC 7235).
fn bearer<T>(request: &Request<T>) -> Result<&str> {
    let missing = || {
        Error::Unauthenticated(
            "missing token: send `authorization: Bearer <token>` (make one with `whistle token create`)"
                .into(),
        )
    };
    let value = request
        .metadata()
        .get("authorization")
        .ok_or_else(missing)?
        .to_str()
        .map_err(|_| Error::Unauthenticated("the authorization header is not text".into()))?;
    let (scheme, token) = value.trim().split_once(' ').ok_or_else(missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(missing());
    }
    Ok(token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(role: Role, area: &str, person: Option<&str>) -> Principal {
        Principal {
            token_id: uuid::Uuid::nil(),
            role,
            area: area.parse().unwrap(),
            department: None,
            person: person.map(str::to_owned),
            paired: Vec::new(),
        }
    }

    #[test]
    fn a_leader_reads_only_its_paired_areas_not_its_post() {
        let mut leader = principal(Role::Leader, "150602", Some("ld-150602-01"));
        leader.paired = vec!["150602001001".parse().unwrap()];
        assert!(leader.may_see(&"150602001001003".parse().unwrap()));
        assert!(!leader.may_see(&"150602001002003".parse().unwrap()));
        assert!(!leader.may_see(&"150602".parse().unwrap()));
        assert!(matches!(
            leader.read_area("area_code", ""),
            Err(Error::PermissionDenied(_))
        ));
        assert_eq!(leader.actor().unwrap(), "ld-150602-01");
    }

    #[test]
    fn reads_default_to_the_token_s_area_and_stop_at_its_border() {
        let viewer = principal(Role::Viewer, "150602", None);
        assert_eq!(
            viewer.read_area("area_code", "").unwrap().as_str(),
            "150602"
        );
        assert_eq!(
            viewer.read_area("area_code", "150602001").unwrap().as_str(),
            "150602001"
        );
        for outside in ["150600", "150603", "150603001"] {
            assert!(matches!(
                viewer.read_area("area_code", outside),
                Err(Error::PermissionDenied(_))
            ));
        }
        assert!(matches!(
            viewer.read_area("area_code", "nope"),
            Err(Error::InvalidArgument(_))
        ));
        let city = principal(Role::Operator, "150600", Some("op-150600"));
        assert!(city.read_area("area_code", "150627").is_ok());
    }

    #[test]
    fn only_operators_and_liaisons_act_and_as_their_person() {
        assert_eq!(
            principal(Role::Operator, "150602", Some("op-150602"))
                .actor()
                .unwrap(),
            "op-150602"
        );
        assert!(matches!(
            principal(Role::Viewer, "150602", None).actor(),
            Err(Error::PermissionDenied(_))
        ));
    }

    #[test]
    fn the_bearer_scheme_is_required_and_case_insensitive() {
        let with = |value: &str| {
            let mut request = Request::new(());
            request
                .metadata_mut()
                .insert("authorization", value.parse().unwrap());
            request
        };
        assert_eq!(bearer(&with("Bearer wst_abc")).unwrap(), "wst_abc");
        assert_eq!(bearer(&with("bearer  wst_abc ")).unwrap(), "wst_abc");
        for bad in ["wst_abc", "Basic wst_abc", "Bearer ", "Bearer"] {
            assert!(
                matches!(bearer(&with(bad)), Err(Error::Unauthenticated(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            bearer(&Request::new(())),
            Err(Error::Unauthenticated(_))
        ));
    }
}
