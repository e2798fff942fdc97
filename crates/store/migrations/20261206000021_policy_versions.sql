-- The dispatch policy as versions (issue 25, item 3; docs/policy.md "Changing the policy"): every
-- version ever proposed is kept with who proposed it and when, who decided it and when; at most
-- one is approved (running), the ones it replaced are superseded. whistle_store::policies writes
-- it, each step with its audit_log row in the same transaction.
--
-- text/base_*: the policy file as proposed and the base file it names, so a version loads again
-- without the files it came from. sha256: of text and base text, to tell two texts apart at a
-- glance. bootstrap: the first version, stored by dispatch from its --policy when the table was
-- empty, approved by nobody (there was nothing to approve it against).
CREATE TABLE policy_versions (
    version       text PRIMARY KEY CHECK (version <> ''),
    seq           bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    name          text NOT NULL,
    text          text NOT NULL,
    base_name     text,
    base_text     text,
    sha256        text NOT NULL,
    note          text NOT NULL,
    proposed_by   text NOT NULL CHECK (proposed_by <> ''),
    proposed_at   timestamptz NOT NULL,
    state         text NOT NULL CHECK (state IN ('proposed', 'approved', 'rejected', 'superseded')),
    bootstrap     boolean NOT NULL DEFAULT false,
    decided_by    text,
    decided_at    timestamptz,
    decision_note text,
    superseded_at timestamptz,
    CHECK ((base_name IS NULL) = (base_text IS NULL)),
    CHECK (state = 'proposed' OR bootstrap OR (decided_by IS NOT NULL AND decided_at IS NOT NULL)),
    CHECK (NOT bootstrap OR state IN ('approved', 'superseded')),
    -- Two people: whoever approves a version did not propose it (a proposer may withdraw theirs).
    CHECK (state NOT IN ('approved', 'superseded') OR bootstrap OR decided_by <> proposed_by),
    CHECK ((state = 'superseded') = (superseded_at IS NOT NULL))
);
CREATE UNIQUE INDEX policy_versions_one_approved ON policy_versions ((true)) WHERE state = 'approved';

-- History cannot be rewritten, by anyone: a row is never deleted, its text and proposal never
-- change, a proposal is decided once (approved or rejected), and an approved version is only ever
-- superseded. Everything else is refused, whichever role tries.
CREATE FUNCTION policy_versions_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'UPDATE' THEN
        RAISE EXCEPTION 'policy versions are kept: % refused', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF (NEW.version, NEW.seq, NEW.name, NEW.text, NEW.base_name, NEW.base_text, NEW.sha256,
        NEW.note, NEW.proposed_by, NEW.proposed_at, NEW.bootstrap)
       IS DISTINCT FROM
       (OLD.version, OLD.seq, OLD.name, OLD.text, OLD.base_name, OLD.base_text, OLD.sha256,
        OLD.note, OLD.proposed_by, OLD.proposed_at, OLD.bootstrap) THEN
        RAISE EXCEPTION 'policy version %: a proposal never changes', OLD.version
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF OLD.state = 'proposed' AND NEW.state IN ('approved', 'rejected')
       AND OLD.decided_by IS NULL AND NEW.superseded_at IS NULL THEN
        RETURN NEW;
    END IF;
    IF OLD.state = 'approved' AND NEW.state = 'superseded'
       AND (NEW.decided_by, NEW.decided_at, NEW.decision_note)
           IS NOT DISTINCT FROM (OLD.decided_by, OLD.decided_at, OLD.decision_note) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'policy version %: % cannot become %', OLD.version, OLD.state, NEW.state
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER policy_versions_kept BEFORE UPDATE OR DELETE ON policy_versions
    FOR EACH ROW EXECUTE FUNCTION policy_versions_guard();
CREATE TRIGGER policy_versions_not_truncated BEFORE TRUNCATE ON policy_versions
    FOR EACH STATEMENT EXECUTE FUNCTION policy_versions_guard();

-- Which version each running dispatch replica applies: written by the replica when it loads one
-- and every poll (seen_at), removed when it stops; `whistle policy status` shows a rollout's
-- progress from it.
CREATE TABLE policy_replicas (
    holder     text PRIMARY KEY,
    version    text NOT NULL,
    loaded_at  timestamptz NOT NULL,
    seen_at    timestamptz NOT NULL
);
