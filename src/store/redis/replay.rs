//! A resume: what a subscriber is owed up to the moment it was registered
//! live, read from the topics' streams a page at a time by the stream's
//! own thread, merged by number; `?last=N` asks Redis where to start.

use super::conn::{small_reply, LinkError};
use super::keys::{parse_entry, parse_id, stream_key, CUT, CUT_FLOOR, RUN};
use super::{Limits, Redis, Reply, Shared};
use crate::hub::{Backlog, Gap, Resume};
use crate::sse::Event;
use crate::store::unreplayed;
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl Redis {
    /// What a subscriber to `topics` resuming from `from` is owed up to
    /// `upto` (the local watermark when it was registered live): the gaps,
    /// and the events, to be read a page at a time ([`Replay`]). Only the
    /// run and each topic's cut are read here.
    pub(super) fn replay(
        &self,
        topics: &[String],
        from: &Resume,
        upto: u64,
    ) -> Result<(Vec<Gap>, Option<Replay>), LinkError> {
        let s = &self.shared;
        let after = match from {
            Resume::Live => return Ok((Vec::new(), None)),
            Resume::After(seq) => *seq,
            Resume::Foreign(_) | Resume::Last(_) => 0,
        };
        if let Some(why) = s.down() {
            return Err(LinkError::Setup(why));
        }
        // Events past their age are dropped first (the sweep may not have
        // come by yet), so that the cuts below name them.
        if s.settings.history_ttl.is_some() {
            s.pool.with(s, |c| s.age(c, None, topics))?;
        }
        // The run first: a log that is not the one this mirror follows
        // (flushed, not noticed yet) must not be read under its ids.
        let mut commands: Vec<Vec<Vec<u8>>> = vec![
            vec![b"GET".to_vec(), RUN.as_bytes().to_vec()],
            vec![b"GET".to_vec(), CUT_FLOOR.as_bytes().to_vec()],
        ];
        for topic in topics {
            commands.push(vec![
                b"HGET".to_vec(),
                CUT.as_bytes().to_vec(),
                topic.clone().into_bytes(),
            ]);
        }
        let replies = s.pool.with(s, |c| c.pipeline(&commands, &small_reply()))?;
        let run = s.hub.run_token();
        let (Some(run_now), Some(floor), cuts) = (
            replies.first(),
            replies.get(1),
            replies.get(2..).unwrap_or_default(),
        ) else {
            return Err(LinkError::Unexpected("Redis answered no reply".into()));
        };
        // Cuts of topics let go of: their highest stands for all.
        let floor = floor.text().and_then(|f| f.parse::<u64>().ok());
        if run_now.text() != Some(run.as_str()) {
            s.restart_feed("the shared hub's data changed; joining again");
            return Err(LinkError::Unexpected(
                "the shared hub's data changed; it is being followed again".into(),
            ));
        }
        let mut gaps = Vec::new();
        for (topic, cut) in topics.iter().zip(cuts) {
            // What comes after `upto` comes live from the mirror, trimmed
            // in Redis or not: only a cut up to it is missed.
            let cut = cut
                .text()
                .and_then(parse_id)
                .max(floor)
                .map(|c| c.min(upto));
            let lost = match from {
                Resume::After(seq) => cut.is_some_and(|c| c > *seq),
                Resume::Foreign(_) => true,
                _ => false,
            };
            if lost {
                gaps.push(Gap {
                    topic: topic.clone(),
                    missed: None,
                    through: cut,
                });
            }
        }
        // The newest n across the topics start after the (n+1)th newest.
        let after = match from {
            Resume::Last(n) => {
                let keys: Vec<String> = topics.iter().map(|t| stream_key(t)).collect();
                let keys: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
                let (upto_arg, n_arg) = (upto.to_string(), n.max(&1).to_string());
                let args: [&[u8]; 2] = [upto_arg.as_bytes(), n_arg.as_bytes()];
                let reply = s
                    .pool
                    .with(s, |c| c.eval(&s.last_script, &keys, &args, &small_reply()))?;
                match reply {
                    Reply::Int(seq) => u64::try_from(seq).unwrap_or(0),
                    other => {
                        return Err(LinkError::Unexpected(format!(
                            "Redis answered {other:?} for the newest events"
                        )))
                    }
                }
            }
            _ => after,
        };
        let replay = Replay {
            shared: Arc::clone(s),
            topics: topics.to_vec(),
            next: vec![Some(after); topics.len()],
            upto,
            run,
            only: match from {
                Resume::Last(n) => Some(*n),
                _ => None,
            },
        };
        Ok((gaps, Some(replay)))
    }
}

/// The events a resume is owed, read from the topics' streams a page at a
/// time by the stream's own thread (see `stream::Backlog`).
pub(super) struct Replay {
    shared: Arc<Shared>,
    topics: Vec<String>,
    /// For each topic, the number after which it is read next; `None` once
    /// it has nothing more up to `upto`.
    next: Vec<Option<u64>>,
    upto: u64,
    /// The run the ids are read under; a page of another run is refused.
    run: String,
    /// `?last=N`: at most this many in all.
    only: Option<usize>,
}

/// What one page of a replay holds at most, in bytes of events: each topic
/// is asked for as many entries as fit, counted at `--max-event-bytes`.
const PAGE_BYTES: usize = 256 << 10;
/// Entries one page asks each topic for at most.
const PAGE_ENTRIES: usize = 256;

impl Replay {
    fn page(&mut self) -> Result<Vec<Arc<Event>>, LinkError> {
        let s = &self.shared;
        let open: Vec<usize> = (0..self.topics.len())
            .filter(|&i| self.next[i].is_some())
            .collect();
        if open.is_empty() || self.only == Some(0) {
            return Ok(Vec::new());
        }
        if let Some(why) = s.down() {
            return Err(LinkError::Setup(why));
        }
        let entry = s.settings.max_event_bytes + 256;
        let count = (PAGE_BYTES / entry / open.len()).clamp(1, PAGE_ENTRIES);
        let end = format!("{}-0", self.upto);
        let mut commands: Vec<Vec<Vec<u8>>> = vec![vec![b"GET".to_vec(), RUN.as_bytes().to_vec()]];
        for &i in &open {
            let after = self.next[i].unwrap_or(0);
            commands.push(vec![
                b"XRANGE".to_vec(),
                stream_key(&self.topics[i]).into_bytes(),
                format!("{}-0", after + 1).into_bytes(),
                end.clone().into_bytes(),
                b"COUNT".to_vec(),
                count.to_string().into_bytes(),
            ]);
        }
        let limits = Limits {
            bulk: s.settings.max_event_bytes.max(1024),
            items: count * 2 + 4,
            depth: 4,
            total: count * entry + 4096,
        };
        let replies = s.pool.with(s, |c| c.pipeline(&commands, &limits))?;
        let Some((run_now, pages)) = replies.split_first() else {
            return Err(LinkError::Unexpected("Redis answered no reply".into()));
        };
        if run_now.text() != Some(self.run.as_str()) {
            s.restart_feed("the shared hub's data changed; joining again");
            return Err(LinkError::Unexpected(
                "the shared hub's data changed; it is being followed again".into(),
            ));
        }
        // Merged by number: the page ends before the first number a full
        // topic may not have sent yet.
        let mut taken: Vec<(u64, usize, Event)> = Vec::new();
        let mut cut = u64::MAX;
        // For each topic read: whether its page was full (more may follow).
        let mut full = Vec::with_capacity(open.len());
        for (&i, page) in open.iter().zip(pages) {
            if let Reply::Error(e) = page {
                return Err(LinkError::Unexpected(format!(
                    "Redis refused a replay: {e}"
                )));
            }
            let entries = page.items().unwrap_or_default();
            for entry in entries {
                let Some((seq, event)) = parse_entry(entry, None) else {
                    return Err(LinkError::Unexpected(
                        "Redis sent a stream entry ssed did not write".into(),
                    ));
                };
                taken.push((seq, i, event));
            }
            let more = entries.len() >= count;
            if more {
                if let Some((seq, _, _)) = taken.last() {
                    cut = cut.min(*seq);
                }
            }
            full.push(more);
        }
        // What is past the cut is read again next time; a topic is done
        // once its page was not full and nothing of it was past the cut.
        let past: Vec<usize> = taken
            .iter()
            .filter(|(seq, _, _)| *seq > cut)
            .map(|(_, i, _)| *i)
            .collect();
        taken.retain(|(seq, _, _)| *seq <= cut);
        taken.sort_by_key(|(seq, _, _)| *seq);
        for (seq, i, _) in &taken {
            if let Some(next) = self.next[*i].as_mut() {
                *next = (*next).max(*seq);
            }
        }
        for (&i, more) in open.iter().zip(full) {
            if !more && !past.contains(&i) {
                self.next[i] = None;
            }
        }
        if let Some(left) = self.only.as_mut() {
            taken.truncate(*left);
            *left -= taken.len();
        }
        s.hub
            .counters
            .replayed
            .fetch_add(taken.len() as u64, Ordering::Relaxed);
        Ok(taken
            .into_iter()
            .map(|(seq, i, mut event)| {
                event.id = Some(crate::hub::format_id(&self.run, seq));
                event.topic = Some(self.topics[i].clone());
                Arc::new(event)
            })
            .collect())
    }
}

impl Backlog for Replay {
    fn next_page(&mut self) -> Result<Vec<Arc<Event>>, Vec<Gap>> {
        self.page().map_err(|_| {
            // What is left cannot be read now: each topic not read to its
            // end is reported, and the next reconnection resumes.
            let left: Vec<String> = (0..self.topics.len())
                .filter(|&i| self.next[i].is_some())
                .map(|i| self.topics[i].clone())
                .collect();
            unreplayed(&left)
        })
    }
}
