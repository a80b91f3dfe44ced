-- A per-tenant counter that moves with every change that can alter rating: price rules, FX rates,
-- vendor account links and customers (their billing currency). Ledger writers keep the tenant's
-- pricing in memory and reload it only when the counter has moved. Triggers bump it, so no write
-- path (present or future) can forget to.
CREATE TABLE pricing_versions (
    tenant_id  TEXT PRIMARY KEY,
    version    BIGINT NOT NULL
);

CREATE TRIGGER price_rules_pricing_version_insert AFTER INSERT ON price_rules BEGIN
    INSERT OR IGNORE INTO pricing_versions (tenant_id, version) VALUES (NEW.tenant_id, 0);
    UPDATE pricing_versions SET version = version + 1 WHERE tenant_id = NEW.tenant_id;
END;

CREATE TRIGGER price_rules_pricing_version_update AFTER UPDATE ON price_rules BEGIN
    INSERT OR IGNORE INTO pricing_versions (tenant_id, version) VALUES (NEW.tenant_id, 0);
    UPDATE pricing_versions SET version = version + 1 WHERE tenant_id = NEW.tenant_id;
END;

CREATE TRIGGER price_rules_pricing_version_delete AFTER DELETE ON price_rules BEGIN
    INSERT OR IGNORE INTO pricing_versions (tenant_id, version) VALUES (OLD.tenant_id, 0);
    UPDATE pricing_versions SET version = version + 1 WHERE tenant_id = OLD.tenant_id;
END;

CREATE TRIGGER fx_rates_pricing_version_insert AFTER INSERT ON fx_rates BEGIN
    INSERT OR IGNORE INTO pricing_versions (tenant_id, version) VALUES (NEW.tenant_id, 0);
    UPDATE pricing_versions SET version = version + 1 WHERE tenant_id = NEW.tenant_id;
END;

CREATE TRIGGER fx_rates_pricing_version_update AFTER UPDATE ON fx_rates BEGIN
    INSERT OR IGNORE INTO pricing_versions (tenant_id, version) VALUES (NEW.tenant_id, 0);
    UPDATE pricing_versions SET version = version + 1 WHERE tenant_id = NEW.tenant_id;
END;

CREATE TRIGGER fx_rates_pricing_version_delete AFTER DELETE ON fx_rates BEGIN
    INSERT OR IGNORE INTO pricing_versions (tenant_id, version) VALUES (OLD.tenant_id, 0);
    UPDATE pricing_versions SET version = version + 1 WHERE tenant_id = OLD.tenant_id;
END;

CREATE TRIGGER vendor_accounts_pricing_version_insert AFTER INSERT ON vendor_accounts BEGIN
    INSERT OR IGNORE INTO pricing_versions (tenant_id, version) VALUES (NEW.tenant_id, 0);
    UPDATE pricing_versions SET version = version + 1 WHERE tenant_id = NEW.tenant_id;
END;

CREATE TRIGGER vendor_accounts_pricing_version_update AFTER UPDATE ON vendor_accounts BEGIN
    INSERT OR IGNORE INTO pricing_versions (tenant_id, version) VALUES (NEW.tenant_id, 0);
    UPDATE pricing_versions SET version = version + 1 WHERE tenant_id = NEW.tenant_id;
END;

CREATE TRIGGER vendor_accounts_pricing_version_delete AFTER DELETE ON vendor_accounts BEGIN
    INSERT OR IGNORE INTO pricing_versions (tenant_id, version) VALUES (OLD.tenant_id, 0);
    UPDATE pricing_versions SET version = version + 1 WHERE tenant_id = OLD.tenant_id;
END;

CREATE TRIGGER customers_pricing_version_insert AFTER INSERT ON customers BEGIN
    INSERT OR IGNORE INTO pricing_versions (tenant_id, version) VALUES (NEW.tenant_id, 0);
    UPDATE pricing_versions SET version = version + 1 WHERE tenant_id = NEW.tenant_id;
END;

CREATE TRIGGER customers_pricing_version_update AFTER UPDATE OF billing_currency ON customers BEGIN
    INSERT OR IGNORE INTO pricing_versions (tenant_id, version) VALUES (NEW.tenant_id, 0);
    UPDATE pricing_versions SET version = version + 1 WHERE tenant_id = NEW.tenant_id;
END;

CREATE TRIGGER customers_pricing_version_delete AFTER DELETE ON customers BEGIN
    INSERT OR IGNORE INTO pricing_versions (tenant_id, version) VALUES (OLD.tenant_id, 0);
    UPDATE pricing_versions SET version = version + 1 WHERE tenant_id = OLD.tenant_id;
END;
