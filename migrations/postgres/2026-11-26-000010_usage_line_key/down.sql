ALTER TABLE usage_lines DROP CONSTRAINT usage_lines_pkey;
ALTER TABLE usage_lines ADD PRIMARY KEY (tenant_id, line_key);
