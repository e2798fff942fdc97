-- 领导结对联系 (issue 21, item 4): each street and community has its paired leaders, people of
-- role `leader` posted at the city or a district (migration 29). A pairing is data, written by
-- `whistle seed` (the Ordos leaders) and `whistle leaders`, checked against the org tree by
-- `whistle_domain::leaders::check` before it is written; dispatch reads it to notify the leaders of
-- an area's escalated, overdue and supervised incidents and to let them endorse a 督办 there.
--
-- Expand only: a new table, which an older version never reads.
CREATE TABLE leader_pairings (
    leader_id  text NOT NULL REFERENCES people (id),
    area_code  text NOT NULL REFERENCES org_units (code),
    paired_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (leader_id, area_code)
);

-- The leaders of an incident's street and community: looked up by area.
CREATE INDEX leader_pairings_area ON leader_pairings (area_code);
