//! The live aggregates behind `GetOverview` and `GetTrend`: per-area counters in memory, kept
//! current from `WHISTLE_EVENTS` and rebuilt from PostgreSQL at start, so an overview or a trend
//! reads a few counters instead of scanning the area's incidents, tasks and timeline.
//!
//! **Model.** Per incident the store keeps its [`Facts`] — the handful of fields the overview
//! counts — and its version. The counters are a pure function of the facts: [`contributions`]
//! lists what one incident adds to each area that contains it (everything, the city, its
//! district, street, community and grid). Every event carries the incident as it stands after its
//! transition, so applying one replaces the incident's facts: the old facts' contributions are
//! taken away and the new ones added — by the same function, so adding and removing can never
//! disagree.
//!
//! **Versions.** An event whose version is not newer than the stored one changes nothing, which
//! makes replays and the overlap between the rebuild's snapshot and the stream harmless. One
//! transition publishes several events with the same version (`task.resolved` then
//! `incident.resolved`); each lists the kinds of the whole transition (`transition_kinds`), so the
//! first one seen brings everything, including what only the kinds tell: a whistle, a
//! resolution, a follow-up, and when. Terminal incidents (closed, closed unverified, duplicate)
//! never change again, so they shrink to their version and when they settled.
//!
//! **Bounded.** Nothing here grows with the history, only with the windows. A terminal incident
//! is dropped once it settled more than [`SETTLED_KEPT`] (a day) before the newest transition
//! seen (the watermark, capped by the clock): that mark is the store's floor. Every event of an
//! incident happens by the time it settles, so an event from before the floor about an incident
//! the store does not hold is about a dropped one and changes nothing — a replay, the rebuild's
//! overlap or a republished outbox row can neither resurrect nor double count it — while a new
//! incident's events come after the floor (the relay publishes in commit order). Comments bump
//! no version and are skipped. Scoreboard months older than the oldest kept day are dropped
//! (`GetScoreboard` reads them by SQL).
//!
//! **Time.** Day figures are kept per area and Shanghai day, the trend's per area and UTC hour
//! (whole hours of Shanghai too). Two figures depend on the time of day: `overdue` (open and past
//! `due_at`, before dispatch's timer sets the flag) and the resolution rate (deadlines up to now,
//! not later today). For those each area keeps its deadlines to the microsecond from the start of
//! the current hour on, and one sum of those before it (all past): of open, unflagged incidents,
//! and of today's — so a read walks at most an hour of deadlines however many open incidents are
//! late. Day counters older than the longest window (366 days, plus one), hour counters older than
//! the longest trend (168 hours, plus one) and the deadlines of past days (but for open, unflagged
//! ones) are pruned as hours go by; a change to a pruned or summed entry goes to the same place
//! on both the removing and the adding side, so pruning keeps the diffs consistent.
//!
//! Timestamps are compared in microseconds, truncated as sqlx stores them, so that comparisons
//! such as "reported in by the deadline" give what PostgreSQL gives for the stored values.
//!
//!
//! **The scoreboard.** The same facts also feed per (month, department) and (month, street)
//! counters (`board`), by scoreboard.rs's definitions, for the months from that of the oldest day
//! counter on:
//! a month's row is a dozen counts, the times to accept of its tasks (a multiset, for the exact
//! median) and its deadlines per day, plus per hour and to the microsecond from yesterday on (for
//! "due up to now", which cuts the current hour). The rows listed (departments, streets) and the org units an area must name are
//! read with each rebuild, as dispatch reads the org once at start.
//!
//! One module per seam: `time` (microseconds, Shanghai days, UTC hours), `area` (the keys of the
//! areas containing a grid), `facts` (one incident, and what an event changes of it), `counters`
//! (what an incident adds to an area, and an area's counters), `board` (what it adds to the
//! scoreboard's rows), `store` (one generation of
//! incidents and counters), `handle` ([`Aggregates`], the generation the RPCs read), `feed`
//! (rebuild, then follow the stream) and `load` (the rebuild's snapshot from PostgreSQL).

mod area;
mod board;
mod counters;
mod facts;
mod feed;
#[cfg(test)]
mod fixtures;
mod handle;
mod late;
mod load;
mod store;
mod time;

pub(crate) use feed::Feed;
pub use handle::Aggregates;
pub use store::Sizes;

use area::{AreaKey, Grid};
use counters::{contributions, level_index, status_index, AreaCounters};
use facts::{
    CategoryId, Change, DepartmentId, Facts, Kinds, Mark, MarkKind, State, TaskFact, Update,
    Urgency,
};
use store::Store;
use time::{
    day_of, day_start, hour_of, hour_start, micros, proto_micros, Day, Hour, Micros, KEPT_DAYS,
    KEPT_HOURS, SETTLED_KEPT,
};
