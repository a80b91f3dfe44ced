ALTER TABLE credit_events DROP COLUMN service_action_id;
DROP TABLE service_action_steps;
DROP TABLE service_actions;
DROP TABLE service_action_sequences;
