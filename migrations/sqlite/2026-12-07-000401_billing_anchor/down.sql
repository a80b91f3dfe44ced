ALTER TABLE customers DROP COLUMN billing_anchor_day;
ALTER TABLE customers DROP COLUMN billing_anchor_month;
