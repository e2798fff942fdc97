-- Intake holds its duplicate and cluster state in memory (issue 23): one dispatch replica at a
-- time records reports, the holder of this lease. `epoch` grows with every change of holder and
-- fences the batches of a holder that lost the lease (see whistle_store::intake::lease).
CREATE TABLE intake_owner (
    id          int PRIMARY KEY CHECK (id = 1),
    holder      text NOT NULL,
    epoch       bigint NOT NULL,
    expires_at  timestamptz NOT NULL
);
INSERT INTO intake_owner (id, holder, epoch, expires_at) VALUES (1, '', 0, '-infinity');

-- The duplicate lookup and the cluster count no longer search PostgreSQL, so their indexes go:
-- three index entries fewer for every report. Rebuilding the state on takeover reads the recent
-- incidents through incidents_created and the recent reports through this block-range index,
-- which costs almost nothing to keep as reports arrive in time order.
DROP INDEX IF EXISTS incidents_open_category_lat_lon;
DROP INDEX IF EXISTS incidents_open_category_grid_unlocated;
DROP INDEX IF EXISTS incidents_open_category_grid;
DROP INDEX IF EXISTS reports_community_category_received;
CREATE INDEX reports_received_brin ON reports USING brin (received_at);
