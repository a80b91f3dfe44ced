//! Integration tests: the real server on an ephemeral port, called through the generated
//! clients, on SQLite and on PostgreSQL; vendor connectors against local emulators.
mod harness;

mod auth;
mod aws_cost_explorer;
mod certs;
mod chaos;
mod charge_runs;
mod charge_streams;
mod connection_loss;
mod credit_control;
mod customers;
mod failover;
mod health;
mod helpdesk;
mod invoice_streams;
mod invoicing;
mod ledger;
mod microsoft_partner_center;
mod migrations;
mod operations;
mod partner_accounts;
mod partner_center_emulator;
mod permissions;
mod portal_browser;
mod price_sheets;
mod replays;
mod server;
mod service_actions;
mod service_control;
mod spend_rollups;
mod sqlite_wal;
mod subscriptions;
mod usage;
mod validation;
