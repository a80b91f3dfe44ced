ALTER TABLE charge_rollups DROP COLUMN unit;
