DROP INDEX subscriptions_due_idx;
CREATE INDEX subscriptions_due_idx ON subscriptions (period_end) WHERE status = 'ACTIVE';
