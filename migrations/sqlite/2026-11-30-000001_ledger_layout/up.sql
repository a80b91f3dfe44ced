-- The ledger's layout for write throughput (see the PostgreSQL migration of the same name for
-- why): 24-byte usage line keys clustered by partner account and window hour, charge events with
-- only their (tenant, sequence) key, runs of a customer's consecutive sequences, and daily
-- totals per customer, vendor, service and meter.
--
-- mspgw_local_date(micros, time zone) and mspgw_decimal_sum(text) are registered by the
-- gateway's migration runner: SQLite knows no time zones, and its sum() would go through floats.

ALTER TABLE partner_accounts ADD COLUMN line_key_prefix INTEGER NOT NULL DEFAULT 0;
UPDATE partner_accounts
   SET line_key_prefix = (SELECT n FROM (SELECT id, row_number() OVER (ORDER BY created_at, id) AS n
                                           FROM partner_accounts) numbered
                           WHERE numbered.id = partner_accounts.id);
CREATE UNIQUE INDEX partner_accounts_line_key_prefix_key ON partner_accounts (line_key_prefix);

CREATE TABLE usage_lines_rekeyed (
    tenant_id           TEXT NOT NULL,
    line_key            BLOB NOT NULL,
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
SELECT u.tenant_id,
       unhex(printf('%08x%08x', p.line_key_prefix, max(0, u.window_start / 3600000000)) || u.line_key),
       u.partner_account_id, u.vendor, u.vendor_account_id, u.service, u.meter, u.region,
       u.window_start, u.window_end, u.meter_name, u.quantity, u.unit, u.cost, u.list_cost,
       u.currency, u.estimated, u.removed, u.customer_id, u.rated_amount, u.rated_currency,
       u.rule_id, u.unrated_reason, u.updated_at
  FROM usage_lines u LEFT JOIN partner_accounts p ON p.id = u.partner_account_id;

CREATE TABLE charge_events_rekeyed (
    tenant_id     TEXT NOT NULL,
    sequence      BIGINT NOT NULL,
    line_key      BLOB NOT NULL,
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
SELECT e.tenant_id, e.sequence,
       unhex(printf('%08x%08x', p.line_key_prefix, max(0, u.window_start / 3600000000)) || u.line_key),
       e.customer_id, e.kind, e.amount, e.currency, e.quantity, e.vendor, e.service, e.meter,
       e.window_start, e.recorded_at
  FROM charge_events e
  LEFT JOIN usage_lines u ON u.line_key = e.line_key
  LEFT JOIN partner_accounts p ON p.id = u.partner_account_id;

DROP TABLE charge_events;
ALTER TABLE charge_events_rekeyed RENAME TO charge_events;
DROP TABLE usage_lines;
ALTER TABLE usage_lines_rekeyed RENAME TO usage_lines;
CREATE INDEX usage_lines_unrated_idx ON usage_lines (tenant_id, line_key) WHERE unrated_reason IS NOT NULL;

CREATE TABLE charge_event_runs (
    tenant_id       TEXT NOT NULL,
    customer_id     TEXT NOT NULL,
    first_sequence  BIGINT NOT NULL,
    last_sequence   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, customer_id, last_sequence)
);
INSERT INTO charge_event_runs (tenant_id, customer_id, first_sequence, last_sequence)
SELECT tenant_id, customer_id, min(sequence), max(sequence)
  FROM (SELECT tenant_id, customer_id, sequence,
               sequence - row_number() OVER (PARTITION BY tenant_id, customer_id ORDER BY sequence) AS island
          FROM charge_events) numbered
 GROUP BY tenant_id, customer_id, island;

CREATE TABLE charge_totals (
    tenant_id    TEXT NOT NULL,
    customer_id  TEXT NOT NULL,
    usage_date   TEXT NOT NULL,
    vendor       TEXT NOT NULL,
    service      TEXT NOT NULL,
    meter        TEXT NOT NULL,
    amount       TEXT NOT NULL,
    quantity     TEXT NOT NULL,
    PRIMARY KEY (tenant_id, customer_id, usage_date, vendor, service, meter)
);
INSERT INTO charge_totals (tenant_id, customer_id, usage_date, vendor, service, meter, amount, quantity)
SELECT e.tenant_id, e.customer_id, mspgw_local_date(e.window_start, c.time_zone) AS usage_date,
       e.vendor, e.service, e.meter, mspgw_decimal_sum(e.amount), mspgw_decimal_sum(e.quantity)
  FROM charge_events e JOIN customers c ON c.id = e.customer_id
 GROUP BY e.tenant_id, e.customer_id, usage_date, e.vendor, e.service, e.meter;

-- Ledger writers cache each customer's time zone too (it picks the day of a daily total).
DROP TRIGGER customers_pricing_version_update;
CREATE TRIGGER customers_pricing_version_update AFTER UPDATE OF billing_currency, time_zone ON customers BEGIN
    INSERT OR IGNORE INTO pricing_versions (tenant_id, version) VALUES (NEW.tenant_id, 0);
    UPDATE pricing_versions SET version = version + 1 WHERE tenant_id = NEW.tenant_id;
END;
