-- The monthly rollup per meter keeps the unit of its charges (the latest write's), so a month
-- close takes each invoice line's unit from the row it sums instead of probing the usage line of
-- the row's `line_key` (one index probe per meter: ~1 ms of a 100-line close, the largest read
-- left in it; BENCHMARKS.md, month close, session 15). NULL on rows written before this
-- migration and on rows rebuilt from stored events (which keep no unit): the close looks those
-- up through `line_key` as before (src/ledger/invoice_charges.rs).
ALTER TABLE charge_rollups ADD COLUMN unit TEXT;
