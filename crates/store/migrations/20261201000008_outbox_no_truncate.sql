-- The outbox is a queue: rows are inserted at one end and deleted at the other all the time. A
-- VACUUM that finds empty pages at its end tries to give them back to the filesystem, which
-- needs an ACCESS EXCLUSIVE lock: it retries for up to 5 s while intake and the relay keep the
-- table busy, and whenever it gets the lock, every intake batch and relay claim waits behind it.
-- Keeping the pages costs a few megabytes; they are reused by the next inserts.
ALTER TABLE outbox SET (vacuum_truncate = false);
