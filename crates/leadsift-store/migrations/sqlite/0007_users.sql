-- leadsift schema v7 (sqlite): people who log in to the web UI, and their
-- sessions. Times are Unix milliseconds (UTC); flags are 0/1.
-- Keep in step with the other backend's 0007_users.sql.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT   NOT NULL UNIQUE,
    -- argon2id PHC string; never the password.
    password_hash TEXT   NOT NULL,
    role          TEXT   NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

-- A session is stored by the SHA-256 of its cookie token, so the table
-- holds nothing a browser could present.
CREATE TABLE sessions (
    token_sha256 TEXT   PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users (id),
    csrf_token   TEXT   NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expiry ON sessions (expires_at);
