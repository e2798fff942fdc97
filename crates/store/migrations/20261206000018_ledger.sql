-- The long-term ledger (挂账, issue 20, item 4): the incidents projection records where a case
-- stands in the ledger — `ledger_state` 'proposed' (waiting for approval), 'entered' or
-- 'review_due' (its review date came), NULL otherwise — with `ledgered_at` (entered) and
-- `ledger_review_at` (the review date, while proposed or entered). The engine's state
-- (incidents.state->'ledger') holds the same with the reason, note and responsible unit. Existing
-- incidents were never in the ledger. ListOverdue and the overview leave entered cases out; the
-- partial index lists an area's ledger by review date without reading the other incidents.
ALTER TABLE incidents
    ADD COLUMN ledger_state text
        CHECK (ledger_state IN ('proposed', 'entered', 'review_due')),
    ADD COLUMN ledgered_at timestamptz,
    ADD COLUMN ledger_review_at timestamptz,
    ADD CONSTRAINT incidents_ledger_entered
        CHECK ((ledgered_at IS NOT NULL) = coalesce(ledger_state IN ('entered', 'review_due'), false));
CREATE INDEX incidents_ledger ON incidents (ledger_review_at, id) WHERE ledger_state IS NOT NULL;
