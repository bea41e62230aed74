-- A provider's receipt is recorded once per message, kind and receipt id, by the database:
-- two copies of one webhook arriving together could both pass the old SELECT-then-INSERT.
-- apply_receipt inserts with ON CONFLICT DO NOTHING against this index.
--
-- Copies recorded before this migration are removed first (the earliest one stays), or the
-- index could not be built. Building it reads message_events once and blocks writes to it
-- meanwhile (see docs/operations.md for large tables).
DELETE FROM message_events later
USING message_events earlier
WHERE later.detail ? 'receipt_id'
  AND earlier.detail ? 'receipt_id'
  AND later.message_id = earlier.message_id
  AND later.kind = earlier.kind
  AND later.detail->>'receipt_id' = earlier.detail->>'receipt_id'
  AND later.id > earlier.id;

-- IF NOT EXISTS: an operator may have built it beforehand with CONCURRENTLY (operations.md).
CREATE UNIQUE INDEX IF NOT EXISTS message_events_receipt
    ON message_events (message_id, kind, (detail->>'receipt_id'))
    WHERE detail ? 'receipt_id';
