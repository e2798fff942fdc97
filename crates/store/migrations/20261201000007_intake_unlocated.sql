-- Intake's duplicate lookup looks for open incidents without coordinates in the report's grid
-- separately from those near it: with one index over every open incident of the grid, each
-- lookup of a located report read and discarded the grid's located incidents. Few incidents lack
-- coordinates, so this index is small and costs almost nothing to keep.
CREATE INDEX incidents_open_category_grid_unlocated ON incidents (category, grid_code)
    WHERE status IN ('handling', 'whistled', 'accepted') AND lat IS NULL;
