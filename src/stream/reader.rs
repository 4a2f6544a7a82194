//! What a stream reads: its subscriptions merged in one id order, gaps
//! first, then a backlog (a shared log's replay, a page at a time), then
//! the live events, a bounded piece at a time.

use crate::hub::{Backlog, Entry, Gap, Hub, Subscribed, Subscription, Take, Watch};
use crate::sse::{Event, DELETED_EVENT, GAP_EVENT};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Subscriptions to one or more topics, read as one stream in id order.
pub struct Reader {
    pub(super) subs: Vec<Subscription>,
    /// The hub the topics belong to: its watermark keeps several topics in
    /// one order, and it names ids in gap notices. `None` for demo topics.
    hub: Option<Arc<Hub>>,
    /// Gaps found when subscribing, sent before anything else.
    gaps: Vec<Gap>,
    /// The `Last-Event-ID` the client resumed from, quoted in those gaps.
    resumed_from: Option<String>,
    /// Events sent first, after the gaps: a snapshot of the state.
    first: VecDeque<Arc<Event>>,
    /// Live events numbered up to this one are left out: the client has
    /// them already (it resumed after an id this instance had not reached).
    skip_through: u64,
    pub(super) entries: Vec<Entry>,
    /// Where each subscription's entries start in `entries`, while a
    /// piece is taken.
    starts: Vec<usize>,
    /// What is owed before the live events and read a page at a time (a
    /// shared log's replay): while it lasts, no live event is taken.
    backlog: Option<Box<dyn Backlog>>,
    /// Its patterns' watch, whose subscriptions to new topics it takes.
    pub(super) watch: Option<Arc<Watch>>,
    /// Every topic it read was deleted: it ends.
    orphaned: bool,
}

/// Events one piece takes at most, whatever their size: what a write
/// carries and what a stream holds is bounded by count as well as bytes.
const MAX_PIECE_EVENTS: usize = 1024;

/// A stream's batch of events keeps at most this capacity after a piece.
pub(super) const KEEP_BATCH: usize = 256;

impl Reader {
    /// A reader of what a store subscribed to.
    pub fn subscribed(s: Subscribed) -> Reader {
        Reader {
            subs: s.subs,
            hub: Some(s.hub),
            gaps: s.gaps,
            resumed_from: s.resumed_from,
            first: VecDeque::new(),
            skip_through: s.skip_through,
            entries: Vec::new(),
            starts: Vec::new(),
            backlog: s.backlog,
            watch: s.watch,
            orphaned: false,
        }
    }

    /// A reader of a demo's topic (outside the hub), sending `first` before
    /// anything live: a snapshot of the state.
    pub fn demo(sub: Subscription, first: Vec<Arc<Event>>) -> Reader {
        Reader {
            subs: vec![sub],
            hub: None,
            gaps: Vec::new(),
            resumed_from: None,
            first: first.into(),
            skip_through: 0,
            entries: Vec::new(),
            starts: Vec::new(),
            backlog: None,
            watch: None,
            orphaned: false,
        }
    }

    /// Nothing yet: what an outlet holds before it is attached.
    pub(super) fn empty() -> Reader {
        Reader {
            subs: Vec::new(),
            hub: None,
            gaps: Vec::new(),
            resumed_from: None,
            first: VecDeque::new(),
            skip_through: 0,
            entries: Vec::new(),
            starts: Vec::new(),
            backlog: None,
            watch: None,
            orphaned: false,
        }
    }

    /// Reads the backlog's next page once the last one went out.
    pub(super) fn refill(&mut self) {
        if !self.first.is_empty() {
            return;
        }
        let Some(backlog) = self.backlog.as_mut() else {
            return;
        };
        match backlog.next_page() {
            Ok(page) if !page.is_empty() => self.first = page.into(),
            Ok(_) => self.backlog = None,
            Err(gaps) => {
                self.gaps.extend(gaps);
                self.backlog = None;
            }
        }
    }

    /// Whether a backlog is still being read.
    pub(super) fn replaying(&self) -> bool {
        self.backlog.is_some()
    }

    /// Moves the next piece of what is owed into `out`, in id order, gaps
    /// first: at most `bytes` (as [`Event::size`] counts them, and at
    /// least one event) and [`MAX_PIECE_EVENTS`]. What is left stays in
    /// the topics, behind the subscriptions' cursors. Returns how many
    /// were moved, and whether more is owed now.
    pub(super) fn collect(
        &mut self,
        out: &mut VecDeque<Arc<Event>>,
        bytes: usize,
    ) -> (usize, bool) {
        let hub = self.hub.as_deref();
        for gap in self.gaps.drain(..) {
            out.push_back(gap_event(hub, &gap, self.resumed_from.as_deref()));
        }
        // Topics deleted under it: said, and let go of. A stream left with
        // no topic (and no pattern that may bring one) ends.
        if self.subs.iter().any(Subscription::is_deleted) {
            self.subs.retain(|sub| {
                if sub.is_deleted() {
                    out.push_back(deleted_event(sub.topic_name()));
                    false
                } else {
                    true
                }
            });
            self.orphaned = self.subs.is_empty() && self.watch.is_none();
        }
        let mut left = Take {
            events: MAX_PIECE_EVENTS,
            bytes,
        };
        while let Some(ev) = self.first.front() {
            if !out.is_empty() && (left.events == 0 || ev.size() > left.bytes) {
                return (out.len(), true);
            }
            left.events = left.events.saturating_sub(1);
            left.bytes = left.bytes.saturating_sub(ev.size());
            out.extend(self.first.pop_front());
        }
        if left.events == 0 || self.backlog.is_some() {
            return (out.len(), true);
        }
        // Read the watermark first: every event at or below it is already in
        // its topic, so what is taken below is complete up to it.
        let watermark = hub.map_or(u64::MAX, Hub::watermark);
        // Topics made since that a pattern matches: subscribed to as they
        // were made, so nothing of theirs is missed.
        if let Some(watch) = &self.watch {
            watch.take_fresh(&mut self.subs);
        }
        // Several topics share the piece, and are merged by number: each
        // takes its share; the piece ends before the first number some
        // topic had to leave behind, and what each took past it is given
        // back, so that nothing goes out of order.
        let share = Take {
            events: (left.events / self.subs.len().max(1)).max(1),
            bytes: left.bytes / self.subs.len().max(1),
        };
        let mut cut = u64::MAX;
        self.starts.clear();
        for sub in &mut self.subs {
            self.starts.push(self.entries.len());
            let (gap, more) = sub.take_some(watermark, &mut self.entries, share);
            if let Some(gap) = gap {
                // A live subscriber the topic's memory moved past: it skips
                // ahead, told so, rather than being dropped.
                if let Some(hub) = hub {
                    hub.counters.lagged.fetch_add(1, Ordering::Relaxed);
                }
                out.push_back(gap_event(hub, &gap, None));
            }
            if more {
                if let Some(last) = self.entries.last() {
                    cut = cut.min(last.seq);
                }
            }
        }
        let more = cut < u64::MAX;
        if self.subs.len() > 1 {
            if more {
                for (i, sub) in self.subs.iter_mut().enumerate() {
                    let end = self
                        .starts
                        .get(i + 1)
                        .copied()
                        .unwrap_or(self.entries.len());
                    let mine = &self.entries[self.starts[i]..end];
                    sub.put_back(mine.len() - mine.partition_point(|e| e.seq <= cut));
                }
                self.entries.retain(|e| e.seq <= cut);
            }
            self.entries.sort_by_key(|e| e.seq);
        }
        if self.skip_through > 0 {
            let skip = self.skip_through;
            self.entries.retain(|e| e.seq > skip);
        }
        out.extend(self.entries.drain(..).map(|e| e.event));
        if self.entries.capacity() > KEEP_BATCH {
            self.entries.shrink_to(16);
        }
        (out.len(), more)
    }

    /// Whether a topic was closed under it (the hub was reset): the
    /// stream ends, and its client reconnects.
    pub(super) fn ended(&self) -> bool {
        self.orphaned || self.subs.iter().any(Subscription::is_closed)
    }

    pub(super) fn sent(&self, events: usize) {
        if let Some(hub) = &self.hub {
            hub.counters
                .delivered
                .fetch_add(events as u64, Ordering::Relaxed);
        }
    }
}

/// `event: deleted` for a topic deleted under a stream: `{"topic": ..}`,
/// without an id (the client's `Last-Event-ID` stays its last event's).
fn deleted_event(topic: &str) -> Arc<Event> {
    let data = serde_json::json!({ "topic": topic });
    let mut event = Event::named(DELETED_EVENT, data.to_string());
    event.topic = Some(topic.to_string());
    Arc::new(event)
}

/// `event: gap` with what is known of the lost events, counted in `hub`.
fn gap_event(hub: Option<&Hub>, gap: &Gap, after: Option<&str>) -> Arc<Event> {
    let data = serde_json::json!({
        "topic": gap.topic,
        "missed": gap.missed,
        "after": after,
        "through": gap.through.and_then(|seq| hub.map(|h| h.id(seq))),
    });
    let mut event = Event::named(GAP_EVENT, data.to_string());
    if let Some(hub) = hub {
        hub.counters.gaps.fetch_add(1, Ordering::Relaxed);
        // A hub gap is about a topic, as the hub's events are.
        event.topic = Some(gap.topic.clone());
    }
    Arc::new(event)
}
