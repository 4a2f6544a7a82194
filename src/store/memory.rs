//! The log when the hub is the log: one instance, events in memory.

use super::{Start, Store, StoreError, Stored, TopicState};
use crate::hub::idempotency::{self, Keys, Seen};
use crate::hub::{check_topic, Hub, Notify, Subscribed};
use crate::names::Pattern;
use crate::sse::Event;
use std::sync::Arc;
use std::time::Duration;

/// The hub as the log, and the idempotency keys of its publishes.
pub struct Memory {
    hub: Arc<Hub>,
    /// The numbers of recent publishes by idempotency key.
    keys: Keys,
}

impl Memory {
    /// The hub as the log; idempotency keys kept for `idempotency_ttl`, at
    /// most `max_keys` of them.
    pub fn new(hub: Arc<Hub>, idempotency_ttl: Duration, max_keys: usize) -> Memory {
        Memory {
            hub,
            keys: Keys::new(idempotency_ttl, max_keys),
        }
    }
}

impl Store for Memory {
    fn publish(&self, topic: &str, event: Event, key: Option<&str>) -> Result<Stored, StoreError> {
        // A bad name is a 400 whatever the key says.
        check_topic(topic).map_err(StoreError::BadTopic)?;
        if let Some(key) = key {
            let fingerprint = idempotency::fingerprint(topic, event.event.as_deref(), &event.data);
            match self.keys.begin(key, fingerprint) {
                Seen::New => {}
                // Published before: the same id, nothing published now.
                Seen::Answered(seq) => {
                    return Ok(Stored {
                        id: self.hub.id(seq),
                        subscribers: self.hub.subscribers(topic),
                    })
                }
                Seen::InProgress => return Err(StoreError::InProgress),
                Seen::Reused => return Err(StoreError::KeyReused),
            }
        }
        match self.hub.publish(topic, event) {
            Ok(appended) => {
                if let Some(key) = key {
                    self.keys.done(key, appended.seq);
                }
                Ok(Stored {
                    id: appended.id,
                    subscribers: appended.subscribers,
                })
            }
            Err(e) => {
                if let Some(key) = key {
                    self.keys.failed(key);
                }
                Err(e.into())
            }
        }
    }

    fn subscribe(
        &self,
        names: &[String],
        patterns: &[Pattern],
        notify: &Arc<dyn Notify>,
        start: &Start,
    ) -> Result<Subscribed, StoreError> {
        let resume = start.resume(|id| self.hub.resume(id));
        let (subs, gaps, watch) = self
            .hub
            .subscribe_matching(names, patterns, notify, &resume)?;
        let mut subscribed = Subscribed::new(Arc::clone(&self.hub), subs, gaps, start.quoted());
        subscribed.watch = watch;
        Ok(subscribed)
    }

    fn topics(&self) -> Result<Vec<TopicState>, StoreError> {
        Ok(self
            .hub
            .topics()
            .iter()
            .map(|t| {
                let (subscribers, retained, newest) = t.stats();
                TopicState {
                    name: t.name().to_string(),
                    subscribers,
                    retained,
                    last_id: newest.map(|seq| self.hub.id(seq)),
                }
            })
            .collect())
    }

    fn release(&self, names: &[String]) {
        self.hub.release(names);
    }

    fn delete(&self, topic: &str) -> Result<bool, StoreError> {
        check_topic(topic).map_err(StoreError::BadTopic)?;
        Ok(self.hub.delete(topic))
    }

    fn keys(&self) -> Option<usize> {
        Some(self.keys.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::{Fanouts, Retention};
    use crate::sync::Doorbell;

    fn memory() -> Memory {
        let keep = Retention {
            history: 10,
            bytes: usize::MAX,
        };
        let hub = Arc::new(Hub::new(keep, 2, usize::MAX, Fanouts::inline()));
        Memory::new(hub, Duration::from_secs(60), 100)
    }

    #[test]
    fn each_error_means_one_thing() {
        let m = memory();
        let key = Some("k");
        let first = m.publish("a", Event::message("x"), key).unwrap();
        // A retry: the first id, nothing stored.
        assert_eq!(m.publish("a", Event::message("x"), key).unwrap(), first);
        assert_eq!(m.topics().unwrap()[0].retained, 1);
        // The same key for another publish, a bad name, too many topics.
        assert_eq!(
            m.publish("b", Event::message("x"), key),
            Err(StoreError::KeyReused)
        );
        assert!(matches!(
            m.publish("a b", Event::message("x"), key),
            Err(StoreError::BadTopic(_))
        ));
        m.publish("b", Event::message("x"), None).unwrap();
        assert_eq!(
            m.publish("c", Event::message("x"), Some("fresh")),
            Err(StoreError::TooManyTopics(2))
        );
        // A refused publish left its key free.
        assert_eq!(m.keys(), Some(1));
    }

    #[test]
    fn a_subscriber_resumes_after_its_id() {
        let m = memory();
        let ids: Vec<String> = (0..3)
            .map(|i| {
                m.publish("a", Event::message(i.to_string()), None)
                    .unwrap()
                    .id
            })
            .collect();
        let notify: Arc<dyn Notify> = Arc::new(Doorbell::default());
        let start = Start {
            last_event_id: Some(ids[0].clone()),
            last: None,
        };
        let mut subscribed = m.subscribe(&["a".into()], &[], &notify, &start).unwrap();
        assert!(subscribed.gaps.is_empty());
        let mut out = Vec::new();
        subscribed.subs[0].take(u64::MAX, &mut out);
        let data: Vec<&str> = out.iter().map(|e| e.event.data.as_str()).collect();
        assert_eq!(data, ["1", "2"]);
        assert_eq!(subscribed.resumed_from.as_deref(), Some(ids[0].as_str()));
    }
}
