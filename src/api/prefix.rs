//! The API prefix (`server.api_prefix`) as poem-openapi reads it. The prefixed APIs carry
//! `prefix_path = "&super::prefix::current()"`: poem-openapi evaluates that expression
//! inside `OpenApi::meta()` (the document) and `add_routes` (the route table), which take
//! no argument a setting could arrive by. So the prefix is lent to this thread for the
//! span of [`with`], around the synchronous calls that build the routes or render the
//! document; outside it, the default prefix applies.

use std::cell::RefCell;

thread_local! {
    static PREFIX: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The prefix of the call in progress on this thread.
pub(super) fn current() -> String {
    PREFIX.with(|p| {
        p.borrow()
            .clone()
            .unwrap_or_else(|| super::DEFAULT_PREFIX.to_owned())
    })
}

/// Runs `f` with `prefix` as the API prefix, and puts the previous one back afterwards,
/// even if `f` panics.
pub(super) fn with<R>(prefix: &str, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<String>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            PREFIX.with(|p| *p.borrow_mut() = previous);
        }
    }
    let previous = PREFIX.with(|p| p.borrow_mut().replace(prefix.to_owned()));
    let _restore = Restore(previous);
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_is_lent_for_the_call_only() {
        assert_eq!(current(), super::super::DEFAULT_PREFIX);
        let inner = with("/v2", || (current(), with("/v3", current), current()));
        assert_eq!(inner, ("/v2".into(), "/v3".into(), "/v2".into()));
        assert_eq!(current(), super::super::DEFAULT_PREFIX);
        let caught = std::panic::catch_unwind(|| with("/v4", || panic!("boom")));
        assert!(caught.is_err());
        assert_eq!(
            current(),
            super::super::DEFAULT_PREFIX,
            "restored after a panic"
        );
    }
}
