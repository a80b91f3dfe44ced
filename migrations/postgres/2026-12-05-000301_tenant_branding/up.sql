-- White label: the tenant's brand colours for its customers' cost portal ("#rrggbb", lower
-- case; NULL: the portal's own default). Set with TenantService.UpdateTenantBranding.
ALTER TABLE tenants ADD COLUMN brand_primary_color TEXT;
ALTER TABLE tenants ADD COLUMN brand_accent_color TEXT;
