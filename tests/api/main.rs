//! Black-box tests: each spawns the service on 127.0.0.1:0 with a database of its own
//! (a fresh SQLite file, or a fresh PostgreSQL schema when TEST_DATABASE_URL is set) and
//! talks to it over real HTTP. One file per part of the API; what they are built from (the
//! app, the ChatKit client, the fakes of outside services) is in `support/`.
//!
//! Tests that need programs from outside this repository (the real Better Auth and MCP
//! servers, PostgreSQL's server programs, Redis) are ignored unless asked for, and so are
//! the PostgreSQL-only ones (`postgres_only_*`): a plain `cargo test` runs the rest and lists
//! those as ignored, with the reason. scripts/setup-fixtures.sh installs the fixtures;
//! scripts/test.sh runs every test (see support/fixtures.rs).

mod attachments;
mod better_auth;
mod chatkit;
mod chatkit_attachments;
mod cli;
mod composer;
mod container;
mod contract;
mod cors;
mod crash;
mod faults;
mod handoffs;
mod health;
mod instances;
mod jwks;
mod local_agent;
mod mcp;
mod messages;
mod metrics;
mod openai;
mod pg_outage;
mod prefix;
mod races;
mod rate_limits;
mod readme;
mod session;
mod slow_clients;
mod spans;
mod startup;
mod stop;
mod support;
mod threads;
mod widgets;

/// The name the suite's helpers had before `support/` (app, ChatKit client, fakes): files
/// that still say `crate::helpers::…` keep working.
use support::app as helpers;
