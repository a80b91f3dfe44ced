ALTER TABLE payments DROP CONSTRAINT payments_invoice_id_fkey;
ALTER TABLE payments ADD CONSTRAINT payments_tenant_id_invoice_id_fkey
    FOREIGN KEY (tenant_id, invoice_id) REFERENCES invoices (tenant_id, id);
ALTER TABLE invoice_lines DROP CONSTRAINT invoice_lines_invoice_id_fkey;
ALTER TABLE invoice_lines ADD CONSTRAINT invoice_lines_tenant_id_invoice_id_fkey
    FOREIGN KEY (tenant_id, invoice_id) REFERENCES invoices (tenant_id, id);
DROP INDEX invoices_id_key;
