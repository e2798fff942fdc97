-- The 双报到 registry (issue 21, docs/party.md): units' Party organisations and in-service Party
-- members registered with the community where they live, and the community's volunteer teams.
--
-- A member is a `people` row of role `member` whose `area_code` is their community (migration 29),
-- so tokens and the auth callout name them like anyone else; what only the registry knows (their
-- unit, skills, availability, when they registered and left it) lives here, keyed by the person.
-- The org tree's loader reads only staff roles, so 21,790 members never enter dispatch's org index.
--
-- Expand only: new tables.

-- A unit's (机关、企事业单位) Party organisation, itself registered with a community.
CREATE TABLE party_units (
    id               text PRIMARY KEY,
    name             text NOT NULL,
    community_code   text NOT NULL REFERENCES org_units (code),
    registered_at    timestamptz NOT NULL,
    deregistered_at  timestamptz
);
CREATE INDEX party_units_community ON party_units (community_code);

CREATE TABLE party_members (
    person_id        text PRIMARY KEY REFERENCES people (id),
    unit_id          text NOT NULL REFERENCES party_units (id),
    skills           text[] NOT NULL DEFAULT '{}',
    availability     text NOT NULL
        CHECK (availability IN ('weekday_evenings', 'weekends', 'evenings_and_weekends', 'any_time')),
    registered_at    timestamptz NOT NULL,
    -- Leaving the registry starts the retention period; the retention job then anonymises the
    -- person's name and phone (people) and stamps `anonymised_at`.
    deregistered_at  timestamptz,
    anonymised_at    timestamptz,
    CHECK (anonymised_at IS NULL OR deregistered_at IS NOT NULL)
);
CREATE INDEX party_members_unit ON party_members (unit_id);
CREATE INDEX party_members_to_anonymise ON party_members (deregistered_at)
    WHERE deregistered_at IS NOT NULL AND anonymised_at IS NULL;

CREATE TABLE volunteer_teams (
    id               text PRIMARY KEY,
    community_code   text NOT NULL REFERENCES org_units (code),
    specialty        text NOT NULL
        CHECK (specialty IN ('patrol', 'mediation', 'legal_aid', 'elder_care', 'environment',
                             'child_care', 'health', 'culture')),
    name             text NOT NULL,
    created_at       timestamptz NOT NULL
);
CREATE INDEX volunteer_teams_community ON volunteer_teams (community_code);

CREATE TABLE volunteer_team_members (
    team_id    text NOT NULL REFERENCES volunteer_teams (id),
    person_id  text NOT NULL REFERENCES party_members (person_id),
    PRIMARY KEY (team_id, person_id)
);
CREATE INDEX volunteer_team_members_person ON volunteer_team_members (person_id);
