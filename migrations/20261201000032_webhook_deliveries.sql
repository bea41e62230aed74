-- Status webhooks: the outbox and the record of every attempt (see docs/webhooks.md).
--
-- No event is lost: when a message reaches sent, delivered, undelivered, bounced, failed,
-- expired or suppressed, the trigger below writes the event (`webhook_events`) and one
-- `webhook_deliveries` row per subscribed, enabled endpoint IN THE SAME TRANSACTION as the
-- status change, whichever code path made it (the worker's batched writer, a receipt, a
-- rejected envelope). A delivery with `published_at` NULL is in the outbox: each worker's
-- outbox relay publishes it to `{ns}.webhooks` and then sets `published_at`, so a crash at
-- any point leaves it either unpublished (the relay publishes it later) or on the queue.

-- One event of one message. `id` is the `webhook-id` (the same on every retry and endpoint);
-- `sequence` counts the message's events from 1, so receivers can drop stale ones.
CREATE TABLE webhook_events (
    id          UUID PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    message_id  UUID NOT NULL REFERENCES message_logs (id) ON DELETE CASCADE,
    event_type  TEXT NOT NULL,
    sequence    INTEGER NOT NULL,
    payload     JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX webhook_events_message ON webhook_events (message_id, sequence);

-- One event to one endpoint. `state`: pending (in the outbox, on the queue or waiting for a
-- retry), succeeded, failed (every retry spent), abandoned (the endpoint was disabled).
CREATE TABLE webhook_deliveries (
    id            UUID PRIMARY KEY,
    event_id      UUID NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
    endpoint_id   UUID NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    tenant_id     TEXT NOT NULL,
    state         TEXT NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'succeeded', 'failed', 'abandoned')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    published_at  TIMESTAMPTZ,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX webhook_deliveries_outbox ON webhook_deliveries (created_at)
    WHERE published_at IS NULL;

-- Every request made (never the secret, never the receiver's response body).
CREATE TABLE webhook_attempts (
    id            UUID PRIMARY KEY,
    delivery_id   UUID NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    endpoint_id   UUID NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    tenant_id     TEXT NOT NULL,
    event_id      UUID NOT NULL,
    event_type    TEXT NOT NULL,
    message_id    UUID NOT NULL,
    attempt       INTEGER NOT NULL,
    status_code   INTEGER,
    latency_ms    INTEGER NOT NULL,
    error         TEXT,
    succeeded     BOOLEAN NOT NULL,
    attempted_at  TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (endpoint_id, attempted_at DESC, id DESC);

CREATE INDEX webhook_endpoints_subscribed ON webhook_endpoints (tenant_id) WHERE enabled;

CREATE FUNCTION enqueue_webhook_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    kind  TEXT := 'message.' || NEW.status;
    seq   INTEGER;
    ev    UUID;
    at    TIMESTAMPTZ := clock_timestamp();
BEGIN
    -- The common case (no endpoint wants it) costs one index probe.
    IF NOT EXISTS (SELECT 1 FROM webhook_endpoints e
                   WHERE e.tenant_id = NEW.tenant_id AND e.enabled AND kind = ANY (e.events)) THEN
        RETURN NULL;
    END IF;
    -- The message row is locked by this statement until commit: sequences cannot race.
    SELECT COALESCE(max(sequence), 0) + 1 INTO seq FROM webhook_events WHERE message_id = NEW.id;
    ev := gen_random_uuid();
    INSERT INTO webhook_events (id, tenant_id, message_id, event_type, sequence, payload, created_at)
    VALUES (ev, NEW.tenant_id, NEW.id, kind, seq, jsonb_build_object(
        'type', kind,
        'timestamp', at,
        'data', jsonb_build_object(
            'message_id', NEW.id,
            'tenant_id', NEW.tenant_id,
            'status', NEW.status,
            'channel', NEW.channel,
            'recipient', NEW.recipient,
            'provider_id', NEW.provider_id,
            'provider_kind', NEW.provider_kind,
            'event_time', at,
            'idempotency_key', NEW.idempotency_key,
            'metadata', NEW.metadata,
            'sequence', seq)), at);
    INSERT INTO webhook_deliveries (id, event_id, endpoint_id, tenant_id)
    SELECT gen_random_uuid(), ev, e.id, e.tenant_id FROM webhook_endpoints e
    WHERE e.tenant_id = NEW.tenant_id AND e.enabled AND kind = ANY (e.events);
    RETURN NULL;
END
$$;

CREATE TRIGGER message_logs_webhook_on_insert
    AFTER INSERT ON message_logs
    FOR EACH ROW
    WHEN (NEW.status IN ('sent', 'delivered', 'undelivered', 'bounced', 'failed', 'expired',
                         'suppressed'))
    EXECUTE FUNCTION enqueue_webhook_event();

CREATE TRIGGER message_logs_webhook_on_update
    AFTER UPDATE OF status ON message_logs
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          AND NEW.status IN ('sent', 'delivered', 'undelivered', 'bounced', 'failed', 'expired',
                             'suppressed'))
    EXECUTE FUNCTION enqueue_webhook_event();
