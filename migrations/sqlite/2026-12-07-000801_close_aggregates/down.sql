ALTER TABLE charge_rollups DROP COLUMN line_key;
ALTER TABLE charge_event_runs DROP COLUMN last_window;
ALTER TABLE charge_event_runs DROP COLUMN first_window;
