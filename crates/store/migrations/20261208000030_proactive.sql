-- 主动治理 (issue 24, item 3; docs/proactive.md): an incident's origin — a resident's report
-- (intake) or a proactive case an operator adopted from a hotspot topic (dispatch's `adopt`) —
-- with the topic's key, and each month's proposal of topics as it was computed, so the list a
-- case was adopted from can be read again unchanged.
-- Additive only: a column with a constant default (older intake keeps writing reports, which
-- is what the default says), a nullable column, a partial index and a new table.
ALTER TABLE incidents
    ADD COLUMN origin    text NOT NULL DEFAULT 'report',
    ADD COLUMN topic_key text;
-- The adopted cases, newest first, and a topic's cases.
CREATE INDEX incidents_proactive ON incidents (topic_key, created_at DESC)
    WHERE origin = 'proactive';

-- One row per proposal month (`YYYY-MM`, Ordos time): every candidate of the city, best first
-- (`whistle_domain::hotspot::Proposal` as JSON), computed from the 24 months before it and stored
-- by dispatch on the month's first adoption; never rewritten.
CREATE TABLE hotspot_proposals (
    month          text PRIMARY KEY CHECK (month ~ '^[0-9]{4}-[0-9]{2}$'),
    computed_at    timestamptz NOT NULL,
    policy_version text NOT NULL,
    proposal       jsonb NOT NULL
);
