-- `GET /v1/messages?to=…`: a tenant's messages to one recipient, newest first, found through
-- this index instead of a walk over all the tenant's messages (the cursor's (created_at, id)
-- order is the index's order, so every page is a short range scan).
--
-- The provider filter (`provider_id=…`) has no index of its own: a tenant has few providers,
-- so the tenant's newest-first index (message_logs_list) fills a page after a short walk. An
-- index costs the hot writer one entry per row version: the insert and each status change
-- (those updates are not HOT, `status` being indexed), three or four per message.
--
-- Building it reads message_logs once and blocks writes to it meanwhile (the worker's batches
-- wait; nothing fails). On a large table build it beforehand without the write lock; the
-- migration then finds it and skips the build (docs/operations.md).
CREATE INDEX IF NOT EXISTS message_logs_recipient
    ON message_logs (tenant_id, recipient, created_at DESC, id DESC);
