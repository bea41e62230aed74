-- GET /v1/api-keys shows when a key was last used. Recorded at most about once a minute per
-- key (src/store/api_keys.rs), off the request's path.
ALTER TABLE api_keys ADD COLUMN last_used_at TIMESTAMPTZ;

-- Listing a tenant's active keys, newest first.
CREATE INDEX api_keys_tenant_active ON api_keys (tenant_id, created_at DESC, id DESC)
    WHERE revoked_at IS NULL;
