-- Invoice lines no longer carry a foreign key to their invoice (PostgreSQL; SQLite looks the
-- parent up by its key at no cost worth measuring). Lines are written only by the close that
-- writes their invoice, in its transaction, and never change (src/ledger/invoicing.rs), so no
-- code path can leave a line without its invoice. It cost 45% of a 100-line insert (0.45 of 1.0 ms,
-- EXPLAIN ANALYZE), and once `invoices` had statistics taken while it was empty (an ANALYZE
-- before a first month close, as after a restore or `vacuumdb --analyze`) its cached plan
-- scanned every invoice for each line: 73 µs a line, 7.3 s of a 1,000-invoice month close
-- (pg_stat_statements; BENCHMARKS.md, session 10).
ALTER TABLE invoice_lines DROP CONSTRAINT invoice_lines_invoice_id_fkey;
