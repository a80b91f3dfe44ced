DROP TRIGGER pricing_policies_pricing_version ON pricing_policies;
DROP TABLE pricing_policies;
ALTER TABLE poll_states DROP COLUMN consecutive_failures;
ALTER TABLE poll_states DROP COLUMN next_poll_at;
UPDATE poll_states SET version_tags = NULL;
ALTER TABLE poll_states RENAME COLUMN version_tags TO version_tag;
ALTER TABLE partner_accounts DROP COLUMN ms_token_scope;
ALTER TABLE partner_accounts DROP COLUMN ms_authority_host;
ALTER TABLE partner_accounts DROP COLUMN ms_billing_currency;
