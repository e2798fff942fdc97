-- Devices' reports through intake (issue 21, item 5; docs/devices.md): the channel `device` of a
-- report, the readings intake's per-device rules decided on, and the flag's clearing.
--
-- `device_readings`: one row per device report intake took (not the rate-limited ones, which are
-- rejections): the category, whether it was a detection or its clearing, and the verdict. Intake
-- rebuilds its per-device memory from it when it takes the lease over, so a restart neither
-- reopens a folded storm nor forgets a flag. `devices.history_from`: set when an operator clears
-- a flag, the readings before it are forgotten.
--
-- Expand: a new table, a nullable column, a notification. The reports' channel CHECK is dropped
-- and re-added wider, which the check counts as contracting:
-- contract: safe after f9bf485: reports' channel CHECK re-added wider (device admitted); every report an older version writes passes it
ALTER TABLE reports DROP CONSTRAINT IF EXISTS reports_channel_check;
ALTER TABLE reports ADD CONSTRAINT reports_channel_check
    CHECK (channel IN ('grid_worker', 'open311', 'hotline_12345', 'device'));

CREATE TABLE device_readings (
    report_id    text PRIMARY KEY,
    device_id    text NOT NULL REFERENCES devices (id),
    category     text NOT NULL,
    alarm        boolean NOT NULL,
    verdict      text NOT NULL CHECK (verdict IN ('open', 'fold', 'cleared', 'flagged', 'suppressed')),
    received_at  timestamptz NOT NULL,
    -- Its place in WHISTLE_REPORTS: readings of one batch share received_at, and the rules'
    -- memory is rebuilt in the order intake took them.
    stream_sequence bigint
);
CREATE INDEX device_readings_device ON device_readings (device_id, received_at);
CREATE INDEX device_readings_received ON device_readings (received_at);

ALTER TABLE devices ADD COLUMN history_from timestamptz;

-- Dispatch follows the registry (a device registered, retired, flagged, its flag cleared) on this
-- channel, as it follows the org on `whistle_people`.
CREATE FUNCTION devices_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('whistle_devices', '');
    RETURN NULL;
END $$;
CREATE TRIGGER devices_changed AFTER INSERT OR UPDATE OR DELETE ON devices
    FOR EACH STATEMENT EXECUTE FUNCTION devices_notify();
