-- A month close sums the customer's rollups instead of re-reading every charge (issue 15; see
-- src/ledger/invoice_charges.rs). It still reads the charges outside the period it bills
-- (prior-period adjustments, usage of later periods) and those after its close sequence, and
-- finds them through the runs:
--   first_window / last_window  the earliest and latest usage window start among the run's
--                               events; NULL (runs written before this migration) means unknown,
--                               and such a run is read as before.
--   charge_rollups.line_key     one of the summed charges' line keys, kept on 'month_meter'
--                               rows: an invoice line's unit comes from its usage line. A close
--                               whose meter has none (rows written before this migration, until
--                               the next charge of the meter sets it) reads the charges instead.
ALTER TABLE charge_event_runs ADD COLUMN first_window TIMESTAMPTZ, ADD COLUMN last_window TIMESTAMPTZ;
ALTER TABLE charge_rollups ADD COLUMN line_key BYTEA;
