DROP TABLE charge_rollups;
