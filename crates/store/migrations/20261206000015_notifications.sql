-- Notifications: what reached whom about which event, by which channel (issue 20, item 0).
--
-- A person's quiet hours are local wall-clock times (Asia/Shanghai); outbound messages to them
-- wait until the hours end, and a deputy is told instead when that is too late. NULL = none.
ALTER TABLE people
    ADD COLUMN quiet_start time,
    ADD COLUMN quiet_end   time,
    ADD COLUMN deputy_id   text REFERENCES people (id),
    ADD CONSTRAINT people_quiet_hours_whole CHECK ((quiet_start IS NULL) = (quiet_end IS NULL)),
    ADD CONSTRAINT people_deputy_not_self CHECK (deputy_id <> id);

-- One row per (event, recipient, channel): written by dispatch as it reads an event, so a
-- redelivered event adds nothing. `recipient` is a person id, or for a group robot the department
-- code. Console rows are delivered when written and read when the person opens them; outbound rows
-- are retried until delivered or given up.
CREATE TABLE notifications (
    id               uuid PRIMARY KEY,
    event_id         uuid NOT NULL,
    recipient        text NOT NULL,
    channel          text NOT NULL CHECK (channel IN ('console', 'sms', 'webhook')),
    person_id        text REFERENCES people (id),
    kind             text NOT NULL,
    incident_id      uuid REFERENCES incidents (id),
    task_id          integer,
    department_code  text,
    title            text NOT NULL,
    body             text NOT NULL,
    created_at       timestamptz NOT NULL,
    status           text NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz,
    delivered_at     timestamptz,
    last_error       text,
    -- When this row's deputy was told (at most once).
    escalated_at     timestamptz,
    -- The row this one stands in for, when it went to a deputy.
    deputy_of        uuid REFERENCES notifications (id),
    read_at          timestamptz,
    UNIQUE (event_id, recipient, channel),
    CHECK ((channel = 'webhook') = (person_id IS NULL)),
    CHECK ((status = 'pending') = (next_attempt_at IS NOT NULL)),
    CHECK ((status = 'delivered') = (delivered_at IS NOT NULL))
);

-- The sender's queue: outbound rows due, oldest first.
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE status = 'pending';
-- A person's list, newest first, and their unread count.
CREATE INDEX notifications_person ON notifications (person_id, created_at DESC) WHERE channel = 'console';
CREATE INDEX notifications_unread ON notifications (person_id) WHERE channel = 'console' AND read_at IS NULL;
