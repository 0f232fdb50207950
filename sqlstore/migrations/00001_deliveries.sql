-- +goose Up
CREATE TABLE webhooks (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    url              TEXT NOT NULL,
    secret           TEXT NOT NULL DEFAULT '',
    active           INTEGER NOT NULL,
    ping_ok          INTEGER,
    ping_status_code INTEGER,
    ping_error       TEXT,
    ping_duration_ms BIGINT,
    pinged_at        TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);
CREATE INDEX webhooks_created ON webhooks (created_at, id);

CREATE TABLE webhook_events (
    webhook_id TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_type TEXT NOT NULL,
    PRIMARY KEY (webhook_id, event_type)
);
CREATE INDEX webhook_events_type ON webhook_events (event_type, webhook_id);

CREATE TABLE events (
    id         TEXT PRIMARY KEY,
    type       TEXT NOT NULL,
    timestamp  TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    -- set once the event's deliveries are created; a later publish of the
    -- same id creates none
    fanned_out_at TEXT
);

CREATE TABLE deliveries (
    id               TEXT PRIMARY KEY,
    event_id         TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    webhook_id       TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_status_code INTEGER,
    last_error       TEXT,
    next_attempt_at  TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    completed_at     TEXT,
    -- the workflow run that last set the status
    run_id           TEXT NOT NULL DEFAULT '',
    UNIQUE (event_id, webhook_id)
);
CREATE INDEX deliveries_webhook ON deliveries (webhook_id, created_at, id);
CREATE INDEX deliveries_webhook_status ON deliveries (webhook_id, status, created_at, id);

-- run_id is the workflow run that made the attempt; run numbers the runs of
-- a delivery in order, from 1.
CREATE TABLE attempts (
    delivery_id      TEXT NOT NULL,
    run_id           TEXT NOT NULL,
    run              INTEGER NOT NULL,
    number           INTEGER NOT NULL,
    started_at       TEXT NOT NULL,
    duration_ms      BIGINT NOT NULL,
    url              TEXT NOT NULL,
    status_code      INTEGER,
    response_headers TEXT,
    response_body    TEXT,
    error_class      TEXT,
    error            TEXT,
    PRIMARY KEY (delivery_id, run_id, number)
);

-- +goose Down
DROP TABLE attempts;
DROP TABLE deliveries;
DROP TABLE events;
DROP TABLE webhook_events;
DROP TABLE webhooks;
