-- Intake's duplicate lookup bounds longitude as well as latitude: with only (category, lat) the
-- index reads every open incident of the category in a band across the whole city.
DROP INDEX IF EXISTS incidents_open_category_lat;
CREATE INDEX incidents_open_category_lat_lon ON incidents (category, lat, lon)
    WHERE status IN ('handling', 'whistled', 'accepted');
