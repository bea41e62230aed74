-- Rollup of message_logs for GET /v1/stats, kept current by the worker's batching writer in
-- the same transactions that change message_logs (and by receipts and replays in theirs; see
-- src/store/stats.rs), so the API never scans message_logs.
--
-- Messages are counted in the period (UTC hour, or UTC day) they were accepted in
-- (created_at), under their current status and provider: a change of status moves one count
-- from the old row to the new one. provider_id is the nil UUID for messages no provider has
-- handled yet. The daily tables hold the same counts as the hourly ones, summed per day, so
-- long ranges read few rows.
--
-- slot: every row of a period is split over a few slots (0–3), summed by readers. Batches
-- written at the same time use different slots, so they do not wait for each other's commit
-- on the same hot row (see SLOTS in src/store/stats/mod.rs).
CREATE TABLE message_stats_hourly (
    tenant_id    TEXT NOT NULL,
    period_start TIMESTAMPTZ NOT NULL,
    channel      TEXT NOT NULL,
    provider_id  UUID NOT NULL,
    status       TEXT NOT NULL,
    slot         SMALLINT NOT NULL,
    count        BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, period_start, channel, provider_id, status, slot)
);
CREATE TABLE message_stats_daily (LIKE message_stats_hourly INCLUDING ALL);

-- Accept → sent latency of the messages accepted in the period, as a fixed histogram:
-- element i counts latencies up to LATENCY_BOUNDS_MS[i] (src/store/stats.rs), the last
-- element everything above. The bounds are part of the stored data: never change them in
-- place.
CREATE TABLE message_latency_hourly (
    tenant_id    TEXT NOT NULL,
    period_start TIMESTAMPTZ NOT NULL,
    channel      TEXT NOT NULL,
    provider_id  UUID NOT NULL,
    slot         SMALLINT NOT NULL,
    buckets      BIGINT[] NOT NULL,
    PRIMARY KEY (tenant_id, period_start, channel, provider_id, slot)
);
CREATE TABLE message_latency_daily (LIKE message_latency_hourly INCLUDING ALL);

-- Existing messages, so the counts start complete (latencies start empty).
INSERT INTO message_stats_hourly (tenant_id, period_start, channel, provider_id, status, slot, count)
SELECT tenant_id, date_trunc('hour', created_at, 'UTC'), channel,
       COALESCE(provider_id, '00000000-0000-0000-0000-000000000000'::uuid), status, 0, count(*)
FROM message_logs
GROUP BY 1, 2, 3, 4, 5;
INSERT INTO message_stats_daily (tenant_id, period_start, channel, provider_id, status, slot, count)
SELECT tenant_id, date_trunc('day', period_start, 'UTC'), channel, provider_id, status, 0, SUM(count)
FROM message_stats_hourly
GROUP BY 1, 2, 3, 4, 5;
