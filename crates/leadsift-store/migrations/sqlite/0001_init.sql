-- leadsift schema v1 (SQLite). Times are Unix milliseconds (UTC); flags are 0/1.
-- Keep in step with migrations/postgres/0001_init.sql: same tables, same columns.

-- The built-in queue. Lease bookkeeping lives in narrow rows of its own:
-- claiming a message then rewrites a few bytes, not the whole payload.
CREATE TABLE inbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    dedup_key   TEXT    NOT NULL UNIQUE,
    channel     TEXT    NOT NULL,
    enqueued_at INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    lease_until INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT
);
CREATE INDEX inbox_claimable ON inbox (lease_until, id);

CREATE TABLE inbox_payloads (
    inbox_id INTEGER PRIMARY KEY REFERENCES inbox (id) ON DELETE CASCADE,
    payload  TEXT    NOT NULL
);

CREATE TABLE contacts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    display_name TEXT,
    created_at   INTEGER NOT NULL
);

CREATE TABLE contact_identities (
    kind       TEXT    NOT NULL,
    value      TEXT    NOT NULL,
    contact_id INTEGER NOT NULL REFERENCES contacts (id),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (kind, value)
);
CREATE INDEX contact_identities_contact ON contact_identities (contact_id);

CREATE TABLE leads (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    contact_id       INTEGER REFERENCES contacts (id),
    stage            TEXT    NOT NULL,
    junk_reason      TEXT,
    needs_review     INTEGER NOT NULL DEFAULT 0,
    review_note      TEXT,
    returning_client INTEGER NOT NULL DEFAULT 0,
    channel          TEXT    NOT NULL,
    title            TEXT    NOT NULL,
    verdict          TEXT    NOT NULL,
    confidence       REAL    NOT NULL,
    reasons          TEXT    NOT NULL,
    source           TEXT,
    campaign         TEXT,
    destination      TEXT,
    utm_source       TEXT,
    utm_medium       TEXT,
    utm_campaign     TEXT,
    utm_content      TEXT,
    utm_term         TEXT,
    message_count    INTEGER NOT NULL DEFAULT 1,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    closed_at        INTEGER
);
CREATE INDEX leads_contact_stage ON leads (contact_id, stage);
CREATE INDEX leads_board ON leads (stage, needs_review, id);
CREATE INDEX leads_created ON leads (created_at);

CREATE TABLE messages (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    dedup_key     TEXT    NOT NULL UNIQUE,
    channel       TEXT    NOT NULL,
    received_at   INTEGER NOT NULL,
    triaged_at    INTEGER NOT NULL,
    sender_email  TEXT,
    sender_phone  TEXT,
    sender_handle TEXT,
    sender_name   TEXT,
    destination   TEXT,
    subject       TEXT,
    verdict       TEXT    NOT NULL,
    confidence    REAL    NOT NULL,
    reasons       TEXT    NOT NULL,
    route         TEXT    NOT NULL,
    lead_id       INTEGER REFERENCES leads (id),
    contact_id    INTEGER REFERENCES contacts (id),
    source        TEXT,
    campaign      TEXT,
    payload       TEXT    NOT NULL
);
CREATE INDEX messages_received ON messages (received_at);
CREATE INDEX messages_verdict ON messages (verdict, channel);
CREATE INDEX messages_lead ON messages (lead_id);
CREATE INDEX messages_sender_email ON messages (sender_email);
CREATE INDEX messages_sender_phone ON messages (sender_phone);
CREATE INDEX messages_sender_handle ON messages (sender_handle);

CREATE TABLE lead_stage_changes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    lead_id     INTEGER NOT NULL REFERENCES leads (id),
    from_stage  TEXT,
    to_stage    TEXT    NOT NULL,
    junk_reason TEXT,
    actor       TEXT    NOT NULL,
    reason      TEXT,
    at          INTEGER NOT NULL
);
CREATE INDEX lead_stage_changes_lead ON lead_stage_changes (lead_id, id);

CREATE TABLE list_entries (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    list           TEXT    NOT NULL,
    kind           TEXT    NOT NULL,
    value          TEXT    NOT NULL,
    reason         TEXT    NOT NULL,
    origin         TEXT    NOT NULL,
    created_by     TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER,
    removed_at     INTEGER,
    removed_by     TEXT,
    removed_reason TEXT
);
CREATE UNIQUE INDEX list_entries_active ON list_entries (list, kind, value) WHERE removed_at IS NULL;
CREATE INDEX list_entries_lookup ON list_entries (kind, value);

CREATE TABLE list_audit (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    entry_id INTEGER NOT NULL REFERENCES list_entries (id),
    list     TEXT    NOT NULL,
    kind     TEXT    NOT NULL,
    value    TEXT    NOT NULL,
    action   TEXT    NOT NULL,
    actor    TEXT    NOT NULL,
    reason   TEXT    NOT NULL,
    at       INTEGER NOT NULL
);
CREATE INDEX list_audit_list ON list_audit (list, id);

CREATE TABLE quarantine (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    origin  TEXT    NOT NULL,
    channel TEXT,
    error   TEXT    NOT NULL,
    raw     BLOB    NOT NULL,
    at      INTEGER NOT NULL
);
