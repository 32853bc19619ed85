#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Keel's black-box API tests. Every test in these modules (except the
//! OpenAPI drift check) runs twice, on SQLite and on PostgreSQL: see
//! `keel_tests::both!`.

mod attachments;
mod auth;
mod authz;
mod bounds;
mod concurrency;
mod crash;
mod email;
mod fuzz;
mod inbound;
mod incidents;
mod isolation;
mod list;
mod malformed;
mod nodes;
mod ops;
mod people;
mod pg_restart;
mod seed;
mod sla;
mod webhooks;
