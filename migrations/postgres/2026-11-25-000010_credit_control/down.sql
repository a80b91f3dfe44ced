DROP INDEX charge_events_window_idx;
DROP TABLE credit_events;
DROP TABLE credit_sequences;
DROP TABLE customer_credit;
DROP TABLE credit_defaults;
