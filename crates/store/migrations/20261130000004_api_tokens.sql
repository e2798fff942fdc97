-- Bearer tokens for the query service (whistle.v1.CommandCenter and whistle.v1.Dispatch).
-- Only the SHA-256 of a token is stored: the token itself is printed once, at creation. Tokens are
-- 256 random bits, so a fast hash is enough (no guessing to slow down).
--
-- role operator: reads and acts (as `person_id`) inside `area_code`;
-- role liaison: acts for its department (as its liaison) and reads inside the department's area;
-- role viewer: reads inside `area_code`, or inside a department's area, and never acts.
CREATE TABLE api_tokens (
    id               uuid PRIMARY KEY,
    token_sha256     bytea NOT NULL UNIQUE CHECK (length(token_sha256) = 32),
    role             text NOT NULL CHECK (role IN ('operator', 'liaison', 'viewer')),
    area_code        text NOT NULL REFERENCES org_units (code),
    department_code  text REFERENCES departments (code),
    person_id        text REFERENCES people (id),
    label            text NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL,
    expires_at       timestamptz,
    revoked_at       timestamptz,
    CHECK ((role = 'viewer') = (person_id IS NULL)),
    CHECK (role <> 'liaison' OR department_code IS NOT NULL)
);
