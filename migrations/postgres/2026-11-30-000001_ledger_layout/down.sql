DROP TRIGGER customers_pricing_version ON customers;
CREATE TRIGGER customers_pricing_version AFTER INSERT OR DELETE OR UPDATE OF billing_currency ON customers
    FOR EACH ROW EXECUTE FUNCTION bump_pricing_version();

DROP TABLE charge_totals;
DROP TABLE charge_event_runs;

ALTER TABLE charge_events ADD COLUMN line_key_text TEXT;
UPDATE charge_events SET line_key_text = encode(substr(line_key, 9), 'hex');
ALTER TABLE charge_events DROP COLUMN line_key;
ALTER TABLE charge_events RENAME COLUMN line_key_text TO line_key;
ALTER TABLE charge_events ALTER COLUMN line_key SET NOT NULL;
CREATE INDEX charge_events_customer_idx ON charge_events (tenant_id, customer_id, sequence);
CREATE INDEX charge_events_window_idx ON charge_events (tenant_id, customer_id, window_start);

ALTER TABLE usage_lines ADD COLUMN line_key_text TEXT;
UPDATE usage_lines SET line_key_text = encode(substr(line_key, 9), 'hex');
ALTER TABLE usage_lines DROP COLUMN line_key;
ALTER TABLE usage_lines RENAME COLUMN line_key_text TO line_key;
ALTER TABLE usage_lines ALTER COLUMN line_key SET NOT NULL;
ALTER TABLE usage_lines ADD PRIMARY KEY (line_key);
CREATE INDEX usage_lines_unrated_idx ON usage_lines (tenant_id, line_key) WHERE unrated_reason IS NOT NULL;
CREATE INDEX usage_lines_window_idx ON usage_lines (tenant_id, partner_account_id, window_start);

ALTER TABLE partner_accounts DROP COLUMN line_key_prefix;
