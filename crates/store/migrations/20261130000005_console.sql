-- The web console: grid workers sign in with tokens of their own (the report form), and the
-- trend chart counts resolutions per hour (`incident.resolved` entries of the timeline by time).
--
-- role grid_worker: reports from its grid (`area_code`) as `person_id`, reads its own reports and
-- follows up (回访) on them.
ALTER TABLE api_tokens DROP CONSTRAINT IF EXISTS api_tokens_role_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_role_check
    CHECK (role IN ('operator', 'liaison', 'viewer', 'grid_worker'));

CREATE INDEX timeline_resolved_at ON timeline (at) WHERE kind = 'incident.resolved';
