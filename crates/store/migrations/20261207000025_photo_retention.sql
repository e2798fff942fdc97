-- Photos kept only as long as the policy's `[retention] photos` allows, and erased on a person's
-- request (issue 25, item 7; docs/privacy.md). A photo is named by its hash and may be shown by
-- several incidents, so it goes only once every incident showing it settled long enough.

-- Every incident showing a photo: a report's "before" photos (`report_id` the report's) and a
-- resolution's "after" photos (`report_id` empty). Intake writes a report's with the report; the
-- trigger below writes a resolution's with its timeline entry.
CREATE TABLE photo_refs (
    photo_id     text NOT NULL,
    incident_id  uuid NOT NULL REFERENCES incidents (id) DEFERRABLE INITIALLY DEFERRED,
    report_id    text NOT NULL DEFAULT '',
    PRIMARY KEY (photo_id, incident_id, report_id)
);
CREATE INDEX photo_refs_incident ON photo_refs (incident_id);

CREATE FUNCTION photo_refs_of_timeline() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF jsonb_typeof(NEW.data->'photos') = 'array' THEN
        INSERT INTO photo_refs (photo_id, incident_id)
        SELECT DISTINCT p, NEW.incident_id FROM jsonb_array_elements_text(NEW.data->'photos') AS p
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER timeline_photo_refs AFTER INSERT ON timeline
    FOR EACH ROW WHEN (NEW.data ? 'photos') EXECUTE FUNCTION photo_refs_of_timeline();

INSERT INTO photo_refs (photo_id, incident_id)
SELECT DISTINCT p, t.incident_id
FROM timeline t, jsonb_array_elements_text(t.data->'photos') AS p
WHERE jsonb_typeof(t.data->'photos') = 'array'
ON CONFLICT DO NOTHING;

-- Reports stored before this migration: their photos are inside the protobuf payload, so dispatch
-- indexes them (decoding each) before its first photo retention pass, which waits until this
-- table is empty.
CREATE TABLE photo_refs_pending (
    report_id  text PRIMARY KEY
);
INSERT INTO photo_refs_pending SELECT report_id FROM reports;

-- A photo erased: from then on it is not served (GetPhoto says why), and its bytes leave the
-- object store bucket WHISTLE_PHOTOS; `removed_at` is when they did (NULL: dispatch's next
-- retention pass tries again). One row per photo, so replicas erasing at once erase it once.
CREATE TABLE photo_erasures (
    photo_id    text PRIMARY KEY,
    erased_at   timestamptz NOT NULL,
    -- The person who handled a request, or `system` for the retention job.
    erased_by   text NOT NULL,
    why         text NOT NULL,
    removed_at  timestamptz
);
CREATE INDEX photo_erasures_to_remove ON photo_erasures (erased_at) WHERE removed_at IS NULL;
