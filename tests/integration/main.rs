//! Integration tests: the real server on an ephemeral port, called through the generated
//! clients, on SQLite and on PostgreSQL.
// Some helpers serve test modules that are not on this branch yet.
#[allow(dead_code)]
mod harness;

mod customers;
mod microsoft_partner_center;
mod partner_center_emulator;
