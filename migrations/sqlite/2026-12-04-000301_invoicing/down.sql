DROP TABLE close_runs;
DROP TABLE payments;
DROP TABLE invoice_lines;
DROP TABLE invoices;
DROP TABLE invoice_number_sequences;
DROP TABLE customer_billing;
DROP TABLE invoice_settings;
