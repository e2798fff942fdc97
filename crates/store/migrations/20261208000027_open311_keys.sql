-- Keys of the Open311 door (issue 24, item 2; docs/open311.md): tokens of two more roles, each
-- scoped to an area, acting as no person and refused by every other door.
--
-- role open311: a third-party app or Open311 client files service requests inside `area_code`
-- (channel `open311`) and reads that area's requests, descriptions redacted;
-- role hotline: the city's 12345 hotline system, the same rights, its work orders tagged with
-- channel `hotline_12345` and keyed by their order number.
--
-- Every report's channel (渠道), written by intake from `Report.channel`, so statistics split by
-- it: `grid_worker` (a grid worker's own report), `open311`, `hotline_12345`.
--
-- Expand only: the old code never makes nor reads tokens of these roles (an old query service
-- refuses them as an unknown role, "corrupt"), and an old dispatch's reports take the default
-- channel, which is theirs. The two CHECKs below are dropped and re-added wider, which the check
-- counts as contracting:
-- contract: safe after b7d7008: api_tokens' role and person CHECKs re-added wider (open311 and hotline admitted, as no person); every token an older version writes passes them
ALTER TABLE api_tokens DROP CONSTRAINT IF EXISTS api_tokens_role_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_role_check
    CHECK (role IN ('operator', 'liaison', 'viewer', 'grid_worker', 'open311', 'hotline'));

-- The unnamed CHECK `(role = 'viewer') = (person_id IS NULL)` of the first migration, found by
-- its definition since PostgreSQL named it: the keys act as no person either.
DO $$
DECLARE
    name text;
BEGIN
    FOR name IN
        SELECT conname FROM pg_constraint
        WHERE conrelid = 'api_tokens'::regclass AND contype = 'c'
          AND pg_get_constraintdef(oid) LIKE '%''viewer''::text) = (person_id IS NULL)%'
    LOOP
        EXECUTE format('ALTER TABLE api_tokens DROP CONSTRAINT %I', name);
    END LOOP;
END $$;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_person_check
    CHECK ((role IN ('viewer', 'open311', 'hotline')) = (person_id IS NULL));

ALTER TABLE reports ADD COLUMN channel text NOT NULL DEFAULT 'grid_worker'
    CHECK (channel IN ('grid_worker', 'open311', 'hotline_12345'));

-- The door reads an area's reports newest first (GET requests), and the hotspot analysis
-- (ListHotspots, docs/proactive.md) an area's reports of the last 24 months; like
-- `incidents_grid_created`. Intake writes one more index entry a report.
CREATE INDEX reports_grid_received ON reports (grid_code text_pattern_ops, received_at DESC);
