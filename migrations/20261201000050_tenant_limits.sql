-- Operator-set limits per tenant (issue 11): a maximum accept rate of `POST /v1/send` and a
-- daily quota per channel. NULL means unlimited; a tenant without a row has no limits.
-- Intake reads this table through a short-lived in-memory cache (`src/limits/cache.rs`), never
-- per request; a change takes effect within `COMMUNICATION_LIMITS_CACHE_MS` (5 s by default).
-- The counters themselves live in Redis (`src/limits/admission.rs`).
CREATE TABLE tenant_limits (
    tenant_id              TEXT PRIMARY KEY,
    accept_rate_per_second INTEGER CHECK (accept_rate_per_second BETWEEN 1 AND 10000000),
    daily_quota_email      INTEGER CHECK (daily_quota_email BETWEEN 1 AND 10000000),
    daily_quota_sms        INTEGER CHECK (daily_quota_sms BETWEEN 1 AND 10000000),
    updated_at             TIMESTAMPTZ NOT NULL DEFAULT now()
);
