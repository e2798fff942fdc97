-- Working-day deadlines (issue 20, item 5): an incident whose resolve deadline was counted over a
-- year the holiday calendar did not hold carries `state.provisional`; dispatch recounts those at
-- start once the year is loaded. Few incidents ever have one, so a partial index finds them
-- without reading the others.
CREATE INDEX incidents_provisional ON incidents (id) WHERE state ? 'provisional';
