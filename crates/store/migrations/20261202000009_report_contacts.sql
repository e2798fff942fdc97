-- Residents' contact numbers, apart from the reports and encrypted (issue 18, "Residents' personal
-- data"). Intake strips `contact_phone` from the stored report and its events and writes it here,
-- sealed with ChaCha20-Poly1305 under the operator's keyring (`key_id` names the key; the report
-- id is the associated data, so a row cannot be moved to another report). `masked` is what everyone
-- but the callers-back sees (`138****8000`), kept in clear so that showing it never decrypts.
-- Only whistle-query decrypts; `whistle contacts rekey` re-encrypts under the newest key.
CREATE TABLE report_contacts (
    report_id    text PRIMARY KEY REFERENCES reports (report_id) DEFERRABLE INITIALLY DEFERRED,
    incident_id  uuid NOT NULL,
    key_id       text NOT NULL,
    nonce        bytea NOT NULL,
    ciphertext   bytea NOT NULL,
    masked       text NOT NULL,
    created_at   timestamptz NOT NULL
);
CREATE INDEX report_contacts_incident ON report_contacts (incident_id);
CREATE INDEX report_contacts_key ON report_contacts (key_id);

-- Every unmasked read of a contact, written by whistle-query (the only writes it makes; see
-- docs/query.md): who (token, person, role), when, which incident and report, through which RPC.
CREATE TABLE contact_access (
    id           uuid PRIMARY KEY,
    at           timestamptz NOT NULL,
    token_id     uuid NOT NULL,
    person_id    text,
    role         text NOT NULL,
    incident_id  uuid NOT NULL,
    report_id    text NOT NULL,
    door         text NOT NULL
);
CREATE INDEX contact_access_at ON contact_access (at DESC, id DESC);
CREATE INDEX contact_access_incident ON contact_access (incident_id, at DESC);
