-- leadsift schema v4 (sqlite): what leads become (companies, deals) and the
-- ad spend the reports weigh them against, plus the indexes the reports need.
-- Times are Unix milliseconds (UTC); money is in minor units (hundredths) with
-- an ISO 4217 code. Keep in step with the other backend's 0004_sales.sql.

CREATE TABLE companies (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT   NOT NULL,
    -- Case- and space-insensitive spelling of the name (unique).
    name_key   TEXT   NOT NULL UNIQUE,
    -- The corporate email domain it was derived from, if any.
    domain     TEXT   UNIQUE,
    created_at INTEGER NOT NULL
);

ALTER TABLE contacts ADD COLUMN company_id INTEGER REFERENCES companies (id);

CREATE TABLE deals (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    lead_id      INTEGER NOT NULL UNIQUE REFERENCES leads (id),
    contact_id   INTEGER NOT NULL REFERENCES contacts (id),
    company_id   INTEGER REFERENCES companies (id),
    title        TEXT   NOT NULL,
    stage        TEXT   NOT NULL,
    amount_minor INTEGER,
    currency     TEXT,
    lost_reason  TEXT,
    -- Copied from the lead so reports group deals without a join.
    channel      TEXT   NOT NULL,
    source       TEXT,
    campaign     TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    closed_at    INTEGER
);
CREATE INDEX deals_created ON deals (created_at);
CREATE INDEX deals_closed ON deals (closed_at);
CREATE INDEX deals_stage ON deals (stage, id);

CREATE TABLE deal_stage_changes (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    deal_id    INTEGER NOT NULL REFERENCES deals (id),
    from_stage TEXT,
    to_stage   TEXT   NOT NULL,
    actor      TEXT   NOT NULL,
    reason     TEXT,
    at         INTEGER NOT NULL
);
CREATE INDEX deal_stage_changes_deal ON deal_stage_changes (deal_id, id);

-- One line per (day, source, campaign); campaign '' = not split by campaign.
CREATE TABLE ad_spend (
    day          TEXT   NOT NULL,
    source       TEXT   NOT NULL,
    campaign     TEXT   NOT NULL,
    amount_minor INTEGER NOT NULL,
    currency     TEXT   NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (day, source, campaign)
);

-- Reports: junk moves by time, list growth by time.
CREATE INDEX lead_stage_changes_to_at ON lead_stage_changes (to_stage, at);
CREATE INDEX list_entries_created ON list_entries (list, created_at);
