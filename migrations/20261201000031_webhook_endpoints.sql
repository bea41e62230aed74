-- A tenant's status-webhook endpoints (see docs/webhooks.md).
--
-- `secret` and `previous_secret` are the `whsec_…` signing secrets sealed with the keyring
-- (AES-256-GCM; the associated data binds them to the tenant and this row, so a blob copied
-- to another row does not open). After a rotation the previous secret keeps signing, beside
-- the new one, until `previous_secret_expires_at`.
-- `failing_since` is when the current run of failed deliveries began (NULL after a success);
-- an endpoint failing for `COMMUNICATION_WEBHOOK_DISABLE_AFTER` is disabled with the reason
-- in `disabled_reason`.
CREATE TABLE webhook_endpoints (
    id                          UUID PRIMARY KEY,
    tenant_id                   TEXT NOT NULL,
    url                         TEXT NOT NULL,
    events                      TEXT[] NOT NULL,
    description                 TEXT,
    enabled                     BOOLEAN NOT NULL DEFAULT true,
    disabled_reason             TEXT,
    secret                      BYTEA NOT NULL,
    previous_secret             BYTEA,
    previous_secret_expires_at  TIMESTAMPTZ,
    failing_since               TIMESTAMPTZ,
    created_at                  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at                  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id, created_at, id);
