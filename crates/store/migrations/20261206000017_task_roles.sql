-- Lead and assisting departments (主办/协办, issue 20, item 2): the tasks projection records each
-- task's role, set when it is dispatched and never changed. An assisting task's resolve_due_at is
-- its part's deadline and resolved_at when it submitted the part; a released assistant has status
-- 'released'. Every existing task was a lead. The engine's state (incidents.state) holds the same.
ALTER TABLE tasks
    ADD COLUMN role text NOT NULL DEFAULT 'lead' CHECK (role IN ('lead', 'assist'));
