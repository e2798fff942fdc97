-- The hotspot analysis (ListHotspots, docs/proactive.md) reads an area's reports of the last 24
-- months: by grid prefix and time, so a district's call reads its own reports and no others.
-- Additive: nothing reads differently without it; intake writes one more index entry a report.
CREATE INDEX reports_grid_received ON reports (grid_code text_pattern_ops, received_at);
