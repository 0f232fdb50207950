-- +goose Up
-- The webhooks an event goes to when its publisher chose them (an alert
-- goes to its rule's webhooks), as a JSON list; NULL: its subscribers.
ALTER TABLE events ADD COLUMN targets TEXT;

CREATE TABLE services (
    name              TEXT PRIMARY KEY,
    health_url        TEXT NOT NULL,
    check_interval_ms BIGINT NOT NULL,
    status            TEXT NOT NULL DEFAULT 'unknown',
    status_since      TEXT,
    last_checked_at   TEXT,
    last_error        TEXT,
    -- the status the monitor last announced (service.down or service.up
    -- sent, rules told) and since when: a status not yet announced is
    -- announced at the next check, however the monitor was interrupted
    announced_status  TEXT NOT NULL DEFAULT 'unknown',
    announced_since   TEXT,
    created_at        TEXT NOT NULL
);

CREATE TABLE alert_rules (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    type             TEXT NOT NULL,
    threshold        DOUBLE PRECISION NOT NULL,
    strategy         TEXT NOT NULL DEFAULT '',
    -- a service_down rule's service, which cannot be deleted while watched
    service          TEXT REFERENCES services (name),
    active           INTEGER NOT NULL,
    resolve_after_ms BIGINT NOT NULL DEFAULT 0,
    -- what the rule's workflow recorded at its latest transition, for when
    -- the workflow cannot be asked
    status           TEXT NOT NULL DEFAULT 'ok',
    status_since     TEXT,
    -- when the condition of the latest firing began to hold
    condition_since  TEXT,
    current_value    DOUBLE PRECISION NOT NULL DEFAULT 0,
    episode          INTEGER NOT NULL DEFAULT 0,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);
CREATE INDEX alert_rules_created ON alert_rules (created_at, id);
CREATE INDEX alert_rules_watch ON alert_rules (type, strategy, service);

CREATE TABLE alert_rule_webhooks (
    rule_id    TEXT NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
    webhook_id TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    PRIMARY KEY (rule_id, webhook_id)
);
CREATE INDEX alert_rule_webhooks_webhook ON alert_rule_webhooks (webhook_id);

-- When each strategy last emitted a signal, as the notifier received it.
CREATE TABLE strategy_signals (
    strategy       TEXT PRIMARY KEY,
    last_signal_at TEXT NOT NULL,
    event_id       TEXT NOT NULL
);

-- The portfolio: the latest equity and its high-water mark. One row.
CREATE TABLE portfolio (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    equity     DOUBLE PRECISION NOT NULL,
    peak       DOUBLE PRECISION NOT NULL,
    at         TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- +goose Down
DROP TABLE portfolio;
DROP TABLE strategy_signals;
DROP TABLE alert_rule_webhooks;
DROP TABLE alert_rules;
DROP TABLE services;
ALTER TABLE events DROP COLUMN targets;
