-- Dead letters an operator can inspect and replay (`communication dlq`, /v1/dead-letters).
-- Additive only: rows written before this migration keep NULL bodies and cannot be replayed
-- from the table (their envelopes are still in the {ns}.dead queue).
--
-- The envelope body is stored because replay needs it. It can hold a one-time code: it is
-- never listed, logged or returned by the API, only re-published to {ns}.send.
ALTER TABLE dead_letters
    -- 'failed': a valid envelope whose delivery failed for good (replayable);
    -- 'invalid': an envelope rejected by validation (not replayable as-is).
    ADD COLUMN kind              TEXT NOT NULL DEFAULT 'failed'
                                 CHECK (kind IN ('failed', 'invalid')),
    ADD COLUMN channel           TEXT,
    -- The routing key the envelope arrived with (its channel for a valid one).
    ADD COLUMN routing_key       TEXT,
    -- The raw bytes as received: an invalid envelope may not even be JSON.
    ADD COLUMN body              BYTEA,
    -- A replay claimed the row (message moved back to queued) at this time; set before the
    -- publish so two replays cannot both publish, and so a replay interrupted between the
    -- commit and the publish can be recognised and resumed.
    ADD COLUMN replay_started_at TIMESTAMPTZ,
    -- The replay's publish was confirmed by the broker.
    ADD COLUMN replayed_at       TIMESTAMPTZ,
    -- Who replayed it ('cli', 'api').
    ADD COLUMN replayed_by       TEXT;

-- Listing: newest first, optionally for one tenant.
CREATE INDEX dead_letters_tenant ON dead_letters (tenant_id, id DESC);
