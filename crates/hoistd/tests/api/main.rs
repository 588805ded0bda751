//! Black-box tests of hoistd over real HTTP on loopback, each against a fresh
//! SQLite file, and the store conformance suite against SQLite. One binary,
//! one module per capability.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;
#[path = "../../../../tests/support/oidc.rs"]
mod oidc;

mod audit;
mod break_glass;
mod checkpoints;
mod eligibility;
mod errors;
mod events;
mod expiry;
mod grants;
mod harness;
mod instances;
mod invisible;
mod issuer;
mod lifecycle;
mod limits;
mod notify;
mod openapi;
mod operations;
mod provider_keys;
mod races;
mod reload;
mod reviews;
mod serving;
mod slack;
mod sso;
mod store;
mod store_postgres;
mod targets_openbao;
mod targets_postgres;
mod targets_ssh;
mod targets_webhook;
mod tiers;
mod tls;
mod workloads;
