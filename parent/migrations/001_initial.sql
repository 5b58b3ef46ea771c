-- Tocsin schema, version 1.
-- Every row belongs to a hub; a notification's targeting, its payload and its per-app progress
-- (deliveries) are kept apart so tag expressions, templates and schedules slot in later.

CREATE TABLE hubs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE apps (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    hub_id           bigint NOT NULL REFERENCES hubs (id) ON DELETE CASCADE,
    name             text NOT NULL,
    child_url        text NOT NULL,
    signing_key_id   text NOT NULL,
    signing_key_enc  text NOT NULL,          -- Fernet ciphertext under the parent's master key
    paused_at        timestamptz,            -- set when the app's WNS credentials are refused
    paused_reason    text,
    throttled_until  timestamptz,            -- app-level WNS throttle: no sends before this
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (hub_id, name)
);

CREATE TABLE access_keys (
    id           text PRIMARY KEY,           -- public part of the key
    hub_id       bigint NOT NULL REFERENCES hubs (id) ON DELETE CASCADE,
    app_id       bigint REFERENCES apps (id) ON DELETE CASCADE,   -- set: the key is for one app
    name         text NOT NULL,
    rights       text[] NOT NULL,
    secret_hash  bytea NOT NULL,             -- sha256 of the 256-bit secret part
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);
CREATE INDEX access_keys_hub ON access_keys (hub_id);

-- The channels table: one row per app per device.
CREATE TABLE installations (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    hub_id                bigint NOT NULL REFERENCES hubs (id) ON DELETE CASCADE,
    app_id                bigint NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    installation_id       text NOT NULL,
    push_channel          text NOT NULL,
    push_channel_expired  boolean NOT NULL DEFAULT false,
    tags                  text[] NOT NULL DEFAULT '{}',
    user_id               text,
    revision              bigint NOT NULL DEFAULT 1,   -- bumped by every registration
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    retired_at            timestamptz,                 -- tombstone of a channel WNS called gone
    retired_reason        text,
    UNIQUE (hub_id, installation_id)
);
-- Dispatch streams each app's live installations in id order.
CREATE INDEX installations_live_by_app ON installations (app_id, id) WHERE NOT push_channel_expired;
CREATE INDEX installations_tags ON installations USING gin (tags);
CREATE INDEX installations_user ON installations (hub_id, user_id) WHERE user_id IS NOT NULL;

CREATE TABLE notifications (
    id               uuid PRIMARY KEY,
    hub_id           bigint NOT NULL REFERENCES hubs (id) ON DELETE CASCADE,
    target           jsonb NOT NULL,
    payload          jsonb NOT NULL,
    idempotency_key  text,
    state            text NOT NULL DEFAULT 'accepted',  -- accepted | dispatching | completed
    created_at       timestamptz NOT NULL DEFAULT now(),
    completed_at     timestamptz,
    UNIQUE (hub_id, idempotency_key)
);
CREATE INDEX notifications_open ON notifications (created_at) WHERE state <> 'completed';

-- One notification's progress for one app: a keyset cursor over that app's installations, the
-- lease of the worker streaming it, and the current outcome count of every target formed so far.
CREATE TABLE deliveries (
    notification_id  uuid NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    app_id           bigint NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    cursor           bigint NOT NULL DEFAULT 0,
    streamed         boolean NOT NULL DEFAULT false,
    due_at           timestamptz NOT NULL DEFAULT now(),
    lease_token      uuid,
    child_failures   int NOT NULL DEFAULT 0,
    last_error       text,
    targeted         int NOT NULL DEFAULT 0,
    delivered        int NOT NULL DEFAULT 0,
    dropped          int NOT NULL DEFAULT 0,
    throttled        int NOT NULL DEFAULT 0,
    rejected         int NOT NULL DEFAULT 0,
    forbidden        int NOT NULL DEFAULT 0,
    channel_gone     int NOT NULL DEFAULT 0,
    retry            int NOT NULL DEFAULT 0,
    failed           int NOT NULL DEFAULT 0,
    PRIMARY KEY (notification_id, app_id)
);
CREATE INDEX deliveries_due ON deliveries (due_at) WHERE NOT streamed;

-- Targets waiting for another attempt; `outcome` is the count they sit in meanwhile.
CREATE TABLE retries (
    notification_id  uuid NOT NULL,
    app_id           bigint NOT NULL,
    installation_pk  bigint NOT NULL,
    attempt          int NOT NULL,
    outcome          text NOT NULL,
    due_at           timestamptz NOT NULL,
    lease_token      uuid,
    PRIMARY KEY (notification_id, installation_pk),
    FOREIGN KEY (notification_id, app_id) REFERENCES deliveries (notification_id, app_id)
        ON DELETE CASCADE
);
CREATE INDEX retries_due ON retries (due_at);
