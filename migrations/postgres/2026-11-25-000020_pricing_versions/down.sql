DROP TRIGGER customers_pricing_version ON customers;
DROP TRIGGER vendor_accounts_pricing_version ON vendor_accounts;
DROP TRIGGER fx_rates_pricing_version ON fx_rates;
DROP TRIGGER price_rules_pricing_version ON price_rules;
DROP FUNCTION bump_pricing_version();
DROP TABLE pricing_versions;
