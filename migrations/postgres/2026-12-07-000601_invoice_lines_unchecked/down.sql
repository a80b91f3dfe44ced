ALTER TABLE invoice_lines ADD CONSTRAINT invoice_lines_invoice_id_fkey
    FOREIGN KEY (invoice_id) REFERENCES invoices (id);
