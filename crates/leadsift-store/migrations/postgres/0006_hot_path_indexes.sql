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

-- The foreign keys among the rows one triage transaction writes. PostgreSQL
-- checks each with a row trigger, a query and a FOR KEY SHARE lock on the
-- referenced row, per inserted row: three of them per message, 16 % of the
-- server's CPU on the pipeline benchmark. The references are made by that
-- transaction only (ids it allocated itself, or read under the senders'
-- advisory locks), and nothing deletes contacts, leads or messages, so they
-- cannot dangle; the store conformance suite checks every message's lead and
-- contact exist. SQLite keeps the declared keys (it cannot drop a constraint
-- without rebuilding the table, and it checks them cheaply in-process).
ALTER TABLE messages DROP CONSTRAINT IF EXISTS messages_lead_id_fkey;
ALTER TABLE messages DROP CONSTRAINT IF EXISTS messages_contact_id_fkey;
ALTER TABLE leads DROP CONSTRAINT IF EXISTS leads_contact_id_fkey;
ALTER TABLE contact_identities DROP CONSTRAINT IF EXISTS contact_identities_contact_id_fkey;
ALTER TABLE lead_stage_changes DROP CONSTRAINT IF EXISTS lead_stage_changes_lead_id_fkey;
