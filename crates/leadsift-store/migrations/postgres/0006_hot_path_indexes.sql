-- leadsift schema v6 (PostgreSQL): fewer indexes on the triage hot path.
-- Keep in step with migrations/sqlite/0006_hot_path_indexes.sql.
--
-- No query filters or sorts messages on these columns (counts group the
-- whole table, short-call counts go through sender_phone), yet every stored
-- message paid an index insert for each.
DROP INDEX IF EXISTS messages_received;
DROP INDEX IF EXISTS messages_verdict;

-- A repeat message bumps its lead's message_count and updated_at (neither
-- indexed). Room left on each page lets PostgreSQL write the new row version
-- next to the old one (a HOT update) instead of a new entry in every index
-- of leads. SQLite updates in place and needs nothing.
ALTER TABLE leads SET (fillfactor = 80);
