-- Tenant API keys: only a SHA-256 hash of the key is stored.
CREATE TABLE api_keys (
    id          UUID PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    name        TEXT,
    key_prefix  TEXT NOT NULL,
    key_hash    BYTEA NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at  TIMESTAMPTZ
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

-- Providers of a tenant, or of the platform (tenant_id NULL, configured by operators).
CREATE TABLE provider_configs (
    id               UUID PRIMARY KEY,
    tenant_id        TEXT,
    channel          TEXT NOT NULL CHECK (channel IN ('email', 'sms')),
    kind             TEXT NOT NULL,
    name             TEXT NOT NULL,
    priority         INTEGER NOT NULL DEFAULT 100,
    enabled          BOOLEAN NOT NULL DEFAULT TRUE,
    -- Non-secret configuration fields.
    settings         JSONB NOT NULL DEFAULT '{}'::jsonb,
    -- Secret fields as one AES-256-GCM blob (see src/crypto.rs), and the id of its key.
    secrets          BYTEA,
    key_id           TEXT,
    -- Names of the secret fields, so responses can mask them without decrypting.
    secret_fields    TEXT[] NOT NULL DEFAULT '{}',
    last_test_at     TIMESTAMPTZ,
    last_test_ok     BOOLEAN,
    last_test_detail TEXT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Name unique per tenant; platform rows share one namespace.
CREATE UNIQUE INDEX provider_configs_name ON provider_configs (COALESCE(tenant_id, ''), name);
CREATE INDEX provider_configs_resolve ON provider_configs (tenant_id, channel, priority) WHERE enabled;
CREATE INDEX provider_configs_key ON provider_configs (key_id);

CREATE TABLE message_logs (
    id                  UUID PRIMARY KEY,
    tenant_id           TEXT NOT NULL,
    channel             TEXT NOT NULL CHECK (channel IN ('email', 'sms')),
    recipient           TEXT NOT NULL,
    status              TEXT NOT NULL,
    provider_id         UUID,
    provider_kind       TEXT,
    provider_message_id TEXT,
    attempts            INTEGER NOT NULL DEFAULT 0,
    last_error          TEXT,
    idempotency_key     TEXT,
    metadata            JSONB,
    ttl_seconds         BIGINT,
    created_at          TIMESTAMPTZ NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    sent_at             TIMESTAMPTZ,
    completed_at        TIMESTAMPTZ
);
CREATE UNIQUE INDEX message_logs_idempotency ON message_logs (tenant_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX message_logs_list ON message_logs (tenant_id, created_at DESC, id DESC);
CREATE INDEX message_logs_status ON message_logs (tenant_id, status, created_at DESC, id DESC);
CREATE INDEX message_logs_provider_message ON message_logs (provider_id, provider_message_id)
    WHERE provider_message_id IS NOT NULL;

CREATE TABLE message_events (
    id          BIGSERIAL PRIMARY KEY,
    message_id  UUID NOT NULL REFERENCES message_logs (id) ON DELETE CASCADE,
    tenant_id   TEXT NOT NULL,
    kind        TEXT NOT NULL,
    provider_id UUID,
    detail      JSONB,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX message_events_message ON message_events (message_id, created_at, id);

-- Every envelope sent to {ns}.dead, with the reason: also those too malformed to have a
-- message_logs row. The body is not stored (it can hold one-time codes).
CREATE TABLE dead_letters (
    id          BIGSERIAL PRIMARY KEY,
    message_id  UUID,
    tenant_id   TEXT,
    reason      TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX dead_letters_message ON dead_letters (message_id);
