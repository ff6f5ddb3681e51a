//! The transport: the accept loop, connection caps and deadlines, and the middleware every
//! request passes through (request id, CORS, `Allow`, one `Authorization`, body limits).
//! The routes themselves live in [`crate::api`].

mod activity;
pub mod allow;
pub mod connections;
pub mod cors;
pub mod middleware;
pub mod request_id;
pub mod server;
