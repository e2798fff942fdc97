-- The escalation engine: incident state, department tasks, durable timers, idempotent commands,
-- cluster alerts, and street/community staff (handlers).

ALTER TABLE people DROP CONSTRAINT IF EXISTS people_role_check;
ALTER TABLE people DROP CONSTRAINT IF EXISTS people_check2;
ALTER TABLE people ADD CONSTRAINT people_role_check
    CHECK (role IN ('grid_worker', 'liaison', 'operator', 'handler'));
ALTER TABLE people ADD CONSTRAINT people_area_check
    CHECK ((role IN ('operator', 'handler')) = (area_code IS NOT NULL));

-- `state` is the whole domain Incident (whistle_domain::incident::Incident) as JSON, written by
-- dispatch in the same transaction as the columns, which are its projection for queries.
-- `due_at` is the resolve (SLA) deadline; `level_due_at` the current level's window.
ALTER TABLE incidents
    ADD COLUMN state           jsonb,
    ADD COLUMN level_due_at    timestamptz,
    ADD COLUMN overdue         boolean NOT NULL DEFAULT false,
    ADD COLUMN reopen_count    integer NOT NULL DEFAULT 0,
    ADD COLUMN satisfaction    text,
    ADD COLUMN resolved_at     timestamptz,
    ADD COLUMN closed_at       timestamptz,
    ADD COLUMN duplicate_of    uuid REFERENCES incidents (id);
-- Duplicate detection looks for open incidents of a category near a place, recently.
CREATE INDEX incidents_open_category ON incidents (category, created_at DESC)
    WHERE status IN ('handling', 'whistled', 'accepted');

CREATE TABLE tasks (
    incident_id     uuid NOT NULL REFERENCES incidents (id),
    task_id         integer NOT NULL,
    round           integer NOT NULL,
    department_code text NOT NULL,
    status          text NOT NULL,
    dispatched_at   timestamptz NOT NULL,
    accept_due_at   timestamptz NOT NULL,
    resolve_due_at  timestamptz NOT NULL,
    accepted_at     timestamptz,
    resolved_at     timestamptz,
    holder_id       text,
    return_reason   text,
    supervised      boolean NOT NULL DEFAULT false,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (incident_id, task_id)
);
CREATE INDEX tasks_department ON tasks (department_code, status);

-- Durable timers: one row per incident and timer key; replicas claim due rows with
-- FOR UPDATE SKIP LOCKED, so none fires twice.
CREATE TABLE timers (
    incident_id  uuid NOT NULL REFERENCES incidents (id),
    key          text NOT NULL,
    due_at       timestamptz NOT NULL,
    PRIMARY KEY (incident_id, key)
);
CREATE INDEX timers_due ON timers (due_at);

-- Commands already applied, so a retry with the same command id gets the first answer.
CREATE TABLE commands (
    command_id   text PRIMARY KEY,
    incident_id  uuid,
    verb         text NOT NULL,
    actor_id     text NOT NULL,
    reply        bytea NOT NULL,
    applied_at   timestamptz NOT NULL
);

-- One alert per community, category and window (5+ reports in 30 minutes by default).
CREATE TABLE cluster_alerts (
    community_code  text NOT NULL,
    category        text NOT NULL,
    window_start    timestamptz NOT NULL,
    reports         integer NOT NULL,
    raised_at       timestamptz NOT NULL,
    PRIMARY KEY (community_code, category, window_start)
);

-- Cluster detection counts recent reports of a category.
CREATE INDEX reports_category_received ON reports (category, received_at);
