//! The request-facing state every handler can reach (installed as request data).

use std::sync::Arc;

use crate::{
    auth::AuthService, chat::ChatService, chatkit::ChatKitService, config::Settings, store::Store,
};

/// What every handler can reach (installed as request data).
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub store: Store,
    pub auth: AuthService,
    pub chat: ChatService,
    pub chatkit: ChatKitService,
    /// The app's MCP servers, when configured (their state shows in `/readyz`).
    pub mcp: Option<crate::agent::McpHub>,
    /// Per-caller rate limits (none unless `[rate_limits] enabled`).
    pub limits: crate::limits::RateLimits,
    /// Attachments: their rows, bytes and signed links.
    pub attachments: crate::attachments::Attachments,
}
