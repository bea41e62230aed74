-- A tenant's suppression list: recipients no message of the channel is sent to. A send to one
-- ends `suppressed` without any provider call (see src/worker/suppression.rs).
--
-- `recipient` is normalised: email addresses lower-cased, phone numbers E.164 as stored.
-- `message_id` is the message whose bounce, complaint or refusal added the entry (none when
-- added by hand).
CREATE TABLE suppressions (
    id          UUID PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    channel     TEXT NOT NULL CHECK (channel IN ('email', 'sms')),
    recipient   TEXT NOT NULL,
    reason      TEXT NOT NULL CHECK (reason IN ('hard_bounce', 'complaint', 'opted_out',
                                                'invalid_recipient', 'manual')),
    message_id  UUID,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, channel, recipient)
);
CREATE INDEX suppressions_list ON suppressions (tenant_id, created_at DESC, id DESC);

-- A hard-bounce or complaint receipt suppresses its recipient in the same transaction that
-- records the receipt's event, whichever code path records it. Every provider adapter maps
-- only permanent bounces to the `bounced` event (soft ones stay in progress or
-- `undelivered`), so `bounced` means a hard bounce here.
CREATE FUNCTION suppress_on_receipt() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO suppressions (id, tenant_id, channel, recipient, reason, message_id)
    SELECT gen_random_uuid(), m.tenant_id, m.channel,
           CASE WHEN m.channel = 'email' THEN lower(m.recipient) ELSE m.recipient END,
           CASE NEW.kind WHEN 'bounced' THEN 'hard_bounce' ELSE 'complaint' END,
           m.id
    FROM message_logs m
    WHERE m.id = NEW.message_id AND m.recipient <> ''
    ON CONFLICT (tenant_id, channel, recipient) DO NOTHING;
    RETURN NULL;
END
$$;

CREATE TRIGGER message_events_suppress
    AFTER INSERT ON message_events
    FOR EACH ROW WHEN (NEW.kind IN ('bounced', 'complained'))
    EXECUTE FUNCTION suppress_on_receipt();
