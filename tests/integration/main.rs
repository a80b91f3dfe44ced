//! Integration tests: the real server on an ephemeral port, called through the generated
//! clients, on SQLite and on PostgreSQL.
mod harness;

mod auth;
mod aws_cost_explorer;
mod customers;
mod migrations;
mod partner_accounts;
mod server;
mod validation;
