//! Service spans carry their ids, and never a token or message text.

use std::{
    collections::BTreeMap,
    fmt::Debug,
    sync::{Arc, Mutex},
};

use serde_json::json;
use tracing::{
    field::{Field, Visit},
    span::{Attributes, Id, Record},
    Subscriber,
};
use tracing_subscriber::{layer::Context, prelude::*, registry::LookupSpan, Layer};

use crate::support::{spawn_app_with, wait::eventually};

type Spans = Arc<Mutex<Vec<(String, BTreeMap<String, String>)>>>;

/// Every span opened, with the fields it was given at creation or recorded later.
#[derive(Clone, Default)]
struct Capture(Spans);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.insert(
            field.name().to_owned(),
            format!("{value:?}").trim_matches('"').to_owned(),
        );
    }
}

/// The index of a span in the capture, kept in the span's extensions.
struct Slot(usize);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        // Only this crate's spans: sea-orm's own (trace level) carry whole statements.
        if !attrs.metadata().target().starts_with("chatkit_gateway") {
            return;
        }
        let mut spans = self.0.lock().unwrap();
        spans.push((attrs.metadata().name().to_owned(), fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Slot(spans.len() - 1));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let Some(slot) = span.extensions().get::<Slot>().map(|s| s.0) else {
            return;
        };
        let mut spans = self.0.lock().unwrap();
        values.record(&mut Fields(&mut spans[slot].1));
    }
}

// A current-thread runtime: the server's tasks run on this thread, so the thread-local
// subscriber sees all of them.
#[tokio::test(flavor = "current_thread")]
async fn turn_refresh_and_jwks_spans_carry_their_ids_and_no_secrets() {
    // tracing caches per callsite whether anyone listens. While a single dispatcher is
    // registered, a callsite first reached on another test's thread asks only that
    // thread's default (none) and caches "never", hiding it from this test too. A second
    // registered dispatcher makes every callsite ask all of them.
    let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    let capture = Capture::default();
    let _guard = tracing_subscriber::registry()
        .with(capture.clone())
        .set_default();
    // Nothing listens on port 1: the start-up key prefetch fails, inside its span.
    let app = spawn_app_with(|s| s.upstream.jwks_url = "http://127.0.0.1:1/keys?k=v".into()).await;
    let token = app.login("alice").await;
    // A callsite first reached on another thread while this subscriber was being
    // registered can still hold "never": ask again now that both are in place.
    tracing::callsite::rebuild_interest_cache();
    let reply = app
        .post(
            "/api/chatkit/messages",
            &token,
            json!({"thread_id": null, "message": "add a secret plan"}),
        )
        .await
        .ok();
    let thread_id = reply["thread_id"].as_str().unwrap().to_owned();
    let refreshed = app.refresh(&token).await.ok();
    let new_token = refreshed["client_secret"].as_str().unwrap().to_owned();
    // The prefetch runs on its own task; it has had its chance to run by now, but wait
    // for its span rather than assume.
    eventually("the prefetch's span", || async {
        let spans = capture.0.lock().unwrap();
        spans.iter().any(|(n, _)| n == "jwks.fetch").then_some(())
    })
    .await;
    app.stop().await;

    let spans = capture.0.lock().unwrap().clone();
    let find = |name: &str| {
        spans
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, f)| f.clone())
            .unwrap_or_else(|| panic!("no {name} span in {spans:?}"))
    };
    let send = find("chat.send");
    assert!(
        !send.contains_key("thread_id"),
        "a new thread has no id yet: {send:?}"
    );
    assert_eq!(find("chat.record")["keyed"], "false");
    let answer = find("chat.answer");
    assert_eq!(answer["thread_id"], thread_id);
    assert!(answer["turn_id"].starts_with("msg_"), "{answer:?}");
    let turn = find("agent.turn");
    assert_eq!(turn["provider"], "local");
    assert_eq!(turn["user_id"], "alice");
    assert_eq!(turn["turn_id"], answer["turn_id"]);
    let refresh = find("auth.refresh");
    assert_eq!(refresh["user_id"], "alice");
    assert!(refresh["sid"].starts_with("sid"), "{refresh:?}");
    let jwks = find("jwks.fetch");
    assert_eq!(jwks["host"], "127.0.0.1");

    for (name, fields) in &spans {
        for value in fields.values() {
            for secret in [token.as_str(), new_token.as_str(), "secret plan", "k=v"] {
                assert!(
                    !value.contains(secret),
                    "{name} carries {secret:?}: {fields:?}"
                );
            }
        }
    }
}
