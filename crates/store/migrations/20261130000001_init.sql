-- The org tree, departments and people: loaded by `whistle seed`, read into memory by dispatch.
CREATE TABLE org_units (
    code            text PRIMARY KEY,
    parent_code     text REFERENCES org_units (code),
    level           text NOT NULL CHECK (level IN ('city', 'district', 'street', 'community', 'grid')),
    name            text NOT NULL,
    classification  text NOT NULL DEFAULT '',
    lat             double precision NOT NULL,
    lon             double precision NOT NULL
);
CREATE INDEX org_units_parent ON org_units (parent_code);

CREATE TABLE departments (
    code       text PRIMARY KEY,
    name       text NOT NULL,
    kind       text NOT NULL,
    area_code  text NOT NULL REFERENCES org_units (code)
);

CREATE TABLE people (
    id               text PRIMARY KEY,
    name             text NOT NULL,
    phone            text NOT NULL,
    role             text NOT NULL CHECK (role IN ('grid_worker', 'liaison', 'operator')),
    grid_code        text REFERENCES org_units (code),
    department_code  text REFERENCES departments (code),
    area_code        text REFERENCES org_units (code),
    CHECK ((role = 'grid_worker') = (grid_code IS NOT NULL)),
    CHECK ((role = 'liaison') = (department_code IS NOT NULL)),
    CHECK ((role = 'operator') = (area_code IS NOT NULL))
);

-- One row per incident; only whistle-dispatch writes here.
CREATE TABLE incidents (
    id              uuid PRIMARY KEY,
    version         bigint NOT NULL DEFAULT 1,
    status          text NOT NULL,
    level           text NOT NULL,
    category        text NOT NULL,
    urgency         text NOT NULL,
    title           text NOT NULL,
    description     text NOT NULL,
    district_code   text NOT NULL,
    street_code     text NOT NULL,
    community_code  text NOT NULL,
    grid_code       text NOT NULL,
    lat             double precision,
    lon             double precision,
    address         text NOT NULL DEFAULT '',
    reporter_id     text NOT NULL,
    report_count    integer NOT NULL DEFAULT 1,
    policy_version  text NOT NULL,
    occurred_at     timestamptz,
    reported_at     timestamptz NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    due_at          timestamptz
);
-- Newest first within an area (prefix of the grid code), for the screens.
CREATE INDEX incidents_grid_created ON incidents (grid_code text_pattern_ops, created_at DESC, id DESC);
CREATE INDEX incidents_created ON incidents (created_at DESC, id DESC);

-- Every report as filed, including duplicates attached to an existing incident.
-- The primary key is what makes a republished report a no-op.
CREATE TABLE reports (
    report_id        text PRIMARY KEY,
    incident_id      uuid NOT NULL REFERENCES incidents (id) DEFERRABLE INITIALLY DEFERRED,
    reporter_id      text NOT NULL,
    grid_code        text NOT NULL,
    category         text NOT NULL,
    payload          bytea NOT NULL,
    stream_sequence  bigint,
    received_at      timestamptz NOT NULL
);
CREATE INDEX reports_incident ON reports (incident_id);
CREATE INDEX reports_reporter ON reports (reporter_id, received_at DESC);

-- The incident's history, append-only (enforced below).
CREATE TABLE timeline (
    incident_id  uuid NOT NULL REFERENCES incidents (id),
    seq          integer NOT NULL,
    kind         text NOT NULL,
    actor_id     text NOT NULL,
    at           timestamptz NOT NULL,
    note         text NOT NULL DEFAULT '',
    data         jsonb,
    PRIMARY KEY (incident_id, seq)
);

CREATE FUNCTION timeline_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the timeline is append-only: % is not allowed', TG_OP;
END
$$;
CREATE TRIGGER timeline_append_only BEFORE UPDATE OR DELETE ON timeline
    FOR EACH ROW EXECUTE FUNCTION timeline_is_append_only();

-- Reports that failed validation; the original bytes also went to WHISTLE_REJECTED.
-- source_key identifies the original JetStream message, so a redelivery is recorded once.
CREATE TABLE rejected_reports (
    source_key       text PRIMARY KEY,
    reason           text NOT NULL,
    message          text NOT NULL,
    subject          text NOT NULL,
    report_id        text,
    reporter_id      text,
    stream_sequence  bigint,
    payload          bytea NOT NULL,
    received_at      timestamptz NOT NULL
);
CREATE INDEX rejected_reports_received ON rejected_reports (received_at DESC);

-- Transactional outbox: written in the same transaction as the state change, published to
-- WHISTLE_EVENTS by the relay with Nats-Msg-Id = event_id, then deleted.
CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    event_id    uuid NOT NULL UNIQUE,
    subject     text NOT NULL,
    payload     bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
