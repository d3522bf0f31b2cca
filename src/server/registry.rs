//! Handlers by method name, and what kind of handler each is.

use std::collections::HashMap;
use std::sync::Arc;

use super::handler::{Handler, Placement};
use super::responder::DeferredHandler;

/// How a method is run.
#[derive(Clone)]
pub(crate) enum Callable {
    /// Answers when it returns.
    Now(Arc<dyn Handler>),
    /// Answers later, through a responder.
    Later(Arc<dyn DeferredHandler>),
    /// An async handler on the user's tokio runtime.
    #[cfg(feature = "tokio")]
    Async(Arc<super::async_handler::AsyncEntry>),
}

pub(crate) struct Registered {
    pub name: Arc<str>,
    pub handler: Callable,
    pub placement: Placement,
}

/// Handlers by method name.
#[derive(Default)]
pub(crate) struct Registry {
    by_name: HashMap<String, Registered>,
}

impl Registry {
    pub fn insert(&mut self, method: &str, handler: Callable, placement: Placement) {
        let name: Arc<str> = Arc::from(method);
        self.by_name.insert(
            method.to_owned(),
            Registered {
                name,
                handler,
                placement,
            },
        );
    }

    pub fn get(&self, method: &str) -> Option<&Registered> {
        self.by_name.get(method)
    }
}
