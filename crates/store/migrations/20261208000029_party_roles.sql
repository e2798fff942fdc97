-- The Party-building layer's identities (issue 21): in-service Party members (在职党员), who
-- register with the community they live in and claim its volunteer offers; paired leaders
-- (结对领导), posted at the city or a district (banner) and paired with streets and communities;
-- and devices (sensors, video-analytics systems), which report from one grid as no person.
--
-- One migration widens every role CHECK at once so the layer's parts, built apart, never undo
-- each other's roles. A member's and a leader's `area_code` is where they are posted: a member's
-- community, a leader's city or district. A device's token names its grid as its area.
--
-- Expand only: an older version never writes these roles. The CHECKs are dropped and re-added wider:
-- contract: safe after fb30c25: people's and api_tokens' role CHECKs re-added wider (member, leader, device admitted); every row an older version writes passes them
ALTER TABLE people DROP CONSTRAINT IF EXISTS people_role_check;
ALTER TABLE people ADD CONSTRAINT people_role_check
    CHECK (role IN ('grid_worker', 'liaison', 'operator', 'handler', 'member', 'leader'));
ALTER TABLE people DROP CONSTRAINT IF EXISTS people_area_check;
ALTER TABLE people ADD CONSTRAINT people_area_check
    CHECK ((role IN ('operator', 'handler', 'member', 'leader')) = (area_code IS NOT NULL));

ALTER TABLE api_tokens DROP CONSTRAINT IF EXISTS api_tokens_role_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_role_check
    CHECK (role IN ('operator', 'liaison', 'viewer', 'grid_worker', 'open311', 'hotline',
                    'member', 'leader', 'device'));
ALTER TABLE api_tokens DROP CONSTRAINT IF EXISTS api_tokens_person_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_person_check
    CHECK ((role IN ('viewer', 'open311', 'hotline', 'device')) = (person_id IS NULL));
