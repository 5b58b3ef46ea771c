-- Per-installation last outcome and per-app recent outcome counts (app health).

ALTER TABLE installations
    ADD COLUMN last_outcome     text,
    ADD COLUMN last_outcome_at  timestamptz,
    ADD COLUMN last_wns         jsonb;     -- X-WNS-Msg-ID, Debug-Trace, Error-Description, …

-- Outcome counts per app and minute; the app's GET sums the last hour.
CREATE TABLE app_outcomes (
    app_id   bigint NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    minute   timestamptz NOT NULL,
    outcome  text NOT NULL,
    count    int NOT NULL,
    PRIMARY KEY (app_id, minute, outcome)
);

ALTER TABLE notifications ADD COLUMN deliver_by timestamptz;  -- retries end as failed after this
