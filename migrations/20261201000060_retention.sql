-- Retention: messages older than their tenant's retention are removed in small batches by the
-- worker (one instance at a time) and by `communication retention run` (src/retention/,
-- docs/operations.md "Retention").
--
-- The operator's per-tenant override of COMMUNICATION_RETENTION_DAYS; no row means the
-- default. Set by `PUT /v1/retention` or `communication retention set`.
CREATE TABLE tenant_retention (
    tenant_id   TEXT PRIMARY KEY,
    days        INTEGER NOT NULL CHECK (days BETWEEN 1 AND 3650),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- A batch picks a tenant's oldest messages through message_logs_list
-- (tenant_id, created_at DESC, id DESC), which exists already: no new index on message_logs,
-- so the hot writer pays nothing more per row.
--
-- The rows that go with a message are found by these indexes. Without them each removed
-- webhook event would cost a scan of webhook_deliveries, and each delivery a scan of
-- webhook_attempts (their foreign keys had no index on the referencing side).
--
-- Building them reads each table once and blocks writes to it meanwhile (the webhook relay
-- and sender wait; nothing fails). On large tables build them beforehand with CONCURRENTLY;
-- the migration then finds them and skips the build (docs/operations.md).
CREATE INDEX IF NOT EXISTS webhook_deliveries_event ON webhook_deliveries (event_id);
CREATE INDEX IF NOT EXISTS webhook_attempts_delivery ON webhook_attempts (delivery_id);
-- Dead letters are removed by their own age (some have no message row: invalid envelopes).
CREATE INDEX IF NOT EXISTS dead_letters_created ON dead_letters (created_at);
