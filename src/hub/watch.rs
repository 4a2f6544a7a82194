//! Subscriptions by pattern (`sensors/*`, `users/42/**`): a [`Watch`] is
//! told of every topic the hub makes that matches it, once, when the topic
//! is made, and holds a subscription to it for its reader to take. Nothing
//! is done per event: a publish to an existing topic reaches its
//! subscribers, the watches among them, as any other.

use super::{Notify, Subscription, Topic};
use crate::names::Pattern;
use crate::sync::lock;
use std::sync::{Arc, Mutex};

/// A subscriber's patterns, and the topics they brought it.
pub struct Watch {
    patterns: Vec<Pattern>,
    notify: Arc<dyn Notify>,
    /// Subscriptions to topics made since the watch began, for its reader
    /// to take.
    fresh: Mutex<Vec<Subscription>>,
}

impl Watch {
    pub(super) fn new(patterns: Vec<Pattern>, notify: Arc<dyn Notify>) -> Watch {
        Watch {
            patterns,
            notify,
            fresh: Mutex::default(),
        }
    }

    pub fn matches(&self, topic: &str) -> bool {
        self.patterns.iter().any(|p| p.matches(topic))
    }

    /// Moves the subscriptions to topics made since into `subs`.
    pub fn take_fresh(&self, subs: &mut Vec<Subscription>) {
        let mut fresh = lock(&self.fresh);
        if !fresh.is_empty() {
            subs.append(&mut fresh);
        }
    }

    /// A topic was made that it matches: it subscribes, for its reader to
    /// take, and the reader is told.
    pub(super) fn attach(&self, topic: &Arc<Topic>) {
        let sub = topic.subscribe(Arc::clone(&self.notify), 0);
        lock(&self.fresh).push(sub);
    }
}
