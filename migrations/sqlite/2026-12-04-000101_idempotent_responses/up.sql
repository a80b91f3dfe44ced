-- The encoded first response of a mutating call, so a retry with its request id gets it back
-- byte for byte. NULL only on rows recorded before responses were kept.
ALTER TABLE idempotency_keys ADD COLUMN response BLOB;
