-- leadsift schema v2 (PostgreSQL): managers' labels and the model versions learned from them.
-- Keep in step with migrations/sqlite/0002_feedback.sql.

CREATE TABLE feedback (
    id         BIGSERIAL PRIMARY KEY,
    message_id BIGINT  NOT NULL REFERENCES messages (id),
    label      TEXT    NOT NULL,
    origin     TEXT    NOT NULL,
    actor      TEXT    NOT NULL,
    created_at BIGINT  NOT NULL
);
CREATE INDEX feedback_message ON feedback (message_id, id);

-- Every attempt to update the model, accepted or refused; the accepted
-- ones carry the model itself, so every worker process loads the same one.
CREATE TABLE model_versions (
    id            BIGSERIAL PRIMARY KEY,
    name          TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL,
    feedback_upto BIGINT  NOT NULL,
    feedback_used BIGINT  NOT NULL,
    accepted      BIGINT  NOT NULL,
    note          TEXT    NOT NULL,
    figures       TEXT    NOT NULL,
    model         BYTEA
);
CREATE INDEX model_versions_accepted ON model_versions (accepted, id);
