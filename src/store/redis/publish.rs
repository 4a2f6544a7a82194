//! A publish: the script that stores it, ssed's own retry when the answer
//! is lost, and what each failure means (`Down`: certainly not stored;
//! `Unknown`: perhaps, retry with the key).

use super::conn::small_reply;
use super::keys::{
    stream_key, BYTES, COST, CUT, FEED, IDEM_PREFIX, RUN, SEQ, TOPICS, TOPIC_PREFIX, TOTAL,
};
use super::{Redis, Reply, FEED_LENGTH};
use crate::hub::{check_topic, idempotency};
use crate::log;
use crate::sse::Event;
use crate::store::StoreError;
use std::sync::atomic::Ordering;

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
        if let Some(why) = s.down() {
            return Err(StoreError::Down(named(format!("down: {why}"))));
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
        let idem = format!("{IDEM_PREFIX}{key}");
        let ttl = s.settings.idempotency_ttl.as_secs().max(1).to_string();
        let fingerprint = format!(
            "{:016x}",
            idempotency::fingerprint(topic, event.event.as_deref(), &event.data)
        );
        let keys: [&[u8]; 10] = [
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
        let args: [&[u8]; 12] = [
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
            Err(e) if e.after_sending() => {
                log::line(&format!(
                    "redis {}: no answer to a publish ({e}); asking again with its idempotency key",
                    s.target
                ));
                match attempt() {
                    Ok(reply) => reply,
                    Err(e2) if e2.after_sending() => {
                        return Err(unknown(format!(
                            "no answer after the publish was sent ({e2}); the outcome is unknown"
                        )))
                    }
                    Err(e2) => {
                        return Err(unknown(format!(
                            "no answer after the publish was sent ({e}), then {e2}; the outcome is unknown"
                        )))
                    }
                }
            }
            Err(e) => return Err(StoreError::Down(named(format!("not reached: {e}")))),
        };
        let stored = match reply.items() {
            Some([Reply::Int(seq), Reply::Int(trimmed), ..]) => Some((*seq, *trimmed)),
            _ => None,
        };
        if let Some((seq, trimmed)) = stored {
            s.hub
                .counters
                .trimmed
                .fetch_add(u64::try_from(trimmed).unwrap_or(0), Ordering::Relaxed);
            return Ok((
                crate::hub::format_id(&run, seq.max(0) as u64),
                s.hub.subscribers(topic),
            ));
        }
        match reply {
            Reply::Error(e) if e.starts_with("SSEDTOPICS") => {
                Err(StoreError::TooManyTopics(s.settings.max_topics))
            }
            Reply::Error(e) if e.starts_with("SSEDREUSED") => Err(StoreError::KeyReused),
            Reply::Error(e) if e.starts_with("SSEDRUN") => {
                // Redis lost its data under a live feed: have the feed
                // connect again, which resets the mirror.
                s.restart_feed();
                Err(StoreError::LostData(named(
                    "it lost the shared hub's data; it is being set up again".into(),
                )))
            }
            Reply::Error(e) => Err(StoreError::Down(named(format!("refused: {e}")))),
            other => Err(unknown(format!("an unexpected reply: {other:?}"))),
        }
    }
}
