//! The paths poem-openapi reads from settings: the API prefix (`server.api_prefix`) and the
//! ChatKit endpoint (`chatkit.path`). The prefixed APIs carry
//! `prefix_path = "&super::prefix::current()"` (the ChatKit one
//! `"&super::prefix::chatkit()"`): poem-openapi evaluates that expression inside
//! `OpenApi::meta()` (the document) and `add_routes` (the route table), which take no
//! argument a setting could arrive by. So the paths are lent to this thread for the span
//! of [`with`], around the synchronous calls that build the routes or render the document;
//! outside it, the defaults apply.

use std::cell::RefCell;

use super::Paths;

thread_local! {
    static PATHS: RefCell<Option<Paths>> = const { RefCell::new(None) };
}

/// The API prefix of the call in progress on this thread.
pub(super) fn current() -> String {
    PATHS.with(|p| {
        p.borrow().as_ref().map_or_else(
            || super::DEFAULT_PREFIX.to_owned(),
            |p| p.api_prefix.clone(),
        )
    })
}

/// The ChatKit endpoint's path of the call in progress on this thread.
pub(super) fn chatkit() -> String {
    PATHS.with(|p| {
        p.borrow().as_ref().map_or_else(
            || super::DEFAULT_CHATKIT_PATH.to_owned(),
            |p| p.chatkit.clone(),
        )
    })
}

/// Runs `f` with `paths` lent, and puts the previous ones back afterwards, even if `f`
/// panics.
pub(super) fn with<R>(paths: &Paths, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Paths>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            PATHS.with(|p| *p.borrow_mut() = previous);
        }
    }
    let previous = PATHS.with(|p| p.borrow_mut().replace(paths.clone()));
    let _restore = Restore(previous);
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(prefix: &str, chatkit: &str) -> Paths {
        Paths::new(prefix, chatkit)
    }

    #[test]
    fn the_paths_are_lent_for_the_call_only() {
        assert_eq!(current(), super::super::DEFAULT_PREFIX);
        assert_eq!(chatkit(), super::super::DEFAULT_CHATKIT_PATH);
        let inner = with(&paths("/v2", "/ck2"), || {
            (
                current(),
                with(&paths("/v3", "/ck3"), || (current(), chatkit())),
                chatkit(),
            )
        });
        assert_eq!(
            inner,
            ("/v2".into(), ("/v3".into(), "/ck3".into()), "/ck2".into())
        );
        assert_eq!(current(), super::super::DEFAULT_PREFIX);
        let caught = std::panic::catch_unwind(|| with(&paths("/v4", "/ck4"), || panic!("boom")));
        assert!(caught.is_err());
        assert_eq!(
            current(),
            super::super::DEFAULT_PREFIX,
            "restored after a panic"
        );
        assert_eq!(chatkit(), super::super::DEFAULT_CHATKIT_PATH);
    }
}
