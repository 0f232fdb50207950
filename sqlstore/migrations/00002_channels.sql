-- +goose Up
-- A webhook's channel settings, as JSON (sealed like the secret when a key
-- is set: they may hold a routing key).
ALTER TABLE webhooks ADD COLUMN channel TEXT NOT NULL DEFAULT '{"type":"generic"}';
-- What an attempt sent, when a channel rendered it, and how long the
-- receiver asked to wait before the next.
ALTER TABLE attempts ADD COLUMN request_body TEXT;
ALTER TABLE attempts ADD COLUMN retry_after_ms BIGINT;

-- +goose Down
ALTER TABLE attempts DROP COLUMN retry_after_ms;
ALTER TABLE attempts DROP COLUMN request_body;
ALTER TABLE webhooks DROP COLUMN channel;
