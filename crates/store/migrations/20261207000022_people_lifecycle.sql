-- People come and go (issue 25, item 2): a person is never deleted, so the timeline's actor names
-- and the audit log keep resolving; instead a person joins and may leave, naming who took over.
-- `joined_at` is NULL for people seeded before lifecycles were kept. A person who left
-- (`left_at` set) is no one's recipient, deputy, token holder or acting person any more.
--
-- Expand-only: nullable columns and indexes, so a running previous version keeps working.
-- The role set is the CHECK `people_role_check` (and `people_area_check` for the roles posted to
-- an area): adding a role (issue 21's leaders and Party members) is a change of those CHECKs.
ALTER TABLE people
    ADD COLUMN joined_at     timestamptz,
    ADD COLUMN left_at       timestamptz,
    ADD COLUMN successor_id  text REFERENCES people (id),
    ADD CONSTRAINT people_successor_only_when_left CHECK (successor_id IS NULL OR left_at IS NOT NULL),
    ADD CONSTRAINT people_successor_not_self CHECK (successor_id <> id),
    ADD CONSTRAINT people_left_after_joined CHECK (left_at IS NULL OR joined_at IS NULL OR left_at >= joined_at);

-- What a leaver still holds: open tasks they reported in for, people whose deputy they are,
-- their tokens.
CREATE INDEX tasks_holder ON tasks (holder_id) WHERE holder_id IS NOT NULL;
CREATE INDEX people_deputy ON people (deputy_id) WHERE deputy_id IS NOT NULL;
CREATE INDEX api_tokens_person ON api_tokens (person_id) WHERE revoked_at IS NULL;
