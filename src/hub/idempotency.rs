//! `Idempotency-Key`: a publish retried with the same key is stored once
//! and answered with the first id.
//!
//! A key is tied to what it published: its topic, the event's name and its
//! data ([`fingerprint`]). The same key with another topic or other data is
//! not a retry but a mistake, refused ([`Seen::Reused`], 422) rather than
//! answered with an id that names another event.
//!
//! Without Redis the numbers are kept here, for `--idempotency-ttl`, at most
//! a bounded count of them (`memory` sizes it; past it the oldest are
//! forgotten first). A key
//! is remembered only once its publish was stored: a publish refused or
//! failed leaves nothing behind, so the bound holds whatever clients send.
//! Each key is kept as a 128-bit keyed hash of it, not as its text, so that
//! every entry costs the same, whatever the key's length (75 bytes,
//! measured: `memory::COSTS`).
//! With Redis the publish script keeps the number under the key, in Redis,
//! so that a retry on any instance is answered with it.

use crate::sync::lock;
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use crate::names::{
    check_idempotency_key as check, draw_idempotency_key as draw, IDEMPOTENCY_HEADER as HEADER,
};

/// What a publish is, for telling a retry from a reuse of its key: the
/// topic, the event's name and its data, hashed (64-bit FNV-1a, the same in
/// every build, so that instances sharing Redis agree on it).
pub fn fingerprint(topic: &str, name: Option<&str>, data: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(PRIME);
        }
    };
    // Each part's length first: ("ab", "c") and ("a", "bc") differ.
    for part in [topic, name.unwrap_or(""), data] {
        eat(&(part.len() as u64).to_le_bytes());
        eat(part.as_bytes());
    }
    eat(&[u8::from(name.is_some())]);
    h
}

/// What a key says when a publish comes with it.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    /// New: publish, then [`Keys::done`] (or [`Keys::failed`]).
    New,
    /// Published already, as this number.
    Answered(u64),
    /// A publish with this key is under way.
    InProgress,
    /// The key was used for another publish (another topic or other data).
    Reused,
}

/// The numbers of recent publishes, by key.
pub struct Keys {
    ttl: Duration,
    max: usize,
    /// Two independent keyed hashes make a key's 128-bit name: a client
    /// cannot make two keys collide without knowing the hashers' keys.
    names: (RandomState, RandomState),
    state: Mutex<State>,
}

/// A key's 128-bit name.
type Name = u128;

struct Entry {
    /// The number stored; 0 while its publish is under way.
    seq: u64,
    fingerprint: u64,
}

#[derive(Default)]
struct State {
    entries: HashMap<Name, Entry>,
    /// Stored keys in the order they were stored, with when each expires:
    /// keys under way are not in it (they are in `entries` only until
    /// their publish ends, stored or not).
    expiry: VecDeque<(Instant, Name)>,
}

impl Keys {
    /// Keys remembered for `ttl`, at most `max` at once.
    pub fn new(ttl: Duration, max: usize) -> Keys {
        Keys {
            ttl,
            max: max.max(1),
            names: (RandomState::new(), RandomState::new()),
            state: Mutex::default(),
        }
    }

    fn name(&self, key: &str) -> Name {
        let (a, b) = (&self.names.0, &self.names.1);
        (u128::from(a.hash_one(key)) << 64) | u128::from(b.hash_one(key))
    }

    /// Looks `key` up for a publish with `fingerprint`; a new one is marked
    /// under way.
    pub fn begin(&self, key: &str, fingerprint: u64) -> Seen {
        self.begin_at(key, fingerprint, Instant::now())
    }

    fn begin_at(&self, key: &str, fingerprint: u64, now: Instant) -> Seen {
        let name = self.name(key);
        let mut state = lock(&self.state);
        state.expire(now);
        if let Some(entry) = state.entries.get(&name) {
            return if entry.fingerprint != fingerprint {
                Seen::Reused
            } else if entry.seq == 0 {
                Seen::InProgress
            } else {
                Seen::Answered(entry.seq)
            };
        }
        // Room for one more: the oldest stored keys go first.
        while state.entries.len() >= self.max {
            let Some((_, oldest)) = state.expiry.pop_front() else {
                // Every entry is a publish under way: as many as there are
                // threads publishing, a bound of its own.
                break;
            };
            state.entries.remove(&oldest);
        }
        state.entries.insert(
            name,
            Entry {
                seq: 0,
                fingerprint,
            },
        );
        Seen::New
    }

    /// The publish with `key` was stored as number `seq` (never 0): what a
    /// retry gets, until the key expires.
    pub fn done(&self, key: &str, seq: u64) {
        self.done_at(key, seq, Instant::now());
    }

    fn done_at(&self, key: &str, seq: u64, now: Instant) {
        let name = self.name(key);
        let mut state = lock(&self.state);
        if let Some(entry) = state.entries.get_mut(&name) {
            if entry.seq == 0 {
                entry.seq = seq.max(1);
                state.expiry.push_back((now + self.ttl, name));
            }
        }
    }

    /// The publish with `key` was not stored: it leaves nothing behind, and
    /// a retry publishes.
    pub fn failed(&self, key: &str) {
        let name = self.name(key);
        let mut state = lock(&self.state);
        if state.entries.get(&name).is_some_and(|e| e.seq == 0) {
            state.entries.remove(&name);
        }
    }

    /// Keys remembered now (stored or under way).
    pub fn len(&self) -> usize {
        lock(&self.state).entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl State {
    fn expire(&mut self, now: Instant) {
        while let Some(&(at, name)) = self.expiry.front() {
            if at > now {
                break;
            }
            self.expiry.pop_front();
            self.entries.remove(&name);
        }
        // A burst of keys, once expired, does not keep its room.
        if self.entries.capacity() > 64 && self.entries.len() < self.entries.capacity() / 4 {
            self.entries.shrink_to(self.entries.len() * 2);
        }
        if self.expiry.capacity() > 64 && self.expiry.len() < self.expiry.capacity() / 4 {
            self.expiry.shrink_to(self.expiry.len() * 2);
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
    fn fingerprints_tell_publishes_apart() {
        let f = fingerprint("a", None, "x");
        assert_eq!(f, fingerprint("a", None, "x"));
        for other in [
            fingerprint("b", None, "x"),
            fingerprint("a", None, "y"),
            fingerprint("a", Some("n"), "x"),
            fingerprint("a", Some(""), "x"),
            fingerprint("ax", None, ""),
        ] {
            assert_ne!(f, other);
        }
        // The same in every build: instances sharing Redis compare them.
        assert_eq!(fingerprint("", None, ""), 0xd465_7f55_662f_817f);
    }

    #[test]
    fn a_key_is_answered_as_the_first_time_until_it_expires() {
        let keys = Keys::new(Duration::from_millis(50), 10);
        let t0 = Instant::now();
        assert_eq!(keys.begin_at("k", 1, t0), Seen::New);
        assert_eq!(keys.begin_at("k", 1, t0), Seen::InProgress);
        keys.done_at("k", 7, t0);
        assert_eq!(keys.begin_at("k", 1, t0), Seen::Answered(7));
        // Another topic or other data with the same key: refused.
        assert_eq!(keys.begin_at("k", 2, t0), Seen::Reused);
        // A failed publish may be tried again, and leaves nothing behind.
        assert_eq!(keys.begin_at("f", 1, t0), Seen::New);
        keys.failed("f");
        assert_eq!(keys.len(), 1);
        assert_eq!(keys.begin_at("f", 3, t0), Seen::New);
        keys.failed("f");
        // Once the time is past, the key is forgotten.
        let later = t0 + Duration::from_millis(60);
        assert_eq!(keys.begin_at("k", 2, later), Seen::New);
    }

    #[test]
    fn the_cap_holds_in_every_path() {
        let keys = Keys::new(Duration::from_secs(300), 100);
        let t0 = Instant::now();
        // Refused publishes, as many as anyone sends: nothing kept.
        for i in 0..10_000 {
            let key = format!("bad-{i}");
            assert_eq!(keys.begin_at(&key, 1, t0), Seen::New);
            keys.failed(&key);
        }
        assert_eq!(keys.len(), 0);
        let state = lock(&keys.state);
        assert_eq!(state.expiry.len(), 0);
        drop(state);
        // Stored ones: at most the cap, the oldest forgotten first.
        for i in 0..1_000u64 {
            let key = format!("k-{i}");
            assert_eq!(keys.begin_at(&key, 1, t0), Seen::New);
            keys.done_at(&key, i + 1, t0);
        }
        assert_eq!(keys.len(), 100);
        assert_eq!(lock(&keys.state).expiry.len(), 100);
        assert_eq!(keys.begin_at("k-999", 1, t0), Seen::Answered(1000));
        assert_eq!(keys.begin_at("k-0", 1, t0), Seen::New);
    }
}
