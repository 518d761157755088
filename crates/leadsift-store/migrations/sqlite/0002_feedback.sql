-- leadsift schema v2 (SQLite): managers' labels and the model versions learned from them.
-- Keep in step with migrations/postgres/0002_feedback.sql.

CREATE TABLE feedback (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id INTEGER NOT NULL REFERENCES messages (id),
    label      TEXT    NOT NULL,
    origin     TEXT    NOT NULL,
    actor      TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX feedback_message ON feedback (message_id, id);

-- Every attempt to update the model, accepted or refused; the accepted
-- ones carry the model itself, so every worker process loads the same one.
CREATE TABLE model_versions (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    feedback_upto INTEGER NOT NULL,
    feedback_used INTEGER NOT NULL,
    accepted      INTEGER NOT NULL,
    note          TEXT    NOT NULL,
    figures       TEXT    NOT NULL,
    model         BLOB
);
CREATE INDEX model_versions_accepted ON model_versions (accepted, id);
