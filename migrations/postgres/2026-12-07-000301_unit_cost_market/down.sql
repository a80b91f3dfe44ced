ALTER TABLE catalog_unit_costs DROP COLUMN market;
