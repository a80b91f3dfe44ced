ALTER TABLE partner_accounts DROP COLUMN aws_request_budget;
ALTER TABLE partner_accounts DROP COLUMN aws_meter_mode;
ALTER TABLE partner_accounts DROP COLUMN aws_cost_metric;
ALTER TABLE partner_accounts DROP COLUMN aws_granularity;
