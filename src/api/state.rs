//! The request-facing state every handler can reach (installed as request data).

use std::{ops::Deref, sync::Arc};

use crate::{
    auth::AuthService, chat::ChatService, chatkit::ChatKitService, config::Settings, store::Store,
};

/// What every handler can reach (installed as request data). poem's `data` middleware
/// clones it into every request, so it is one `Arc`: cloned field by field, every request
/// would bump and drop each service's reference counts, shared by every core.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

/// The services behind [`AppState`].
pub struct Services {
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

impl AppState {
    #[must_use]
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

impl Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}
