-- 党建引领 on the screen (issue 21, item 6; docs/party.md): `GetPartyPanel` counts, for any area,
-- the registered members, the claims since midnight and the open incidents a leader endorsed.
-- Partial indexes keep those reads to the few rows they count, whatever the timelines' size.
--
-- Expand only: three indexes, which an older version never needs.
CREATE INDEX volunteer_offer_timeline_claims ON volunteer_offer_timeline (at)
    WHERE kind = 'offer.claimed';
CREATE INDEX timeline_endorsed ON timeline (incident_id)
    WHERE kind = 'incident.endorsed';
CREATE INDEX people_members_area ON people (area_code)
    WHERE role = 'member' AND left_at IS NULL;
