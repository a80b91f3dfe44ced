-- A per-tenant counter that moves with every change that can alter rating: price rules, FX rates,
-- vendor account links and customers (their billing currency). Ledger writers keep the tenant's
-- pricing in memory and reload it only when the counter has moved. Triggers bump it, so no write
-- path (present or future) can forget to.
CREATE TABLE pricing_versions (
    tenant_id  TEXT PRIMARY KEY,
    version    BIGINT NOT NULL
);

CREATE FUNCTION bump_pricing_version() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    tenant TEXT;
BEGIN
    IF TG_OP = 'DELETE' THEN
        tenant := OLD.tenant_id;
    ELSE
        tenant := NEW.tenant_id;
    END IF;
    INSERT INTO pricing_versions (tenant_id, version) VALUES (tenant, 1)
    ON CONFLICT (tenant_id) DO UPDATE SET version = pricing_versions.version + 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER price_rules_pricing_version AFTER INSERT OR UPDATE OR DELETE ON price_rules
    FOR EACH ROW EXECUTE FUNCTION bump_pricing_version();
CREATE TRIGGER fx_rates_pricing_version AFTER INSERT OR UPDATE OR DELETE ON fx_rates
    FOR EACH ROW EXECUTE FUNCTION bump_pricing_version();
CREATE TRIGGER vendor_accounts_pricing_version AFTER INSERT OR UPDATE OR DELETE ON vendor_accounts
    FOR EACH ROW EXECUTE FUNCTION bump_pricing_version();
CREATE TRIGGER customers_pricing_version AFTER INSERT OR DELETE OR UPDATE OF billing_currency ON customers
    FOR EACH ROW EXECUTE FUNCTION bump_pricing_version();
