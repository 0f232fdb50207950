-- +goose Up
-- The run (numbered as attempts.run) that last set a delivery's status: a
-- newer run may change it; an older one never does.
ALTER TABLE deliveries ADD COLUMN run INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE deliveries DROP COLUMN run;
