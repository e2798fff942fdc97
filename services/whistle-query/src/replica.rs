//! Reads from a streaming standby, with the staleness bounded and measured, and read-your-writes
//! for whoever just acted (docs/query.md, "Reads from a standby").
//!
//! The [`Replica`] keeps a second pool on a hot standby of the primary. Every
//! [`POLL_INTERVAL`] it samples the primary's WAL position (`pg_current_wal_lsn()`) and the
//! standby's replayed one (`pg_last_wal_replay_lsn()`). The standby holds every transaction
//! committed before the newest primary sample it has replayed past, so its lag is at most the
//! age of that sample: measured to within the poll interval, erring high. A standby that does
//! not answer, is no longer in recovery, or lags more than the bound is not used; reads then go
//! to the primary, and each change of state is logged once.
//!
//! Read-your-writes: after a command this service forwarded succeeds (dispatch replies after its
//! commit), the primary's WAL position then is remembered for the acting person; an event seen on
//! `WHISTLE_EVENTS` with a person as actor (a command sent straight over NATS, say) marks that
//! person with the next primary sample, which is taken after the event was published and so
//! after its commit. A person with a mark reads the primary until the standby has replayed past
//! it. Marks are dropped once the standby has passed them, or after [`MARK_TTL`] (or twice the
//! bound, if longer): by then a standby within the bound holds the write.

use std::{
    collections::VecDeque,
    future::Future,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use dashmap::DashMap;
use sqlx::{postgres::PgPoolOptions, PgPool};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{auth::Principal, metrics::Metrics, Error, Options, Result};

/// How often the primary's and the standby's WAL positions are sampled.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// The longest one sample may take before the standby counts as not answering.
const POLL_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a person's read-your-writes mark is kept at least.
pub const MARK_TTL: Duration = Duration::from_secs(60);
/// The default bound on the standby's lag (`--max-replica-lag-ms`).
pub const DEFAULT_MAX_LAG_MS: u64 = 2000;

/// Which pool served a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Served {
    Primary,
    Standby,
}

impl Served {
    pub fn label(self) -> &'static str {
        match self {
            Served::Primary => "primary",
            Served::Standby => "standby",
        }
    }
}

/// Where reads that tolerate staleness go; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Replica {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    primary: PgPool,
    standby: Option<PgPool>,
    max_lag: Duration,
    /// The standby answered its last sample in time, is in recovery and lags within the bound.
    usable: AtomicBool,
    /// Milliseconds since `epoch` of the last sample that found the standby usable: a poller
    /// that stops sampling stops the standby being used.
    usable_at_ms: AtomicU64,
    epoch: Instant,
    /// The standby's replayed WAL position at the last sample.
    replayed: AtomicU64,
    /// Primary samples started; a mark made before sample `n` started is resolved by it.
    samples: AtomicU64,
    marks: DashMap<String, Mark>,
    metrics: Metrics,
}

#[derive(Debug, Clone, Copy)]
struct Mark {
    /// A primary WAL position at or after the person's writes (0 for none known).
    lsn: u64,
    /// Writes seen whose position is not known yet: the first primary sample started after
    /// sample number `after` is at or past them all.
    pending: Option<u64>,
    /// The last write marked.
    at: Instant,
}

impl Mark {
    /// The standby, at `replayed`, holds everything the mark asks for.
    fn passed(&self, replayed: u64) -> bool {
        self.pending.is_none() && replayed >= self.lsn
    }
}

/// Why the standby is or is not used, for the log.
#[derive(Debug, Clone, PartialEq)]
enum State {
    Usable,
    Unreachable(String),
    Promoted,
    Behind,
    Unmeasured,
}

impl Replica {
    /// Reads everything from `primary` when `standby` is `None`.
    pub fn new(
        primary: PgPool,
        standby: Option<PgPool>,
        max_lag: Duration,
        metrics: Metrics,
    ) -> Replica {
        Replica {
            inner: Arc::new(Inner {
                primary,
                standby,
                max_lag,
                usable: AtomicBool::new(false),
                usable_at_ms: AtomicU64::new(0),
                epoch: Instant::now(),
                replayed: AtomicU64::new(0),
                samples: AtomicU64::new(0),
                marks: DashMap::new(),
                metrics,
            }),
        }
    }

    /// The pool for a read by `principal` that may be up to the bound stale, except for the
    /// principal's own remembered writes.
    fn choose(&self, principal: &Principal) -> (PgPool, Served) {
        let inner = &self.inner;
        let primary = || (inner.primary.clone(), Served::Primary);
        let Some(standby) = &inner.standby else {
            return primary();
        };
        if !inner.usable.load(Ordering::Acquire) {
            return primary();
        }
        // A sampler that stalls (a hung query, a starved runtime) must not leave a stale
        // verdict standing past the bound.
        let age = inner
            .epoch
            .elapsed()
            .as_millis()
            .saturating_sub(u128::from(inner.usable_at_ms.load(Ordering::Acquire)));
        if age > inner.max_lag.as_millis().max(4 * POLL_INTERVAL.as_millis()) {
            return primary();
        }
        if let Some(person) = principal.person.as_deref() {
            if let Some(mark) = inner.marks.get(person) {
                if !mark.passed(inner.replayed.load(Ordering::Acquire)) {
                    return primary();
                }
            }
        }
        (standby.clone(), Served::Standby)
    }

    /// Runs `read` on the pool chosen for `principal`, counting which served it. A read the
    /// standby could not answer (connection lost, shutting down, cancelled by a recovery
    /// conflict) runs again on the primary.
    pub async fn read<T, F, Fut>(&self, principal: &Principal, read: F) -> Result<T>
    where
        F: Fn(PgPool) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let (pool, served) = self.choose(principal);
        let metrics = &self.inner.metrics;
        metrics.replica_read(served);
        match read(pool).await {
            Err(Error::Database(e)) if served == Served::Standby && standby_failed(&e) => {
                warn!(error = %e, "a read on the standby failed; reading the primary");
                metrics.replica_fallback();
                metrics.replica_read(Served::Primary);
                read(self.inner.primary.clone()).await
            }
            answered => answered,
        }
    }

    /// `person`'s command was just committed: remembers the primary's WAL position now, which
    /// is at or past that commit, so their next reads wait for the standby to reach it.
    pub async fn acted(&self, person: &str) {
        if self.inner.standby.is_none() {
            return;
        }
        let after = self.inner.samples.load(Ordering::Acquire);
        let lsn = match tokio::time::timeout(POLL_TIMEOUT, primary_lsn(&self.inner.primary)).await {
            Ok(Ok(lsn)) => Some(lsn),
            // The next sample resolves the mark; until then the person reads the primary.
            Ok(Err(e)) => {
                warn!(error = %e, "reading the primary's WAL position after a command");
                None
            }
            Err(_) => None,
        };
        self.mark(person, lsn, after);
    }

    /// An event by `person` was seen on `WHISTLE_EVENTS`, published after its commit: the next
    /// primary sample is at or past it.
    pub fn saw(&self, person: &str) {
        if self.inner.standby.is_none() || person.is_empty() || person == "system" {
            return;
        }
        let after = self.inner.samples.load(Ordering::Acquire);
        self.mark(person, None, after);
    }

    fn mark(&self, person: &str, lsn: Option<u64>, after: u64) {
        let at = Instant::now();
        let pending = lsn.is_none().then_some(after);
        self.inner
            .marks
            .entry(person.to_owned())
            .and_modify(|old| {
                // Every write must be passed: the highest position, and a pending mark that
                // only a sample started after the latest of them resolves.
                old.lsn = old.lsn.max(lsn.unwrap_or(0));
                old.pending = old.pending.max(pending);
                old.at = at;
            })
            .or_insert(Mark {
                lsn: lsn.unwrap_or(0),
                pending,
                at,
            });
    }

    /// Primary sample number `sample` read `lsn`: the pending marks made before it started are
    /// at or below that position.
    fn resolve(&self, sample: u64, lsn: u64) {
        self.inner.marks.iter_mut().for_each(|mut mark| {
            if mark.pending.is_some_and(|after| after < sample) {
                mark.lsn = mark.lsn.max(lsn);
                mark.pending = None;
            }
        });
    }

    /// Samples the WAL positions every [`POLL_INTERVAL`] until `shutdown`; nothing to do
    /// without a standby.
    pub async fn follow(self, shutdown: CancellationToken) {
        if self.inner.standby.is_none() {
            return;
        }
        info!(
            max_lag_ms = self.inner.max_lag.as_millis() as u64,
            "reads that tolerate staleness go to the standby while it lags within the bound"
        );
        let mut sampler = Sampler {
            history: VecDeque::new(),
            state: State::Unmeasured,
        };
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            self.sample(&mut sampler).await;
        }
    }

    async fn sample(&self, sampler: &mut Sampler) {
        let inner = &self.inner;
        let Some(standby) = &inner.standby else {
            return;
        };
        let sample = inner.samples.fetch_add(1, Ordering::AcqRel) + 1;
        // Timed before the query: the position read holds every commit before this instant.
        let asked = Instant::now();
        let primary = match tokio::time::timeout(POLL_TIMEOUT, primary_lsn(&inner.primary)).await {
            Ok(Ok(lsn)) => Some((asked, lsn)),
            Ok(Err(e)) => {
                warn!(error = %e, "sampling the primary's WAL position");
                None
            }
            Err(_) => None,
        };
        let standby = tokio::time::timeout(POLL_TIMEOUT, standby_position(standby)).await;
        let now = Instant::now();
        let keep = inner.max_lag.max(MARK_TTL) + POLL_INTERVAL;
        if let Some((at, lsn)) = primary {
            sampler.history.push_back((at, lsn));
            self.resolve(sample, lsn);
        }
        while sampler
            .history
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > keep)
            && sampler.history.len() > 1
        {
            sampler.history.pop_front();
        }
        let state = match standby {
            Err(_) => {
                State::Unreachable(format!("no answer within {}ms", POLL_TIMEOUT.as_millis()))
            }
            Ok(Err(e)) => State::Unreachable(e.to_string()),
            Ok(Ok(Position {
                recovering: false, ..
            })) => State::Promoted,
            Ok(Ok(Position {
                replayed, paused, ..
            })) => {
                inner.replayed.store(replayed, Ordering::Release);
                inner.metrics.replica_paused(paused);
                let latest = sampler.history.back().map_or(0, |(_, lsn)| *lsn);
                inner
                    .metrics
                    .replica_lag_bytes(latest.saturating_sub(replayed));
                // The newest primary position the standby has replayed past: everything
                // committed before that sample is on the standby.
                let reached = sampler
                    .history
                    .iter()
                    .rev()
                    .find(|(_, lsn)| *lsn <= replayed);
                match (reached, primary) {
                    (Some((at, _)), Some(_)) => {
                        let lag = if replayed >= latest {
                            Duration::ZERO
                        } else {
                            now.duration_since(*at)
                        };
                        inner.metrics.replica_lag_seconds(lag.as_secs_f64());
                        if lag <= inner.max_lag {
                            State::Usable
                        } else {
                            State::Behind
                        }
                    }
                    // Behind every sample kept: at least as old as the oldest.
                    (None, _) => {
                        let oldest = sampler
                            .history
                            .front()
                            .map_or(Duration::ZERO, |(at, _)| now.duration_since(*at));
                        inner.metrics.replica_lag_seconds(oldest.as_secs_f64());
                        if oldest > inner.max_lag {
                            State::Behind
                        } else {
                            State::Unmeasured
                        }
                    }
                    // Without the primary's position the lag is unknown.
                    (Some(_), None) => State::Unmeasured,
                }
            }
        };
        let usable = state == State::Usable;
        if usable {
            inner.usable_at_ms.store(
                u64::try_from(inner.epoch.elapsed().as_millis()).unwrap_or(u64::MAX),
                Ordering::Release,
            );
        }
        inner.usable.store(usable, Ordering::Release);
        inner.metrics.replica_usable(usable);
        let replayed = inner.replayed.load(Ordering::Acquire);
        let ttl = inner.max_lag.saturating_mul(2).max(MARK_TTL);
        inner
            .marks
            .retain(|_, mark| mark.at.elapsed() < ttl && !mark.passed(replayed));
        inner.metrics.replica_marks(inner.marks.len());
        if std::mem::discriminant(&state) != std::mem::discriminant(&sampler.state) {
            let max_lag_ms = inner.max_lag.as_millis() as u64;
            match &state {
                State::Usable => info!("the standby is within the lag bound: reading from it"),
                State::Unreachable(error) => {
                    warn!(%error, "the standby does not answer: reading the primary")
                }
                State::Promoted => {
                    warn!("the standby is not in recovery (promoted?): reading the primary")
                }
                State::Behind => {
                    warn!(
                        max_lag_ms,
                        "the standby lags beyond the bound: reading the primary"
                    )
                }
                State::Unmeasured => {
                    info!("the standby's lag is not measured yet: reading the primary")
                }
            }
        }
        sampler.state = state;
    }
}

/// The poller's own state.
struct Sampler {
    /// Primary samples (when, WAL position), oldest first, kept for the bound or a minute.
    history: VecDeque<(Instant, u64)>,
    state: State,
}

struct Position {
    recovering: bool,
    replayed: u64,
    paused: bool,
}

async fn primary_lsn(pool: &PgPool) -> std::result::Result<u64, sqlx::Error> {
    let lsn: i64 = sqlx::query_scalar("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint")
        .fetch_one(pool)
        .await?;
    Ok(u64::try_from(lsn).unwrap_or(0))
}

async fn standby_position(pool: &PgPool) -> std::result::Result<Position, sqlx::Error> {
    let (recovering, replayed, paused): (bool, Option<i64>, bool) = sqlx::query_as(
        "SELECT pg_is_in_recovery(),
                (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint,
                CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END",
    )
    .fetch_one(pool)
    .await?;
    Ok(Position {
        recovering,
        replayed: replayed.and_then(|r| u64::try_from(r).ok()).unwrap_or(0),
        paused,
    })
}

/// A failure of the standby rather than of the read: worth the read again on the primary.
fn standby_failed(error: &sqlx::Error) -> bool {
    crate::error::is_unavailable(error)
        || matches!(error, sqlx::Error::Protocol(_) | sqlx::Error::Tls(_))
        // 40001: cancelled by a conflict with recovery (a row the read needed was vacuumed).
        || matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("40001"))
}

/// The standby's pool, with the primary's session settings. Lazy: the service starts (and
/// reads the primary) while the standby is down; a read waits at most two seconds for one of
/// its connections before going to the primary instead.
pub(crate) fn connect_standby(options: &Options, url: &str) -> Result<PgPool> {
    let connect = crate::read_only_session(options, url)?;
    Ok(PgPoolOptions::new()
        .max_connections(options.max_db_connections)
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy_with(connect))
}

#[cfg(test)]
mod tests {
    use whistle_store::tokens::Role;

    use super::*;

    fn person(id: Option<&str>) -> Principal {
        Principal {
            token_id: uuid::Uuid::nil(),
            role: Role::Operator,
            area: "150600".parse().unwrap(),
            department: None,
            person: id.map(str::to_owned),
            paired: Vec::new(),
        }
    }

    fn lazy_pool() -> PgPool {
        PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .unwrap()
    }

    /// A replica whose last sample found the standby usable, replayed up to `replayed`.
    fn current(replayed: u64) -> Replica {
        let replica = Replica::new(
            lazy_pool(),
            Some(lazy_pool()),
            Duration::from_secs(2),
            Metrics::default(),
        );
        replica.inner.replayed.store(replayed, Ordering::Release);
        replica.inner.usable.store(true, Ordering::Release);
        replica
    }

    fn chosen(replica: &Replica, who: &Principal) -> Served {
        replica.choose(who).1
    }

    #[tokio::test]
    async fn without_a_standby_or_a_usable_one_everything_reads_the_primary() {
        let alone = Replica::new(
            lazy_pool(),
            None,
            Duration::from_secs(2),
            Metrics::default(),
        );
        assert_eq!(chosen(&alone, &person(None)), Served::Primary);
        let replica = current(100);
        assert_eq!(chosen(&replica, &person(Some("li-a"))), Served::Standby);
        replica.inner.usable.store(false, Ordering::Release);
        assert_eq!(chosen(&replica, &person(Some("li-a"))), Served::Primary);
    }

    #[tokio::test]
    async fn a_verdict_older_than_the_bound_is_not_trusted() {
        let replica = current(100);
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert_eq!(
            chosen(&replica, &person(None)),
            Served::Primary,
            "the sampler has not confirmed the standby for longer than the bound"
        );
        replica.inner.usable_at_ms.store(
            replica.inner.epoch.elapsed().as_millis() as u64,
            Ordering::Release,
        );
        assert_eq!(chosen(&replica, &person(None)), Served::Standby);
    }

    #[tokio::test]
    async fn a_person_reads_the_primary_until_the_standby_passed_their_write() {
        let replica = current(100);
        let (acted, other) = (person(Some("li-a")), person(Some("li-b")));
        replica.mark("li-a", Some(150), 0);
        assert_eq!(chosen(&replica, &acted), Served::Primary);
        assert_eq!(chosen(&replica, &other), Served::Standby);
        replica.inner.replayed.store(150, Ordering::Release);
        assert_eq!(chosen(&replica, &acted), Served::Standby);
        // A lower position later does not lower the requirement.
        replica.mark("li-a", Some(200), 0);
        replica.mark("li-a", Some(120), 0);
        assert_eq!(chosen(&replica, &acted), Served::Primary);
        replica.inner.replayed.store(200, Ordering::Release);
        assert_eq!(chosen(&replica, &acted), Served::Standby);
    }

    #[tokio::test]
    async fn an_event_s_actor_waits_for_a_sample_started_after_it() {
        let replica = current(100);
        replica.inner.samples.store(7, Ordering::Release);
        replica.saw("hd-150602001");
        replica.saw("system");
        replica.saw("");
        assert_eq!(replica.inner.marks.len(), 1, "only people are marked");
        let handler = person(Some("hd-150602001"));
        assert_eq!(chosen(&replica, &handler), Served::Primary);
        // Sample 7 may have read the primary before the event's commit: it does not resolve the
        // mark; sample 8, started after, does.
        replica.resolve(7, 90);
        assert_eq!(chosen(&replica, &handler), Served::Primary);
        replica.resolve(8, 130);
        assert_eq!(
            chosen(&replica, &handler),
            Served::Primary,
            "replayed 100 < 130"
        );
        replica.inner.replayed.store(130, Ordering::Release);
        assert_eq!(chosen(&replica, &handler), Served::Standby);
    }
}
