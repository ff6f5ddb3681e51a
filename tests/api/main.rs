//! Black-box tests: each spawns the service on 127.0.0.1:0 with a database of its own
//! (a fresh SQLite file, or a fresh PostgreSQL schema when TEST_DATABASE_URL is set) and
//! talks to it over real HTTP.

mod better_auth;
mod chatkit;
mod cli;
mod container;
mod contract;
mod cors;
mod crash;
mod faults;
mod health;
mod helpers;
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
mod threads;
