-- leadsift schema v5 (postgres): the Bitrix24 sync outbox. Times are Unix
-- milliseconds (UTC); flags are 0/1.
-- Keep in step with the other backend's 0005_bitrix24.sql.

-- One row per lead event to push to Bitrix24: 'add' for a new lead (its first
-- stage-history row), 'update' for a later stage change. Delivered in
-- change_id order per lead. state: pending, delivered or failed.
-- add_outcome_unknown: an add was sent and its answer never arrived, so the
-- next attempt must first look the lead up by ORIGINATOR_ID/ORIGIN_ID.
CREATE TABLE bitrix24_outbox (
    id                  BIGSERIAL PRIMARY KEY,
    change_id           BIGINT  NOT NULL UNIQUE REFERENCES lead_stage_changes (id),
    lead_id             BIGINT  NOT NULL REFERENCES leads (id),
    kind                TEXT    NOT NULL,
    stage               TEXT    NOT NULL,
    junk_reason         TEXT,
    state               TEXT    NOT NULL DEFAULT 'pending',
    attempts            BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at     BIGINT  NOT NULL,
    lease_owner         TEXT,
    lease_until         BIGINT  NOT NULL DEFAULT 0,
    add_outcome_unknown BIGINT  NOT NULL DEFAULT 0,
    last_error          TEXT,
    created_at          BIGINT  NOT NULL,
    delivered_at        BIGINT
);
CREATE INDEX bitrix24_outbox_due ON bitrix24_outbox (state, next_attempt_at, change_id);
CREATE INDEX bitrix24_outbox_lead ON bitrix24_outbox (lead_id, change_id);

-- Our lead id -> the Bitrix24 lead id, once an add succeeded.
CREATE TABLE bitrix24_leads (
    lead_id    BIGINT  PRIMARY KEY REFERENCES leads (id),
    bitrix_id  BIGINT  NOT NULL,
    created_at BIGINT  NOT NULL
);
