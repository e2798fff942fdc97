//! Writing timeline rows: an incident's entries, numbered after its last one. Intake adds its
//! rows to its batch statement and saving a transition appends them on their own.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::Result;

/// An entry for the incident's timeline.
#[derive(Debug, Clone)]
pub struct TimelineEntry {
    pub kind: String,
    pub actor_id: String,
    pub at: DateTime<Utc>,
    pub note: String,
    pub data: Option<serde_json::Value>,
}

/// Timeline entries of any incidents, appended after each incident's last one in the order pushed.
#[derive(Default)]
pub(crate) struct TimelineRows<'a> {
    ids: Vec<Uuid>,
    kinds: Vec<&'a str>,
    actors: Vec<&'a str>,
    at: Vec<DateTime<Utc>>,
    notes: Vec<String>,
    data: Vec<Option<serde_json::Value>>,
    /// The incident is new in this statement: its entries are numbered from 1 without looking.
    first: Vec<bool>,
}

impl<'a> TimelineRows<'a> {
    pub(crate) fn push(
        &mut self,
        id: Uuid,
        kind: &'a str,
        actor: &'a str,
        at: DateTime<Utc>,
        note: String,
        data: Option<serde_json::Value>,
    ) {
        self.ids.push(id);
        self.kinds.push(kind);
        self.actors.push(actor);
        self.at.push(at);
        self.notes.push(note);
        self.data.push(data);
        self.first.push(false);
    }

    /// An entry of an incident the same statement inserts: numbered from 1, with no lookup of
    /// the incident's last entry.
    pub(crate) fn push_first(
        &mut self,
        id: Uuid,
        kind: &'a str,
        actor: &'a str,
        at: DateTime<Utc>,
        note: String,
    ) {
        self.push(id, kind, actor, at, note, None);
        *self.first.last_mut().expect("pushed") = true;
    }

    pub(crate) async fn append(self, conn: &mut PgConnection) -> Result<()> {
        if self.ids.is_empty() {
            return Ok(());
        }
        static SQL: LazyLock<String> =
            LazyLock::new(|| format!("INSERT INTO timeline {}", TimelineRows::select(1)));
        self.bind(sqlx::query(SQL.as_str()))
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// `(columns) SELECT …` of the rows, for an `INSERT INTO timeline`, with the rows' seven
    /// arrays as parameters `$first`…`$first+6` (bound in that order by [`TimelineRows::bind`]).
    pub(crate) fn select(first: usize) -> String {
        let [ids, kinds, actors, at, notes, data, new] = std::array::from_fn(|k| first + k);
        format!(
            "(incident_id, seq, kind, actor_id, at, note, data)
             SELECT t.id,
                    CASE WHEN t.new THEN 0
                         ELSE coalesce((SELECT max(seq) FROM timeline WHERE incident_id = t.id), 0) END
                        + row_number() OVER (PARTITION BY t.id ORDER BY t.n),
                    t.kind, t.actor, t.at, t.note, t.data
             FROM UNNEST(${ids}::uuid[], ${kinds}::text[], ${actors}::text[], ${at}::timestamptz[],
                         ${notes}::text[], ${data}::jsonb[], ${new}::bool[])
                 WITH ORDINALITY AS t(id, kind, actor, at, note, data, new, n)"
        )
    }

    pub(crate) fn bind<'q>(
        self,
        query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>
    where
        'a: 'q,
    {
        query
            .bind(self.ids)
            .bind(self.kinds)
            .bind(self.actors)
            .bind(self.at)
            .bind(self.notes)
            .bind(self.data)
            .bind(self.first)
    }
}
