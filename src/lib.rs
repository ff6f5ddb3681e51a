//! chatkit-gateway: a backend-for-frontend for ChatKit-style chat UIs.

#![forbid(unsafe_code)]

pub mod agent;
pub mod api;
pub mod app;
pub mod attachments;
pub mod auth;
pub mod chat;
pub mod chatkit;
pub mod config;
pub mod domain;
pub mod http;
#[cfg(test)]
mod layers;
pub mod limits;
pub mod metrics;
pub mod store;
pub mod task_actions;
pub mod telemetry;

pub use app::Application;
pub use config::Settings;
