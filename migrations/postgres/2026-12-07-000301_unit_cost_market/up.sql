-- The Partner Center market a unit cost was priced for (issue 16, ImportPriceSheet): a price
-- sheet is per market; empty for costs stated by hand (the MSP's own items).
ALTER TABLE catalog_unit_costs ADD COLUMN market TEXT NOT NULL DEFAULT '';
