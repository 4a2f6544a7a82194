//! The hub as a mirror of a shared log (see `store::redis`): the log's
//! backend inserts each event under the log's number, registers readers
//! live at the mirror's watermark, joins the log again after a link, and
//! forgets topics nobody here reads.

use super::{Hub, TopicError};
use crate::sse::Event;
use crate::sync::{lock, write};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{Notify, Subscription, Watch};
use crate::names::Pattern;

/// What a mirror's subscription has live: the subscriptions, the
/// watermark they start after, and the watch of its patterns with the
/// topics here that matched them.
pub struct Live {
    pub subs: Vec<Subscription>,
    pub upto: u64,
    pub watch: Option<Arc<Watch>>,
    pub matching: Vec<String>,
}

impl Hub {
    /// Frees those of `names` that have no subscribers, whatever they hold:
    /// for a hub that mirrors a shared log, which keeps the events.
    pub fn forget(&self, names: &[String]) {
        self.free(names, |t| {
            t.subscribers() == 0 && !t.pinned.load(Ordering::Relaxed)
        });
    }

    /// A mirror: inserts event number `seq` of the shared log into `name`,
    /// if anyone here reads that topic (its subscribers are told), and
    /// moves the watermark to `seq`. Events must come in sequence order.
    pub fn insert_remote(&self, name: &str, seq: u64, mut event: Event) {
        let mut topics = lock(&self.topics);
        // A topic nobody here reads by name is made for a pattern that
        // matches it (its watches subscribe as it is made).
        if !topics.contains_key(name) && self.watched(name) {
            let _ = self.topic(&mut topics, name);
        }
        let inserted = topics.get(name).map(|topic| {
            event.id = Some(self.id(seq));
            event.topic = Some(name.to_string());
            topic.insert(seq, event);
            Arc::clone(topic)
        });
        self.watermark.store(seq, Ordering::Release);
        if inserted.is_some() {
            self.enforce_budget(&topics);
        }
        drop(topics);
        if let Some(topic) = inserted {
            topic.dispatch();
        }
    }

    /// A mirror: the shared log's event number `seq` deletes topic `name`
    /// (its readers here are told), and moves the watermark to `seq`.
    pub fn delete_remote(&self, name: &str, seq: u64) {
        self.delete(name);
        self.watermark.store(seq, Ordering::Release);
    }

    /// Subscribes `notify` to `names` for what comes next, and returns the
    /// watermark at that moment: every event after it comes live, every
    /// event up to it is the shared log's to replay.
    pub fn subscribe_live(
        &self,
        names: &[String],
        notify: &Arc<dyn Notify>,
    ) -> Result<(Vec<Subscription>, u64), TopicError> {
        self.subscribe_live_matching(names, &[], notify)
            .map(|live| (live.subs, live.upto))
    }

    /// [`Hub::subscribe_live`], and a watch of `patterns`: the topics here
    /// that match are subscribed to now, and those made later (by the
    /// mirror, as their first event comes) as they are made.
    pub fn subscribe_live_matching(
        &self,
        names: &[String],
        patterns: &[Pattern],
        notify: &Arc<dyn Notify>,
    ) -> Result<Live, TopicError> {
        let mut topics = lock(&self.topics);
        for name in names {
            self.topic(&mut topics, name)?;
        }
        let (watch, matching) = if patterns.is_empty() {
            (None, Vec::new())
        } else {
            let (watch, matching) = self.watch(&topics, patterns, notify, names);
            (Some(watch), matching)
        };
        let subs = names
            .iter()
            .chain(&matching)
            .map(|name| topics[name.as_str()].subscribe(Arc::clone(notify), 0))
            .collect();
        Ok(Live {
            subs,
            upto: self.watermark(),
            watch,
            matching,
        })
    }

    /// Makes here those of `names` (topics of the shared log) that `watch`
    /// matches and that are not here yet: the watch subscribes to each as
    /// it is made. Up to `--max-topics`; the rest are left out.
    pub fn make_watched(&self, watch: &Watch, names: &[String]) {
        let mut topics = lock(&self.topics);
        for name in names {
            if watch.matches(name) && !topics.contains_key(name.as_str()) {
                let _ = self.topic(&mut topics, name);
            }
        }
    }

    /// A mirror that (re)joins the shared log: takes its run and carries on
    /// after event `seq`. If `reset`, the log is not the one this hub
    /// mirrored (it lost its events, or events were missed): every topic is
    /// closed, which ends its readers' streams (clients reconnect and resume
    /// from the log, told of the gap), and forgotten.
    pub fn rejoin(&self, run: &str, seq: u64, reset: bool) {
        let mut topics = lock(&self.topics);
        if reset {
            for topic in topics.values() {
                topic.close();
            }
            let pinned: Vec<String> = topics
                .values()
                .filter(|t| t.pinned.load(Ordering::Relaxed))
                .map(|t| t.name.clone())
                .collect();
            for topic in topics.values() {
                self.total
                    .fetch_sub(topic.retained_cost(), Ordering::AcqRel);
            }
            topics.clear();
            for name in pinned {
                if let Ok(topic) = self.topic(&mut topics, &name) {
                    topic.pinned.store(true, Ordering::Relaxed);
                }
            }
        }
        *write(&self.run) = run.to_string();
        self.watermark.store(seq, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Fanouts, Retention};
    use super::*;
    use crate::sync::Doorbell;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_mirror_that_forgets_a_topic_holding_events_stops_counting_them() {
        // Cycles of "a subscriber comes, events arrive, it leaves": the
        // budget's count stays the bytes held, and never trims a reader.
        let hub = Hub::new(
            Retention {
                history: 1000,
                bytes: usize::MAX,
            },
            10,
            3 * 1024 * 1024,
            Fanouts::inline(),
        );
        let mut seq = 0;
        for _ in 0..6 {
            let n: Arc<dyn Notify> = Arc::new(Doorbell::default());
            let (mut subs, _) = hub.subscribe_live(&names(&["t"]), &n).unwrap();
            for _ in 0..400 {
                seq += 1;
                hub.insert_remote("t", seq, Event::message("x".repeat(2000)));
            }
            let mut out = Vec::new();
            // Everything arrived: no gap.
            assert_eq!(subs[0].take(u64::MAX, &mut out), None);
            assert_eq!(out.len(), 400);
            drop(subs);
            hub.forget(&names(&["t"]));
            assert_eq!(hub.topics().len(), 0);
            assert_eq!(hub.total.load(Ordering::Acquire), 0);
        }
    }
}
