-- Dispatch disputes (派单异议, issue 20, item 3): the tasks projection records whether the
-- department disputed the task (once per task, kept after the arbitration: the scoreboard's dispute
-- rate counts it) and, while a dispute waits for arbitration, the department it proposes. The
-- engine's state (incidents.state) holds the same in JSON; existing tasks were never disputed.
ALTER TABLE tasks
    ADD COLUMN disputed boolean NOT NULL DEFAULT false,
    ADD COLUMN dispute_to text;
