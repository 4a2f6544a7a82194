//! A publish: the script that stores it, ssed's own retry when the answer
//! is lost, and what each failure means (`Down`: certainly not stored;
//! `Unknown`: perhaps, retry with the key).

use super::conn::small_reply;
use super::keys::{
    stream_key, BYTES, COST, CUT, FEED, IDEM_PREFIX, RUN, SEQ, TOPICS, TOPIC_PREFIX, TOTAL,
};
use super::scripts::{PUBLISH_ARGS, PUBLISH_KEYS};
use super::{Redis, Reply, FEED_LENGTH};
use crate::hub::{check_topic, idempotency};
use crate::log;
use crate::sse::Event;
use crate::store::StoreError;
use crate::sync::lock;
use std::sync::atomic::Ordering;
use std::time::Instant;

impl Redis {
    /// Stores `event` in `topic` and returns its id and how many local
    /// subscribers the topic has. Its subscribers, here and on every other
    /// instance, get it from the feed.
    /// `key` is the publish's idempotency key (the client's, else one
    /// drawn for it): whatever the retries, the event is stored once.
    pub(super) fn publish_event(
        &self,
        topic: &str,
        event: &Event,
        key: &str,
    ) -> Result<(String, usize), StoreError> {
        let s = &self.shared;
        check_topic(topic).map_err(StoreError::BadTopic)?;
        let named = |why: String| format!("redis {}: {why}", s.target);
        let unknown = |why: String| StoreError::Unknown {
            why: named(why),
            key: key.to_string(),
        };
        // Certainly not stored, unless an earlier attempt with this key
        // went out and no answer came: that one may still be stored (a
        // stalled Redis runs it when it wakes), so the answer stays
        // "unknown" until Redis can say.
        let down = |why: String| {
            if self.unknown_key(key) {
                unknown(format!(
                    "{why}; an earlier attempt with this idempotency key went out without an answer, so the outcome is still unknown"
                ))
            } else {
                StoreError::Down(named(why))
            }
        };
        if let Some(why) = s.down() {
            return Err(down(why));
        }
        let run = s.hub.run_token();
        let (history, bytes, max_topics, feed, total) = (
            s.settings.history.to_string(),
            s.settings.history_bytes.to_string(),
            s.settings.max_topics.to_string(),
            FEED_LENGTH.to_string(),
            s.settings.history_total.to_string(),
        );
        let stream = stream_key(topic);
        // Under the run: after the history went back (a new run), a key
        // of the old one answers nothing of the new.
        let idem = format!("{IDEM_PREFIX}{run}:{key}");
        let ttl = s.settings.idempotency_ttl.as_secs().max(1).to_string();
        let ttl_ms = s
            .settings
            .history_ttl
            .map_or(0, |t| t.as_millis().max(1))
            .to_string();
        let fingerprint = format!(
            "{:016x}",
            idempotency::fingerprint(topic, event.event.as_deref(), &event.data)
        );
        let keys: [&[u8]; PUBLISH_KEYS] = [
            RUN.as_bytes(),
            SEQ.as_bytes(),
            stream.as_bytes(),
            FEED.as_bytes(),
            TOPICS.as_bytes(),
            BYTES.as_bytes(),
            CUT.as_bytes(),
            COST.as_bytes(),
            TOTAL.as_bytes(),
            idem.as_bytes(),
        ];
        let args: [&[u8]; PUBLISH_ARGS] = [
            run.as_bytes(),
            topic.as_bytes(),
            event.event.as_deref().unwrap_or("").as_bytes(),
            event.data.as_bytes(),
            history.as_bytes(),
            bytes.as_bytes(),
            max_topics.as_bytes(),
            feed.as_bytes(),
            total.as_bytes(),
            TOPIC_PREFIX.as_bytes(),
            ttl.as_bytes(),
            fingerprint.as_bytes(),
            ttl_ms.as_bytes(),
        ];
        let limits = small_reply();
        let attempt = || {
            s.pool
                .with(s, |c| c.eval(&s.publish_script, &keys, &args, &limits))
        };
        // A reply lost after the script ran is not a second event: the
        // retry carries the same key, and Redis answers with the first
        // number. Only a publish whose outcome is still unknown after that
        // is answered so.
        let reply = match attempt() {
            Ok(reply) => reply,
            // A stalled Redis would keep the retry waiting as long again:
            // answered within one timeout, the outcome unknown.
            Err(e) if e.after_sending() && e.timed_out() => {
                self.note_unknown(key);
                return Err(unknown(format!(
                    "no answer within {:.1} s after the publish was sent ({e}); the outcome is unknown",
                    s.settings.timeout.as_secs_f64()
                )));
            }
            Err(e) if e.after_sending() => {
                log::line(&format!(
                    "redis {}: no answer to a publish ({e}); asking again with its idempotency key",
                    s.target
                ));
                match attempt() {
                    Ok(reply) => reply,
                    Err(e2) if e2.after_sending() => {
                        self.note_unknown(key);
                        return Err(unknown(format!(
                            "no answer after the publish was sent ({e2}); the outcome is unknown"
                        )));
                    }
                    Err(e2) => {
                        self.note_unknown(key);
                        return Err(unknown(format!(
                            "no answer after the publish was sent ({e}), then {e2}; the outcome is unknown"
                        )));
                    }
                }
            }
            Err(e) => return Err(down(format!("not reached: {e}"))),
        };
        match outcome(&reply) {
            Outcome::Refused(e) if e.starts_with("OOM") => {
                s.mark_full(Some(format!("out of memory ({e})")));
                Err(down(format!("refused: {e}")))
            }
            Outcome::Stored { seq, trimmed } => {
                s.mark_full(None);
                self.settle(key);
                s.hub.counters.trimmed.fetch_add(trimmed, Ordering::Relaxed);
                Ok((
                    crate::hub::format_id(&run, seq),
                    s.hub.subscribers(topic) + s.elsewhere(topic),
                ))
            }
            Outcome::TooManyTopics => Err(StoreError::TooManyTopics(s.settings.max_topics)),
            Outcome::KeyReused => {
                self.settle(key);
                Err(StoreError::KeyReused)
            }
            Outcome::Behind => {
                // The count is behind the log: its history went back. The
                // feed's join finds out and gives ids a new run.
                s.restart_feed("Redis's event count is behind the log; joining again");
                Err(StoreError::LostData(named(
                    "its event count is behind the log (it lost or evicted it); ids go on under a new run".into(),
                )))
            }
            Outcome::RunChanged => {
                // Redis lost its data under a live feed: have the feed
                // connect again, which resets the mirror.
                s.restart_feed("Redis lost the shared hub's data; joining again");
                Err(StoreError::LostData(named(
                    "it lost the shared hub's data; it is being set up again".into(),
                )))
            }
            Outcome::Refused(e) => Err(down(format!("refused: {e}"))),
            Outcome::Unexpected(what) => {
                self.note_unknown(key);
                Err(unknown(format!("an unexpected reply: {what}")))
            }
        }
    }

    /// Notes that a publish with `key` went out and its outcome is unknown.
    fn note_unknown(&self, key: &str) {
        let ttl = self.shared.settings.idempotency_ttl;
        let mut keys = lock(&self.unknown);
        if keys.len() >= MAX_UNKNOWN {
            keys.retain(|_, at| at.elapsed() < ttl);
            if keys.len() >= MAX_UNKNOWN {
                // The oldest is the least likely to be retried.
                if let Some(oldest) = keys
                    .iter()
                    .min_by_key(|(_, at)| **at)
                    .map(|(k, _)| k.clone())
                {
                    keys.remove(&oldest);
                }
            }
        }
        keys.insert(key.to_string(), Instant::now());
    }

    /// Whether an attempt with `key` went out without an answer lately.
    fn unknown_key(&self, key: &str) -> bool {
        let ttl = self.shared.settings.idempotency_ttl;
        lock(&self.unknown)
            .get(key)
            .is_some_and(|at| at.elapsed() < ttl)
    }

    /// Redis said what became of `key`'s publish.
    fn settle(&self, key: &str) {
        let mut keys = lock(&self.unknown);
        if !keys.is_empty() {
            keys.remove(key);
        }
    }
}

/// Keys remembered whose publish's outcome is unknown, at most.
const MAX_UNKNOWN: usize = 10_000;

impl Redis {
    /// Deletes `topic` in Redis; every instance (this one too) deletes it
    /// here when the feed brings the deletion. Not reached: 503; sent and
    /// no answer: 504 (a retry is harmless: 404 once done).
    pub(super) fn delete_topic(&self, topic: &str) -> Result<bool, StoreError> {
        let s = &self.shared;
        check_topic(topic).map_err(StoreError::BadTopic)?;
        let named = |why: String| format!("redis {}: {why}", s.target);
        if let Some(why) = s.down() {
            return Err(StoreError::Down(named(why)));
        }
        let run = s.hub.run_token();
        let stream = stream_key(topic);
        let keys: [&[u8]; 9] = [
            RUN.as_bytes(),
            SEQ.as_bytes(),
            stream.as_bytes(),
            FEED.as_bytes(),
            TOPICS.as_bytes(),
            BYTES.as_bytes(),
            CUT.as_bytes(),
            COST.as_bytes(),
            TOTAL.as_bytes(),
        ];
        let feed = FEED_LENGTH.to_string();
        let args: [&[u8]; 3] = [run.as_bytes(), topic.as_bytes(), feed.as_bytes()];
        let reply = s.pool.with(s, |c| {
            c.eval(&s.delete_script, &keys, &args, &small_reply())
        });
        match reply {
            Ok(Reply::Int(0)) => Ok(false),
            Ok(Reply::Int(seq)) if seq > 0 => {
                // Gone here as soon as the feed brings it: wait briefly, so
                // that a subscribe right after the answer finds it gone.
                let deadline = std::time::Instant::now() + s.settings.timeout;
                while s.hub.watermark() < seq as u64 && std::time::Instant::now() < deadline {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                Ok(true)
            }
            Ok(Reply::Error(e)) if e.starts_with("SSEDRUN ") => {
                s.restart_feed("Redis lost the shared hub's data; joining again");
                Err(StoreError::LostData(named(
                    "it lost the shared hub's data; it is being set up again".into(),
                )))
            }
            Ok(Reply::Error(e)) => Err(StoreError::Down(named(format!("refused: {e}")))),
            Ok(other) => Err(StoreError::Unknown {
                why: named(format!("an unexpected reply to a delete: {other:?}")),
                key: String::new(),
            }),
            Err(e) if e.after_sending() => Err(StoreError::Unknown {
                why: named(format!("no answer after the delete was sent ({e}); retry it: a topic deleted already is 404")),
                key: String::new(),
            }),
            Err(e) => Err(StoreError::Down(named(format!("not reached: {e}")))),
        }
    }
}

/// What the publish script's reply means (its contract: `scripts::PUBLISH`).
#[derive(Debug, PartialEq)]
enum Outcome {
    /// Stored (or stored before, under the same key) with this number;
    /// `trimmed` events were dropped to keep within the history.
    Stored { seq: u64, trimmed: u64 },
    /// `SSEDTOPICS`: a new topic, and there are `--max-topics` already.
    TooManyTopics,
    /// `SSEDREUSED`: the key belongs to another publish.
    KeyReused,
    /// `SSEDRUN`: the log is not the run this instance follows.
    RunChanged,
    /// `SSEDBEHIND`: the count is behind the numbers the log holds.
    Behind,
    /// Any other error: Redis refused the script (not stored).
    Refused(String),
    /// Not an answer the script gives: perhaps stored.
    Unexpected(String),
}

fn outcome(reply: &Reply) -> Outcome {
    match reply {
        Reply::Array(Some(items)) => match items.as_slice() {
            [Reply::Int(seq), Reply::Int(trimmed), Reply::Int(0 | 1)] if *seq > 0 => {
                Outcome::Stored {
                    seq: *seq as u64,
                    trimmed: u64::try_from(*trimmed).unwrap_or(0),
                }
            }
            _ => Outcome::Unexpected(format!("{reply:?}")),
        },
        Reply::Error(e) if e.starts_with("SSEDTOPICS ") => Outcome::TooManyTopics,
        Reply::Error(e) if e.starts_with("SSEDREUSED ") => Outcome::KeyReused,
        Reply::Error(e) if e.starts_with("SSEDRUN ") => Outcome::RunChanged,
        Reply::Error(e) if e.starts_with("SSEDBEHIND ") => Outcome::Behind,
        Reply::Error(e) => Outcome::Refused(e.clone()),
        other => Outcome::Unexpected(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::scripts::PUBLISH;
    use super::*;

    #[test]
    fn the_publish_scripts_replies_mean_one_thing_each() {
        let ints = |v: &[i64]| Reply::Array(Some(v.iter().map(|n| Reply::Int(*n)).collect()));
        let err = |s: &str| Reply::Error(s.into());
        let cases = [
            (ints(&[7, 2, 0]), Outcome::Stored { seq: 7, trimmed: 2 }),
            // A key already stored: its first number, nothing appended.
            (ints(&[7, 0, 1]), Outcome::Stored { seq: 7, trimmed: 0 }),
            (
                err("SSEDTOPICS there are too many topics"),
                Outcome::TooManyTopics,
            ),
            (
                err("SSEDREUSED the key was used for another publish"),
                Outcome::KeyReused,
            ),
            (err("SSEDRUN the shared hub was reset"), Outcome::RunChanged),
            (
                err("SSEDBEHIND the event count is behind the log"),
                Outcome::Behind,
            ),
            // Not stored either: refused before anything changed.
            (
                err("SSEDNOPERM the Redis user may not run XADD on ssed:all"),
                Outcome::Refused("SSEDNOPERM the Redis user may not run XADD on ssed:all".into()),
            ),
            // Redis's own refusals: not stored.
            (
                err("NOPERM this user has no permissions to run the 'evalsha' command"),
                Outcome::Refused(
                    "NOPERM this user has no permissions to run the 'evalsha' command".into(),
                ),
            ),
            (
                err("OOM command not allowed when used memory > 'maxmemory'."),
                Outcome::Refused("OOM command not allowed when used memory > 'maxmemory'.".into()),
            ),
            // A code Redis made from a message-less error is not ours.
            (
                err("ERR SSEDTOPICS"),
                Outcome::Refused("ERR SSEDTOPICS".into()),
            ),
        ];
        for (reply, expected) in cases {
            assert_eq!(outcome(&reply), expected, "{reply:?}");
        }
        // Anything else is not an answer the script gives: perhaps stored.
        for reply in [
            ints(&[0, 0, 0]),
            ints(&[-1, 0, 0]),
            ints(&[7, 0]),
            ints(&[7, 0, 2]),
            Reply::Int(7),
            Reply::Simple("OK".into()),
            Reply::Bulk(None),
            Reply::Array(None),
        ] {
            assert!(
                matches!(outcome(&reply), Outcome::Unexpected(_)),
                "{reply:?}"
            );
        }
        // Every code the script can answer with is one read above.
        for code in [
            "SSEDRUN ",
            "SSEDTOPICS ",
            "SSEDREUSED ",
            "SSEDBEHIND ",
            "SSEDNOPERM ",
        ] {
            assert!(PUBLISH.contains(&format!("error_reply('{code}")), "{code}");
        }
    }
}
