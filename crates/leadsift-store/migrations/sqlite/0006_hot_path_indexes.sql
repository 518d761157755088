-- leadsift schema v6 (SQLite): fewer indexes on the triage hot path.
-- Keep in step with migrations/postgres/0006_hot_path_indexes.sql.
--
-- No query filters or sorts messages on these columns (counts group the
-- whole table, short-call counts go through sender_phone), yet every stored
-- message paid an index insert for each.
DROP INDEX IF EXISTS messages_received;
DROP INDEX IF EXISTS messages_verdict;
