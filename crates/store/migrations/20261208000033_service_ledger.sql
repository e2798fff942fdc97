-- The service ledger (志愿服务记录, docs/party.md; not the 挂账 ledger of hard cases): hours and
-- points of confirmed volunteer work, one row per confirmed offer, written in the confirmation's
-- transaction. Leaderboards and the yearly evaluation per unit sum it. The member's unit and team
-- are copied at confirmation, so a later move between units does not rewrite past service.
--
-- Expand only: a new table.
CREATE TABLE service_ledger (
    offer_id        uuid PRIMARY KEY REFERENCES volunteer_offers (id),
    person_id       text NOT NULL REFERENCES people (id),
    unit_id         text NOT NULL REFERENCES party_units (id),
    team_id         text REFERENCES volunteer_teams (id),
    community_code  text NOT NULL REFERENCES org_units (code),
    minutes         integer NOT NULL CHECK (minutes > 0),
    points          integer NOT NULL CHECK (points >= 0),
    rating          text CHECK (rating IN ('satisfied', 'basically_satisfied', 'unsatisfied')),
    confirmed_at    timestamptz NOT NULL
);
CREATE INDEX service_ledger_community ON service_ledger (community_code, confirmed_at);
CREATE INDEX service_ledger_unit ON service_ledger (unit_id, confirmed_at);
CREATE INDEX service_ledger_person ON service_ledger (person_id);
