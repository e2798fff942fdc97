-- A resident's tracking code (查询码) for every report that opened or joined an incident (issue 24,
-- item 1; docs/query.md, "The resident's page"). Intake makes the code and writes this row with
-- the report, in the batch's one statement. The code itself is never stored in the clear:
-- `code_mac` is HMAC-SHA256 of the code under a key derived from the contact keyring's key
-- `key_id`, which is how the public page finds it, and the code is sealed (ChaCha20-Poly1305, the
-- report id as associated data) for the reporting grid worker to read again. A dump of the
-- database without the keyring hands out no working code.
-- Additive only: no existing row or column changes.
CREATE TABLE tracking_codes (
    report_id    text PRIMARY KEY,
    incident_id  uuid NOT NULL REFERENCES incidents (id) DEFERRABLE INITIALLY DEFERRED,
    key_id       text NOT NULL,
    code_mac     bytea NOT NULL UNIQUE,
    nonce        bytea NOT NULL,
    ciphertext   bytea NOT NULL,
    created_at   timestamptz NOT NULL
);
CREATE INDEX tracking_codes_incident ON tracking_codes (incident_id);
