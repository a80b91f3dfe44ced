ALTER TABLE tenants DROP COLUMN brand_accent_color;
ALTER TABLE tenants DROP COLUMN brand_primary_color;
