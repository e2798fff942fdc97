-- The screens' lists read in the order they show (issue 23): ListOverdue and a department's
-- ListTasks walked and sorted every open incident or every task of the department per call
-- (4.4 s and 285 ms at a million incidents). Each index below holds only the rows its list can
-- return, in its order, so a call reads about the rows it sends. The statuses are spelled out as
-- the queries spell them (services/whistle-query/src/overdue.rs and tasks.rs): a partial index or
-- an expression index is used only where the query's text implies it.

-- Open incidents by deadline (late ones are a prefix); the grid code filters an area in the index.
CREATE INDEX incidents_open_due ON incidents (due_at, grid_code text_pattern_ops, id)
    WHERE status IN ('handling', 'whistled', 'accepted');

-- Flagged open incidents, for the rare one whose deadline has not passed on this clock.
CREATE INDEX incidents_open_flagged_due ON incidents (due_at, grid_code text_pattern_ops, id)
    WHERE overdue AND status IN ('handling', 'whistled', 'accepted');

-- A task carries its incident's grid (which never changes), so that an area's late tasks are
-- found in the index below without looking up every late task's incident.
ALTER TABLE tasks ADD COLUMN grid_code text;
UPDATE tasks t SET grid_code = i.grid_code FROM incidents i WHERE i.id = t.incident_id;
ALTER TABLE tasks ALTER COLUMN grid_code SET NOT NULL;

-- Tasks in progress by the deadline they wait on (to report in, then to resolve), with the grid.
CREATE INDEX tasks_in_progress_due ON tasks (
    (CASE WHEN status IN ('dispatched', 'supervised') THEN accept_due_at ELSE resolve_due_at END),
    grid_code text_pattern_ops)
    WHERE status IN ('dispatched', 'supervised', 'accepted');

-- A department's workbench: its tasks in progress, soonest deadline first...
CREATE INDEX tasks_department_in_progress ON tasks (
    department_code,
    (CASE WHEN status IN ('dispatched', 'supervised') THEN accept_due_at ELSE resolve_due_at END),
    updated_at DESC, incident_id, task_id)
    WHERE status IN ('dispatched', 'supervised', 'accepted');

-- ...then its closed-out tasks, newest first.
CREATE INDEX tasks_department_closed_out ON tasks (department_code, updated_at DESC, incident_id, task_id)
    WHERE status NOT IN ('dispatched', 'supervised', 'accepted');
