DROP TABLE poll_states;
DROP TABLE charge_events;
DROP TABLE ledger_sequences;
DROP TABLE usage_lines;
DROP TABLE fx_rates;
DROP TABLE price_rules;
