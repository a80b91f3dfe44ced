-- Where a customer's billing periods start: on `billing_anchor_day` (1-31; past a month's end:
-- its last day) of `billing_anchor_month` (1-12) and every cycle length after it. 1 January:
-- calendar periods, the default and what every customer had before.
ALTER TABLE customers ADD COLUMN billing_anchor_month INTEGER NOT NULL DEFAULT 1;
ALTER TABLE customers ADD COLUMN billing_anchor_day INTEGER NOT NULL DEFAULT 1;
