//! What the tests are built from: the service under test ([`app`]), the ChatKit client
//! ([`chatkit`]), the fakes of the outside services on loopback (a model API in [`model`],
//! a Better Auth key server in [`jwks`]), the real ones some tests start (Better Auth in
//! [`better_auth`], an MCP server in [`mcp`]) with the checks that they are installed
//! ([`fixtures`]), and waiting on events rather than the clock ([`wait`]).

pub mod app;
pub mod better_auth;
pub mod chatkit;
pub mod fixtures;
pub mod jwks;
pub mod mcp;
pub mod model;
pub mod s3;
pub mod wait;

pub use app::*;
