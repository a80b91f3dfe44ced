-- Coarser sums of charge_totals, kept by the same ledger write (see src/domain/spend/rollup.rs),
-- so a spend read costs what its answer holds, not the customer's days x meters. grain:
--   'day'           per usage day (vendor, service, meter '')
--   'day_service'   per usage day, vendor and service (meter '')
--   'month_service' per month (bucket: its first day), vendor and service (meter '')
--   'month_meter'   per month, vendor, service and meter
-- events: the charge events summed (rows built here from charge_totals count each daily total
-- as one); a read that takes a month less some of its days keeps a key only while some remain.
-- Amounts are exact decimal text, summed with mspgw_decimal_sum.
CREATE TABLE charge_rollups (
    tenant_id    TEXT NOT NULL,
    customer_id  TEXT NOT NULL,
    grain        TEXT NOT NULL,
    bucket       TEXT NOT NULL,
    vendor       TEXT NOT NULL,
    service      TEXT NOT NULL,
    meter        TEXT NOT NULL,
    amount       TEXT NOT NULL,
    quantity     TEXT NOT NULL,
    events       BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, customer_id, grain, bucket, vendor, service, meter)
);

INSERT INTO charge_rollups
SELECT tenant_id, customer_id, 'day', usage_date, '', '', '', mspgw_decimal_sum(amount),
       mspgw_decimal_sum(quantity), count(*)
  FROM charge_totals GROUP BY tenant_id, customer_id, usage_date;
INSERT INTO charge_rollups
SELECT tenant_id, customer_id, 'day_service', usage_date, vendor, service, '',
       mspgw_decimal_sum(amount), mspgw_decimal_sum(quantity), count(*)
  FROM charge_totals GROUP BY tenant_id, customer_id, usage_date, vendor, service;
INSERT INTO charge_rollups
SELECT tenant_id, customer_id, 'month_service', substr(usage_date, 1, 7) || '-01', vendor,
       service, '', mspgw_decimal_sum(amount), mspgw_decimal_sum(quantity), count(*)
  FROM charge_totals GROUP BY tenant_id, customer_id, substr(usage_date, 1, 7), vendor, service;
INSERT INTO charge_rollups
SELECT tenant_id, customer_id, 'month_meter', substr(usage_date, 1, 7) || '-01', vendor,
       service, meter, mspgw_decimal_sum(amount), mspgw_decimal_sum(quantity), count(*)
  FROM charge_totals
 GROUP BY tenant_id, customer_id, substr(usage_date, 1, 7), vendor, service, meter;
