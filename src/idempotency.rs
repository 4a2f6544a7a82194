//! `Idempotency-Key`: a publish retried with the same key is stored once
//! and answered with the first id.
//!
//! Without Redis the ids are kept here, for `--idempotency-ttl`, at most
//! [`MAX_KEYS`] of them (past that the oldest are forgotten first).
//! With Redis the publish script keeps the number under the key, in Redis,
//! so that a retry on any instance is answered with it.

use crate::waker::lock;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The request header.
pub const HEADER: &str = "Idempotency-Key";

/// Keys remembered at once without Redis: each costs its key and its id
/// (about 150 bytes with the map's own), so at most about 15 MB.
pub const MAX_KEYS: usize = 100_000;

/// Longest key: printable ASCII, at most this many bytes.
pub const MAX_KEY_LEN: usize = 128;

/// A key as a client may send it: 1 to 128 printable ASCII characters
/// without spaces (it becomes part of a Redis key and of a header).
pub fn check(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{HEADER} is 1 to {MAX_KEY_LEN} printable ASCII characters without spaces"
        ));
    }
    Ok(())
}

/// A key drawn for a publish that came without one (so that ssed's own
/// retries against Redis store it once).
pub fn draw() -> String {
    format!("ssed-{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// What a key says when a publish comes with it.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    /// New: publish, then [`Keys::done`] (or [`Keys::failed`]).
    New,
    /// Published already: this was its id.
    Answered(String),
    /// A publish with this key is under way.
    InProgress,
}

/// The ids of recent publishes, by key.
pub struct Keys {
    ttl: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// `None` while the publish is under way.
    ids: HashMap<String, (Option<String>, Instant)>,
    /// Keys in the order they came, for expiry.
    order: VecDeque<(Instant, String)>,
}

impl Keys {
    pub fn new(ttl: Duration) -> Keys {
        Keys {
            ttl,
            state: Mutex::default(),
        }
    }

    /// Looks `key` up; a new one is marked under way.
    pub fn begin(&self, key: &str) -> Seen {
        self.begin_at(key, Instant::now())
    }

    fn begin_at(&self, key: &str, now: Instant) -> Seen {
        let mut state = lock(&self.state);
        state.expire(now, self.ttl);
        if let Some((answer, _)) = state.ids.get(key) {
            return match answer {
                Some(answer) => Seen::Answered(answer.clone()),
                None => Seen::InProgress,
            };
        }
        while state.ids.len() >= MAX_KEYS {
            let Some((_, oldest)) = state.order.pop_front() else {
                break;
            };
            state.ids.remove(&oldest);
        }
        state.ids.insert(key.to_string(), (None, now));
        state.order.push_back((now, key.to_string()));
        Seen::New
    }

    /// The publish with `key` was stored as `id`: what a retry gets.
    pub fn done(&self, key: &str, id: String) {
        if let Some(entry) = lock(&self.state).ids.get_mut(key) {
            entry.0 = Some(id);
        }
    }

    /// The publish with `key` was not stored: a retry publishes.
    pub fn failed(&self, key: &str) {
        lock(&self.state).ids.remove(key);
    }
}

impl State {
    fn expire(&mut self, now: Instant, ttl: Duration) {
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) < ttl {
                break;
            }
            if let Some((_, key)) = self.order.pop_front() {
                // Only if it is that entry (a key failed and came again
                // has a newer one).
                if self
                    .ids
                    .get(&key)
                    .is_some_and(|(_, t)| now.duration_since(*t) >= ttl)
                {
                    self.ids.remove(&key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        for (key, ok) in [
            ("a", true),
            ("ssed-0123abcd", true),
            ("", false),
            ("a b", false),
            ("é", false),
            (&"k".repeat(129), false),
        ] {
            assert_eq!(check(key).is_ok(), ok, "{key:?}");
        }
        assert!(check(&draw()).is_ok());
        assert_ne!(draw(), draw());
    }

    #[test]
    fn a_key_is_answered_as_the_first_time_until_it_expires() {
        let keys = Keys::new(Duration::from_millis(50));
        assert_eq!(keys.begin("k"), Seen::New);
        assert_eq!(keys.begin("k"), Seen::InProgress);
        keys.done("k", "first".into());
        assert_eq!(keys.begin("k"), Seen::Answered("first".into()));
        // A failed publish may be tried again.
        assert_eq!(keys.begin("f"), Seen::New);
        keys.failed("f");
        assert_eq!(keys.begin("f"), Seen::New);
        // Once the time is past, the key is forgotten.
        let later = Instant::now() + Duration::from_millis(60);
        assert_eq!(keys.begin_at("k", later), Seen::New);
    }
}
