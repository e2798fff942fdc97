-- Indexes that keep intake's duplicate and cluster lookups proportional to the neighbourhood, not
-- to the number of open incidents or recent reports.
DROP INDEX IF EXISTS incidents_open_category;
CREATE INDEX incidents_open_category_lat ON incidents (category, lat)
    WHERE status IN ('handling', 'whistled', 'accepted');
CREATE INDEX incidents_open_category_grid ON incidents (category, grid_code)
    WHERE status IN ('handling', 'whistled', 'accepted');

DROP INDEX IF EXISTS reports_category_received;
CREATE INDEX reports_community_category_received ON reports (left(grid_code, 12), category, received_at);
