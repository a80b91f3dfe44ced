DROP TRIGGER customers_pricing_version_update;
CREATE TRIGGER customers_pricing_version_update AFTER UPDATE OF billing_currency ON customers BEGIN
    INSERT OR IGNORE INTO pricing_versions (tenant_id, version) VALUES (NEW.tenant_id, 0);
    UPDATE pricing_versions SET version = version + 1 WHERE tenant_id = NEW.tenant_id;
END;

DROP TABLE charge_totals;
DROP TABLE charge_event_runs;

CREATE TABLE charge_events_rekeyed (
    tenant_id     TEXT NOT NULL,
    sequence      BIGINT NOT NULL,
    line_key      TEXT NOT NULL,
    customer_id   TEXT NOT NULL,
    kind          TEXT NOT NULL,
    amount        TEXT NOT NULL,
    currency      TEXT NOT NULL,
    quantity      TEXT NOT NULL,
    vendor        TEXT NOT NULL,
    service       TEXT NOT NULL,
    meter         TEXT NOT NULL,
    window_start  BIGINT NOT NULL,
    recorded_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, sequence)
);
INSERT INTO charge_events_rekeyed
SELECT tenant_id, sequence, lower(hex(substr(line_key, 9))), customer_id, kind, amount, currency,
       quantity, vendor, service, meter, window_start, recorded_at
  FROM charge_events;
DROP TABLE charge_events;
ALTER TABLE charge_events_rekeyed RENAME TO charge_events;
CREATE INDEX charge_events_customer_idx ON charge_events (tenant_id, customer_id, sequence);
CREATE INDEX charge_events_window_idx ON charge_events (tenant_id, customer_id, window_start);

CREATE TABLE usage_lines_rekeyed (
    tenant_id           TEXT NOT NULL,
    line_key            TEXT NOT NULL,
    partner_account_id  TEXT NOT NULL,
    vendor              TEXT NOT NULL,
    vendor_account_id   TEXT NOT NULL,
    service             TEXT NOT NULL,
    meter               TEXT NOT NULL,
    region              TEXT NOT NULL,
    window_start        BIGINT NOT NULL,
    window_end          BIGINT NOT NULL,
    meter_name          TEXT NOT NULL,
    quantity            TEXT NOT NULL,
    unit                TEXT NOT NULL,
    cost                TEXT NOT NULL,
    list_cost           TEXT,
    currency            TEXT NOT NULL,
    estimated           BOOLEAN NOT NULL,
    removed             BOOLEAN NOT NULL,
    customer_id         TEXT,
    rated_amount        TEXT,
    rated_currency      TEXT,
    rule_id             TEXT,
    unrated_reason      TEXT,
    updated_at          BIGINT NOT NULL,
    PRIMARY KEY (line_key)
);
INSERT INTO usage_lines_rekeyed
SELECT tenant_id, lower(hex(substr(line_key, 9))), partner_account_id, vendor, vendor_account_id,
       service, meter, region, window_start, window_end, meter_name, quantity, unit, cost,
       list_cost, currency, estimated, removed, customer_id, rated_amount, rated_currency,
       rule_id, unrated_reason, updated_at
  FROM usage_lines;
DROP TABLE usage_lines;
ALTER TABLE usage_lines_rekeyed RENAME TO usage_lines;
CREATE INDEX usage_lines_window_idx ON usage_lines (tenant_id, partner_account_id, window_start);
CREATE INDEX usage_lines_unrated_idx ON usage_lines (tenant_id, line_key) WHERE unrated_reason IS NOT NULL;

DROP INDEX partner_accounts_line_key_prefix_key;
ALTER TABLE partner_accounts DROP COLUMN line_key_prefix;
