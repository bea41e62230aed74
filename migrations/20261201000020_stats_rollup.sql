-- Rollup of message_logs for GET /v1/stats, kept current by the worker's batching writer in
-- the same transactions that change message_logs (see src/store/stats.rs), so the API never
-- scans message_logs.
--
-- Messages are counted in the hour they were accepted (created_at, UTC), under their current
-- status and provider: a change of status moves one count from the old row to the new one.
-- provider_id is the nil UUID for messages no provider has handled yet.
CREATE TABLE message_stats_hourly (
    tenant_id   TEXT NOT NULL,
    hour        TIMESTAMPTZ NOT NULL,
    channel     TEXT NOT NULL,
    provider_id UUID NOT NULL,
    status      TEXT NOT NULL,
    count       BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, hour, channel, provider_id, status)
);

-- Accept → sent latency of the messages accepted in the hour, as a fixed histogram: element
-- i counts latencies up to LATENCY_BOUNDS_MS[i] (src/store/stats.rs), the last element
-- everything above. The bounds are part of the stored data: never change them in place.
CREATE TABLE message_latency_hourly (
    tenant_id   TEXT NOT NULL,
    hour        TIMESTAMPTZ NOT NULL,
    channel     TEXT NOT NULL,
    provider_id UUID NOT NULL,
    buckets     BIGINT[] NOT NULL,
    PRIMARY KEY (tenant_id, hour, channel, provider_id)
);

-- Existing messages, so the rollup starts complete.
INSERT INTO message_stats_hourly (tenant_id, hour, channel, provider_id, status, count)
SELECT tenant_id, date_trunc('hour', created_at, 'UTC'), channel,
       COALESCE(provider_id, '00000000-0000-0000-0000-000000000000'::uuid), status, count(*)
FROM message_logs
GROUP BY 1, 2, 3, 4, 5;
