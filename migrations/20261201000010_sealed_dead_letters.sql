-- Dead-letter bodies sealed with the service keyring (AES-256-GCM, associated data naming the
-- row; see src/store/dead_letter_bodies.rs), because a body can hold a one-time code.
--
-- Additive: a sealed body goes to the new `sealed_body` column and `body` stays NULL, so a
-- replica still running the previous version (mid rolling deploy) sees such a row as "not
-- replayable" instead of publishing ciphertext as an envelope. Rows written before this (or by
-- a previous-version worker during the deploy) keep their clear `body`; replay reads either,
-- and `communication keys rotate` seals them (docs/operations.md).
ALTER TABLE dead_letters
    ADD COLUMN sealed_body BYTEA,
    -- The key `sealed_body` is sealed under (hex id, as provider_configs.key_id).
    ADD COLUMN body_key_id TEXT;

