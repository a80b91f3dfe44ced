-- Request ids are forgotten after the retention period (idempotency_retention_days): found by age.
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
