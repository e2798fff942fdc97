-- The audit log of administration (issue 25, item 4): every administrative action — tokens created
-- and revoked, the org tree seeded, people's notification settings, schema migrations, the database
-- roles provisioned, contacts re-sealed, residents' contacts and photos read unmasked — one row, in
-- the same transaction as the change it records (whistle_store::audit).
--
-- actor: who acted as they said (the CLI's --actor, else the OS user; a token's person, else the
-- token id); os_user: the CLI's operating-system user; db_role: the PostgreSQL role that wrote the
-- row, filled in by the server so no program can claim another; token_id: the token of a gRPC call.
-- area_code: the org code the action concerns (a token's area, a person's, an incident's grid);
-- empty for the installation as a whole (migrations, the org tree, roles, keys), which only
-- operators of the whole city see. before/after: the changed thing as JSON, NULL where it did not
-- exist (before a creation) or is not shown (a contact's number is never copied here).
CREATE TABLE audit_log (
    id          uuid PRIMARY KEY,
    at          timestamptz NOT NULL,
    actor       text NOT NULL CHECK (actor <> ''),
    os_user     text,
    db_role     text NOT NULL DEFAULT current_user,
    token_id    uuid,
    door        text NOT NULL,
    action      text NOT NULL CHECK (action ~ '^[a-z_]+\.[a-z_]+$'),
    target      text NOT NULL,
    area_code   text NOT NULL,
    before      jsonb,
    after       jsonb
);
CREATE INDEX audit_log_at ON audit_log (at DESC, id DESC);
CREATE INDEX audit_log_area ON audit_log (area_code text_pattern_ops, at DESC);
CREATE INDEX audit_log_target ON audit_log (target, at DESC);

-- Append-only for everyone, the owner included: the programs' roles are granted only SELECT and
-- INSERT (whistle_store::roles), and these triggers refuse UPDATE, DELETE and TRUNCATE whoever
-- runs them. Only the table's owner could drop the triggers, and that is a schema change the
-- server logs (docs/security.md).
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER audit_log_no_update_or_delete BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
