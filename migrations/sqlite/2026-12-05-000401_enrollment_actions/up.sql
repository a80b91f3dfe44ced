-- Enrollment through service actions: CreateCustomer's enrollments that order a new vendor
-- account record an ENROLL action with one step per such enrollment. The step keeps the order
-- (JSON, what the vendor needs to create the account) and the vendor's pending operation (AWS
-- CreateAccount's request id) so a restarted worker polls it instead of ordering again; the
-- enrollment names the action that provisions it.
ALTER TABLE enrollments ADD COLUMN service_action_id TEXT;
ALTER TABLE service_action_steps ADD COLUMN enrollment_order TEXT;
ALTER TABLE service_action_steps ADD COLUMN vendor_operation_id TEXT;
