-- leadsift schema v3 (postgres): state of the channel adapters (IMAP intake, manager
-- notifications). Times are Unix milliseconds (UTC); flags are 0/1.
-- Keep in step with the other backend's 0003_channels.sql.

-- Per watched folder: the UIDVALIDITY seen and the highest UID durably queued.
CREATE TABLE imap_checkpoints (
    account     TEXT    NOT NULL,
    folder      TEXT    NOT NULL,
    uidvalidity BIGINT NOT NULL,
    last_uid    BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (account, folder)
);

-- Where each queued mail came from, so post-triage actions (move, flag)
-- find it again. action_done: 0 pending, 1 done or nothing to do.
CREATE TABLE imap_origins (
    account     TEXT    NOT NULL,
    folder      TEXT    NOT NULL,
    uidvalidity BIGINT NOT NULL,
    uid         BIGINT NOT NULL,
    dedup_key   TEXT    NOT NULL,
    action_done BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (account, folder, uidvalidity, uid)
);
CREATE INDEX imap_origins_pending ON imap_origins (action_done, account, folder);

-- Labels people gave by moving mail into configured folders, once per mail.
CREATE TABLE imap_feedback (
    id          BIGSERIAL PRIMARY KEY,
    account     TEXT    NOT NULL,
    folder      TEXT    NOT NULL,
    uidvalidity BIGINT NOT NULL,
    uid         BIGINT NOT NULL,
    dedup_key   TEXT    NOT NULL,
    label       TEXT    NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (account, folder, uidvalidity, uid)
);

-- Named progress markers of background jobs (e.g. where notifications start).
CREATE TABLE watermarks (
    name       TEXT    PRIMARY KEY,
    value      BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Leads whose manager was emailed (notifications are sent at least once).
CREATE TABLE lead_notifications (
    lead_id   BIGINT PRIMARY KEY REFERENCES leads (id),
    recipient TEXT    NOT NULL,
    sent_at   BIGINT NOT NULL
);
