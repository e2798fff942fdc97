-- Sensors and analytics systems as reporters (issue 21, item 5): the device registry, one grid
-- each, and a device's own credential (an api_tokens row of role `device`, admitted by migration
-- 29, acting as no person, its area the device's grid) naming the device.
--
-- Expand only: a new table and a nullable column, which an older version never reads or writes.
CREATE TABLE devices (
    id             text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9._:-]{1,64}$'),
    kind           text NOT NULL CHECK (kind IN ('water_level', 'smoke', 'manhole_cover', 'video_analytics')),
    grid_code      text NOT NULL REFERENCES org_units (code),
    status         text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'maintenance', 'retired')),
    label          text NOT NULL DEFAULT '',
    registered_at  timestamptz NOT NULL,
    flagged_at     timestamptz,
    flag_reason    text
);
CREATE INDEX devices_grid ON devices (grid_code);

ALTER TABLE api_tokens ADD COLUMN device_id text REFERENCES devices (id);
-- A device's token names its device; no other token does.
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_device_check
    CHECK ((role = 'device') = (device_id IS NOT NULL)) NOT VALID;
