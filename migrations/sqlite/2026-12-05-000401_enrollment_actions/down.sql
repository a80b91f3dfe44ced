ALTER TABLE service_action_steps DROP COLUMN vendor_operation_id;
ALTER TABLE service_action_steps DROP COLUMN enrollment_order;
ALTER TABLE enrollments DROP COLUMN service_action_id;
