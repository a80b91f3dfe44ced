-- What an AWS partner account's poller asks Cost Explorer for (PartnerAccount.aws_settings).
-- Set on AWS partner accounts only (NULL for other vendors); existing AWS accounts get the
-- defaults they were polled with until now.
ALTER TABLE partner_accounts ADD COLUMN aws_granularity TEXT;
ALTER TABLE partner_accounts ADD COLUMN aws_cost_metric TEXT;
ALTER TABLE partner_accounts ADD COLUMN aws_meter_mode TEXT;
ALTER TABLE partner_accounts ADD COLUMN aws_request_budget INTEGER;
UPDATE partner_accounts
   SET aws_granularity = 'DAILY',
       aws_cost_metric = 'UnblendedCost',
       aws_meter_mode = 'SERVICE',
       aws_request_budget = 20
 WHERE vendor = 'AWS';
