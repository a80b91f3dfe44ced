-- Invoice lines and payments name their invoice by its id alone (ids are unique across tenants;
-- the tenant stays on every row and in every query). Their foreign-key check was
-- `WHERE tenant_id = $1 AND id = $2` on invoices, which three unique indexes start with
-- `tenant_id`: on a table without fresh statistics (a month close inserts a month's invoices at
-- once) PostgreSQL planned it on another of them than the primary key, filtering every invoice of
-- the tenant for each line, and kept that plan for the connection's life: 13-27 ms of a 100-line
-- close at 300-1,000 invoices, growing with their number (auto_explain; BENCHMARKS.md, month
-- close). A check on `id` alone has one index to take. SQLite looks the parent up by its key.
CREATE UNIQUE INDEX invoices_id_key ON invoices (id);
ALTER TABLE invoice_lines DROP CONSTRAINT invoice_lines_tenant_id_invoice_id_fkey;
ALTER TABLE invoice_lines ADD CONSTRAINT invoice_lines_invoice_id_fkey
    FOREIGN KEY (invoice_id) REFERENCES invoices (id);
ALTER TABLE payments DROP CONSTRAINT payments_tenant_id_invoice_id_fkey;
ALTER TABLE payments ADD CONSTRAINT payments_invoice_id_fkey
    FOREIGN KEY (invoice_id) REFERENCES invoices (id);
