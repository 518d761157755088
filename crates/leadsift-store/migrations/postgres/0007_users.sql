-- leadsift schema v7 (postgres): people who log in to the web UI, and their
-- sessions. Times are Unix milliseconds (UTC); flags are 0/1.
-- Keep in step with the other backend's 0007_users.sql.

CREATE TABLE users (
    id            BIGSERIAL PRIMARY KEY,
    username      TEXT   NOT NULL UNIQUE,
    -- argon2id PHC string; never the password.
    password_hash TEXT   NOT NULL,
    role          TEXT   NOT NULL,
    disabled      BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

-- A session is stored by the SHA-256 of its cookie token, so the table
-- holds nothing a browser could present.
CREATE TABLE sessions (
    token_sha256 TEXT   PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users (id),
    csrf_token   TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expiry ON sessions (expires_at);
