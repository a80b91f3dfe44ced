-- Microsoft partner accounts' own settings (PartnerAccount.microsoft_settings): the currency the
-- unbilled-usage export is asked for, and the Entra ID authority host and token scope ('' = the
-- documented defaults). Set on Microsoft accounts only (NULL for other vendors); existing
-- Microsoft accounts keep the currency they were exported in until now, their tenant's.
ALTER TABLE partner_accounts ADD COLUMN ms_billing_currency TEXT;
ALTER TABLE partner_accounts ADD COLUMN ms_authority_host TEXT;
ALTER TABLE partner_accounts ADD COLUMN ms_token_scope TEXT;
UPDATE partner_accounts
   SET ms_billing_currency = (SELECT t.currency FROM tenants t WHERE t.id = partner_accounts.tenant_id),
       ms_authority_host = '',
       ms_token_scope = ''
 WHERE vendor = 'MICROSOFT';

-- A poll may restate several windows (Microsoft: the current and the last billing period), each
-- with the vendor's version tag of its data: a JSON object, window start -> tag. The single tag
-- kept until now is dropped: the next poll downloads once more.
ALTER TABLE poll_states RENAME COLUMN version_tag TO version_tags;
UPDATE poll_states SET version_tags = NULL;
-- When the account is polled next (a vendor's Retry-After, or back-off after failures), and the
-- failures in a row that the back-off grows with.
ALTER TABLE poll_states ADD COLUMN next_poll_at TIMESTAMPTZ;
ALTER TABLE poll_states ADD COLUMN consecutive_failures INTEGER NOT NULL DEFAULT 0;

-- Tenant-wide pricing policy: whether usage a rule would sell below its vendor cost is held
-- unrated (reason BELOW_COST) instead of charged. No row: the defaults (charged).
CREATE TABLE pricing_policies (
    tenant_id        TEXT PRIMARY KEY REFERENCES tenants (id),
    hold_below_cost  BOOLEAN NOT NULL,
    version          BIGINT NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL
);
CREATE TRIGGER pricing_policies_pricing_version AFTER INSERT OR UPDATE OR DELETE ON pricing_policies
    FOR EACH ROW EXECUTE FUNCTION bump_pricing_version();
