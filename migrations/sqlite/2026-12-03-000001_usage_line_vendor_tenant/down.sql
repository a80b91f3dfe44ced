ALTER TABLE usage_lines DROP COLUMN vendor_tenant_id;
