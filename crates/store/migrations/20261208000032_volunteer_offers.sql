-- 群众点单、社区派单、党员接单 (issue 21, docs/party.md): what a community offers its volunteers —
-- a community-level incident the policy lets volunteers take, or a resident's small wish (微心愿,
-- a need that is not a complaint) — and who claimed, did and confirmed it.
--
-- `state` is the pure `whistle_domain::volunteer::Offer`; the columns project it for the claim
-- deadline's timer, the lists and the screen. A claim is decided by the row: the transition runs
-- under `FOR UPDATE` and saves only over the version it read, so of two members claiming at once
-- exactly one wins. A claim's deadline is the offer's durable timer (`claim_deadline` while
-- `status = 'claimed'`): the loop that fires it returns the offer only if it still is claimed by
-- the same claim, so it fires once.
--
-- Expand only: new tables.
CREATE TABLE volunteer_offers (
    id              uuid PRIMARY KEY,
    version         bigint NOT NULL,
    community_code  text NOT NULL REFERENCES org_units (code),
    kind            text NOT NULL CHECK (kind IN ('incident', 'wish')),
    incident_id     uuid REFERENCES incidents (id),
    category        text,
    team_id         text REFERENCES volunteer_teams (id),
    status          text NOT NULL CHECK (status IN ('open', 'claimed', 'done', 'confirmed', 'withdrawn')),
    claimed_by      text REFERENCES people (id),
    claim_deadline  timestamptz,
    offered_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    state           jsonb NOT NULL,
    CHECK ((kind = 'incident') = (incident_id IS NOT NULL)),
    CHECK ((status = 'claimed') = (claim_deadline IS NOT NULL)),
    CHECK ((status IN ('claimed', 'done', 'confirmed')) = (claimed_by IS NOT NULL))
);
CREATE INDEX volunteer_offers_due ON volunteer_offers (claim_deadline) WHERE status = 'claimed';
CREATE INDEX volunteer_offers_community ON volunteer_offers (community_code, status, offered_at);
CREATE INDEX volunteer_offers_claimant ON volunteer_offers (claimed_by) WHERE claimed_by IS NOT NULL;
-- One live offer per incident: offering it again while open, claimed or done is refused.
CREATE UNIQUE INDEX volunteer_offers_one_live_per_incident ON volunteer_offers (incident_id)
    WHERE incident_id IS NOT NULL AND status IN ('open', 'claimed', 'done');

-- Each step of an offer, with actor and time; append-only like the incidents' timeline.
CREATE TABLE volunteer_offer_timeline (
    offer_id  uuid NOT NULL REFERENCES volunteer_offers (id),
    seq       integer NOT NULL,
    kind      text NOT NULL,
    actor_id  text NOT NULL,
    at        timestamptz NOT NULL,
    note      text NOT NULL DEFAULT '',
    data      jsonb,
    PRIMARY KEY (offer_id, seq)
);
CREATE TRIGGER volunteer_offer_timeline_append_only BEFORE UPDATE OR DELETE ON volunteer_offer_timeline
    FOR EACH ROW EXECUTE FUNCTION timeline_is_append_only();
