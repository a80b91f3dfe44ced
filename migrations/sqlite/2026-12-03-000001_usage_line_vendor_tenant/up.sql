-- The vendor tenant a usage line's account belongs to (Microsoft's CustomerId), so a customer
-- linked by tenant is charged for every subscription of it that has no link of its own.
ALTER TABLE usage_lines ADD COLUMN vendor_tenant_id TEXT;
