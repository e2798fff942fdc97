-- Photos of incidents are personal data like residents' contacts (issue 19, "Photos"): every photo
-- whistle-query serves is recorded in the same access log, door `GetPhoto`, naming the photo (its
-- SHA-256) and, for a report's photo, the report (empty for a resolution's "after" photo).
ALTER TABLE contact_access ADD COLUMN photo_id text NOT NULL DEFAULT '';
