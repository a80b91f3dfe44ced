ALTER TABLE subscriptions DROP COLUMN change_expires_at;
ALTER TABLE subscriptions DROP COLUMN change_request;
