-- leadsift schema v8 (PostgreSQL): sender indexes hold only the senders they index.
-- Keep in step with migrations/sqlite/0008_partial_sender_indexes.sql.
--
-- A message has one or two sender identities (a mail an address, a call a
-- phone), yet every message paid an insert into all three sender indexes,
-- mostly of NULLs no query looks for. Every lookup is `column = value` or
-- `column IN (...)`, which implies `IS NOT NULL`, so the partial indexes
-- serve the same queries.
DROP INDEX IF EXISTS messages_sender_email;
DROP INDEX IF EXISTS messages_sender_phone;
DROP INDEX IF EXISTS messages_sender_handle;
CREATE INDEX messages_sender_email ON messages (sender_email) WHERE sender_email IS NOT NULL;
CREATE INDEX messages_sender_phone ON messages (sender_phone) WHERE sender_phone IS NOT NULL;
CREATE INDEX messages_sender_handle ON messages (sender_handle) WHERE sender_handle IS NOT NULL;
