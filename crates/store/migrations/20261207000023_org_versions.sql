-- The city's organisation as imports (issue 25, item 1; docs/operations.md "The city's
-- organisation"): grids get a boundary, and every applied import is a numbered version.
--
-- boundary: a grid's GeoJSON geometry (Polygon or MultiPolygon, [lon, lat]), checked by the import
-- (closed rings of at least 4 positions in range); lat/lon stay the unit's centre.
ALTER TABLE org_units ADD COLUMN boundary jsonb
    CHECK (boundary IS NULL OR (level = 'grid' AND boundary->>'type' IN ('Polygon', 'MultiPolygon')));

-- One row per applied import, written in the transaction that changes the org (with its
-- `org.import` audit entry): who, when, the SHA-256 of the files read, their names, and the counts
-- by part. Imports that change nothing write no row. Kept forever: no row changes or goes.
CREATE TABLE org_versions (
    number        bigint PRIMARY KEY CHECK (number > 0),
    actor         text NOT NULL CHECK (actor <> ''),
    applied_at    timestamptz NOT NULL,
    input_sha256  text NOT NULL,
    files         text[] NOT NULL,
    summary       jsonb NOT NULL
);

CREATE FUNCTION org_versions_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'org versions are kept: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER org_versions_kept BEFORE UPDATE OR DELETE ON org_versions
    FOR EACH ROW EXECUTE FUNCTION org_versions_guard();
CREATE TRIGGER org_versions_not_truncated BEFORE TRUNCATE ON org_versions
    FOR EACH STATEMENT EXECUTE FUNCTION org_versions_guard();
