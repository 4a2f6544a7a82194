//! The feed thread: follows the log (`XREAD BLOCK` on the feed stream)
//! and inserts each event into the local hub in order; joins the log again
//! after any failure, with back-off, and resets the mirror when the log is
//! not the one it followed.

use super::conn::{small_reply, Conn};
use super::keys::{parse_entry, parse_id, FEED, INSTANCES, RUN, SEQ, SUBS_PREFIX};
use super::{
    Limits, Reply, Shared, BLOCK, FIRST_BACKOFF, MAX_BACKOFF, PING_EVERY, RUN_CHECK_EVERY,
};
use crate::hub::{idempotency, new_run};
use crate::log;
use crate::sync::lock;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// A link that held this long is retried at once when it fails.
const STEADY: Duration = Duration::from_secs(2);

impl Shared {
    /// The feed thread: connects, joins the log, follows it; again after
    /// any failure, with back-off.
    pub(super) fn follow_feed(&self) {
        let mut backoff = FIRST_BACKOFF;
        // The last event this instance has (None: never linked yet).
        let mut pos: Option<Position> = None;
        let mut was_up = false;
        while !self.stopping() {
            let mut conn = match Conn::open(&self.target, self.settings.timeout) {
                Ok(conn) => conn,
                Err(why) => {
                    self.mark_down(why.to_string());
                    self.bell.wait(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            *lock(&self.feed_socket) = conn.stream.try_clone().ok();
            lock(&self.rejoin).take();
            if self.stopping() {
                break;
            }
            let (run, seq) = match self.join(&mut conn, &mut pos) {
                Ok(joined) => joined,
                Err(why) => {
                    self.mark_down(why);
                    self.bell.wait(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            if was_up {
                self.reconnects.fetch_add(1, Ordering::Relaxed);
            }
            was_up = true;
            self.mark_up(&run, seq);
            let followed = Instant::now();
            let why = self.follow(&mut conn, &mut pos, &run);
            if self.stopping() {
                break;
            }
            let why = lock(&self.rejoin).take().unwrap_or(why);
            self.mark_down(why);
            // A link that fails as soon as it is up (a command refused, a
            // Redis that drops every connection) is retried with back-off
            // too, never in a tight loop; one that held starts afresh.
            if followed.elapsed() >= STEADY {
                backoff = FIRST_BACKOFF;
            } else {
                self.bell.wait(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    /// Joins the log: learns its run and where it is, and decides whether
    /// this instance carries on from `pos`, resets its mirror, or finds
    /// that the log's history went back under it (then ids go on under a
    /// new run, so that none names two events).
    fn join(&self, conn: &mut Conn, pos: &mut Option<Position>) -> Result<(String, u64), String> {
        let fresh = new_run();
        let reply = conn
            .eval(
                &self.join_script,
                &[RUN.as_bytes(), SEQ.as_bytes()],
                &[fresh.as_bytes()],
                &small_reply(),
            )
            .map_err(|e| e.to_string())?;
        let (mut run, mut seq) = run_and_seq(&reply, "the join")?;
        if let Some(renewed) = self.check_redis(conn, &run)? {
            (run, seq) = renewed;
        }
        let verdict = match *pos {
            // The first link: the mirror starts from the log's end (what
            // came before is replayed from Redis).
            None => Verdict::Fresh,
            Some(p) => self.compare(conn, &run, seq, p)?,
        };
        let (run, seq) = match verdict {
            Verdict::Carry(p) => {
                // Same log: carry on after p.
                self.hub.rejoin(&run, p, false);
                return Ok((run, seq));
            }
            Verdict::Fresh => {
                self.hub.rejoin(&run, seq, false);
                *pos = Some(Position { seq, print: None });
                return Ok((run, seq));
            }
            Verdict::Reset => (run, seq),
            Verdict::WentBack(why) => {
                let renewed = self.renew(conn, &run)?;
                log::line(&format!(
                    "redis {}: Redis's history went back ({why}): ids go on under a new run ({}, was {run}) so that none names two events; hub streams here end and clients resume from Redis, told of the gap",
                    self.target, renewed.0
                ));
                renewed
            }
        };
        self.resets.fetch_add(1, Ordering::Relaxed);
        self.hub.rejoin(&run, seq, true);
        *pos = Some(Position { seq, print: None });
        Ok((run, seq))
    }

    /// Gives the log a new run if it still has `run` (see `scripts::RENEW`).
    pub(super) fn renew(&self, conn: &mut Conn, run: &str) -> Result<(String, u64), String> {
        let fresh = new_run();
        let reply = conn
            .eval(
                &self.renew_script,
                &[RUN.as_bytes(), SEQ.as_bytes()],
                &[run.as_bytes(), fresh.as_bytes()],
                &small_reply(),
            )
            .map_err(|e| e.to_string())?;
        run_and_seq(&reply, "the renewal of the run")
    }

    /// What the log is now, against where this instance was (`p`).
    fn compare(
        &self,
        conn: &mut Conn,
        run: &str,
        seq: u64,
        p: Position,
    ) -> Result<Verdict, String> {
        if run != self.hub.run_token() {
            log::line(&format!(
                "redis {}: the shared hub's data is not what this instance followed (run {run}, was {}): Redis lost it; hub streams here end and clients resume from Redis",
                self.target,
                self.hub.run_token()
            ));
            return Ok(Verdict::Reset);
        }
        if seq < p.seq {
            return Ok(Verdict::WentBack(format!(
                "the event count is {seq}, this instance had {}",
                p.seq
            )));
        }
        // The event at p, and the oldest the feed holds.
        let at = format!("{}-0", p.seq);
        let replies = conn
            .pipeline(
                &[
                    vec![
                        b"XRANGE".to_vec(),
                        FEED.as_bytes().to_vec(),
                        at.clone().into_bytes(),
                        at.into_bytes(),
                    ],
                    vec![
                        b"XRANGE".to_vec(),
                        FEED.as_bytes().to_vec(),
                        b"-".to_vec(),
                        b"+".to_vec(),
                        b"COUNT".to_vec(),
                        b"1".to_vec(),
                    ],
                ],
                &self.replay_limits(),
            )
            .map_err(|e| e.to_string())?;
        let first = |r: &Reply| r.items().and_then(|i| i.first()).cloned();
        let entry = replies.first().and_then(first);
        let oldest = replies
            .get(1)
            .and_then(first)
            .and_then(|e| e.items()?.first()?.text().and_then(parse_id));
        if let Some(print) = p.print {
            match entry.as_ref().and_then(fingerprint) {
                Some(now) if now != print => {
                    return Ok(Verdict::WentBack(format!(
                        "event {} is not the one this instance had",
                        p.seq
                    )))
                }
                None if oldest.is_some_and(|o| o <= p.seq) => {
                    return Ok(Verdict::WentBack(format!(
                        "event {} is gone from the feed, though older ones are there",
                        p.seq
                    )))
                }
                _ => {}
            }
        }
        if seq > p.seq && oldest.is_none_or(|o| o > p.seq + 1) {
            log::line(&format!(
                "redis {}: events {}..{seq} left the feed while this instance was away; hub streams here end and clients resume from Redis",
                self.target,
                p.seq + 1
            ));
            return Ok(Verdict::Reset);
        }
        Ok(Verdict::Carry(p.seq))
    }

    /// Follows the feed until the link fails or ssed stops; returns why.
    fn follow(&self, conn: &mut Conn, pos: &mut Option<Position>, run: &str) -> String {
        let count = (8 << 20) / (self.settings.max_event_bytes + 512);
        let count = count.clamp(16, 1000);
        let limits = Limits {
            bulk: self.settings.max_event_bytes.max(1024),
            items: count.max(8),
            depth: 5,
            total: count * (self.settings.max_event_bytes + 512) + 65536,
        };
        let count = count.to_string();
        let block = BLOCK.as_millis().to_string();
        let _ = conn
            .stream
            .set_read_timeout(Some(self.settings.timeout + BLOCK));
        let mut pinged = Instant::now() - PING_EVERY;
        let mut run_checked = Instant::now();
        // --history-ttl's sweep of the topics in Redis, a part at a time.
        let sweep_every = self
            .settings
            .history_ttl
            .map(|ttl| (ttl / 4).clamp(Duration::from_millis(10), Duration::from_secs(1)));
        let mut swept = Instant::now();
        let mut cursor = String::from("0");
        while !self.stopping() {
            // An instance that does not publish learns of a FLUSHALL (or
            // of another Redis in its place) only by looking.
            if run_checked.elapsed() >= RUN_CHECK_EVERY {
                let checked = conn.pipeline(
                    &[
                        vec![b"GET".to_vec(), RUN.as_bytes().to_vec()],
                        vec![b"GET".to_vec(), SEQ.as_bytes().to_vec()],
                    ],
                    &small_reply(),
                );
                let replies = match checked {
                    Ok(replies) => replies,
                    Err(e) => return e.to_string(),
                };
                let now_run = replies.first().and_then(Reply::text);
                if now_run != Some(run) {
                    let now = now_run.map_or_else(|| "no run".to_string(), |r| format!("run {r}"));
                    log::line(&format!(
                        "redis {}: the shared hub's data changed under this instance ({now}, was run {run}): Redis lost or replaced it; hub streams here end and clients resume from Redis",
                        self.target
                    ));
                    return "the shared hub's data changed under this instance".into();
                }
                // A count below this instance's position: the history went
                // back (the join that follows gives ids a new run).
                let count = replies
                    .get(1)
                    .and_then(|r| r.text().and_then(|t| t.parse::<u64>().ok()).or(Some(0)));
                if let (Some(count), Some(p)) = (count, pos.as_ref()) {
                    if count < p.seq {
                        return format!(
                            "the event count went back from {} to {count} under this instance",
                            p.seq
                        );
                    }
                }
                // Subscribers across instances, as often.
                if let Err(e) = self.count_subscribers(conn) {
                    return e;
                }
                run_checked = Instant::now();
            }
            if sweep_every.is_some_and(|every| swept.elapsed() >= every) {
                match self.age(conn, Some(&cursor), &[]) {
                    Ok(next) => cursor = next,
                    Err(e) => return e.to_string(),
                }
                swept = Instant::now();
            }
            if pinged.elapsed() >= PING_EVERY {
                let started = Instant::now();
                match conn.call(&[b"PING"], &small_reply()) {
                    Ok(Reply::Simple(_)) => lock(&self.link).rtt = Some(started.elapsed()),
                    Ok(other) => return format!("an unexpected answer to PING: {other:?}"),
                    Err(e) => return e.to_string(),
                }
                // Out of memory (or room again), also without a publish.
                match self.memory(conn) {
                    Ok(Some(between)) if between.is_empty() => {}
                    Ok(full) => self.mark_full(full),
                    Err(e) => return e,
                }
                pinged = Instant::now();
            }
            let after = format!("{}-0", pos.map_or(0, |p| p.seq));
            let reply = conn.call(
                &[
                    b"XREAD",
                    b"COUNT",
                    count.as_bytes(),
                    b"BLOCK",
                    block.as_bytes(),
                    b"STREAMS",
                    FEED.as_bytes(),
                    after.as_bytes(),
                ],
                &limits,
            );
            let reply = match reply {
                Ok(Reply::Error(e)) => return format!("Redis refused to read the feed: {e}"),
                Ok(reply) => reply,
                Err(e) => return e.to_string(),
            };
            // [[feed, [entry, ...]]], or nil when nothing came.
            let entries = reply
                .items()
                .and_then(|streams| streams.first())
                .and_then(|s| s.items()?.get(1))
                .and_then(Reply::items)
                .unwrap_or_default();
            for entry in entries {
                let mut topic = String::new();
                let Some((seq, event)) = parse_entry(entry, Some(&mut topic)) else {
                    return "the feed holds an entry ssed did not write".into();
                };
                let p = pos.map_or(0, |p| p.seq);
                if seq <= p {
                    continue;
                }
                if seq != p + 1 {
                    // The feed moved on past events this instance never
                    // had: start again from here, readers told.
                    log::line(&format!(
                        "redis {}: events {}..{} left the feed before this instance read them; hub streams here end and clients resume from Redis",
                        self.target,
                        p + 1,
                        seq - 1
                    ));
                    self.resets.fetch_add(1, Ordering::Relaxed);
                    self.hub.rejoin(run, seq - 1, true);
                }
                if is_deletion(entry) {
                    self.hub.delete_remote(&topic, seq);
                    *pos = Some(Position { seq, print: None });
                    continue;
                }
                let print = idempotency::fingerprint(&topic, event.event.as_deref(), &event.data);
                self.hub.insert_remote(&topic, seq, event);
                *pos = Some(Position {
                    seq,
                    print: Some(print),
                });
            }
        }
        "stopping".into()
    }
}

impl Shared {
    /// Tells Redis this instance's subscribers by topic, and learns the
    /// others' (see `scripts::COUNTS`).
    fn count_subscribers(&self, conn: &mut Conn) -> Result<(), String> {
        let mine: Vec<(String, String)> = self
            .hub
            .topics()
            .iter()
            .filter_map(|t| {
                let n = t.subscribers();
                (n > 0).then(|| (t.name().to_string(), n.to_string()))
            })
            .collect();
        let ttl = COUNTED_FOR.as_millis().to_string();
        let mut args: Vec<&[u8]> = vec![self.instance.as_bytes(), ttl.as_bytes()];
        for (topic, n) in &mine {
            args.push(topic.as_bytes());
            args.push(n.as_bytes());
        }
        let key = format!("{SUBS_PREFIX}{}", self.instance);
        let limits = Limits {
            bulk: crate::hub::MAX_TOPIC_LEN.max(24),
            items: self.settings.max_topics.max(1) * 2,
            depth: 1,
            total: self.settings.max_topics.max(1) * 256,
        };
        let reply = conn
            .eval(
                &self.counts_script,
                &[INSTANCES.as_bytes(), key.as_bytes()],
                &args,
                &limits,
            )
            .map_err(|e| e.to_string())?;
        let Some(items) = reply.items() else {
            // Refused (an ACL): counted here only.
            return Ok(());
        };
        let mut elsewhere = std::collections::HashMap::new();
        for pair in items.chunks(2) {
            if let [topic, n] = pair {
                match (topic.text(), n.int()) {
                    // What Redis holds is checked as any input: a name
                    // goes into /metrics labels.
                    (Some(topic), Some(n)) if crate::hub::check_topic(topic).is_ok() => {
                        elsewhere.insert(topic.to_string(), n.max(0) as usize);
                    }
                    _ => {}
                }
            }
        }
        *lock(&self.elsewhere) = elsewhere;
        Ok(())
    }
}

/// How long an instance's counts stand without being renewed: one that
/// dies stops being counted within this.
const COUNTED_FOR: Duration = Duration::from_secs(3);

/// Where an instance is in the log: the number of the last event it has,
/// and that event's fingerprint (topic, name, data) if it read it from the
/// feed, to tell whether the event under that number is still the same.
#[derive(Clone, Copy, Debug)]
pub(super) struct Position {
    seq: u64,
    print: Option<u64>,
}

/// What a join finds.
enum Verdict {
    /// The first link.
    Fresh,
    /// The same log: carry on after this number.
    Carry(u64),
    /// Another log, or events missed: the mirror starts again.
    Reset,
    /// The log's history went back, for this reason: a new run.
    WentBack(String),
}

/// `{run, number}`, as the join and the renewal answer.
fn run_and_seq(reply: &Reply, what: &str) -> Result<(String, u64), String> {
    match reply.items() {
        Some([run, seq]) => match (run.text(), seq.int()) {
            (Some(run), Some(seq)) if seq >= 0 => Ok((run.to_string(), seq as u64)),
            _ => Err(format!("an unexpected answer to {what}: {reply:?}")),
        },
        _ => Err(format!("Redis refused {what}: {reply:?}")),
    }
}

/// The fingerprint of a feed entry, as [`Position`] keeps it.
fn fingerprint(entry: &Reply) -> Option<u64> {
    let mut topic = String::new();
    let (_, event) = parse_entry(entry, Some(&mut topic))?;
    Some(idempotency::fingerprint(
        &topic,
        event.event.as_deref(),
        &event.data,
    ))
}

/// Whether a feed entry deletes its topic (`x` = `deleted`, see
/// `scripts::DELETE`).
fn is_deletion(entry: &Reply) -> bool {
    entry
        .items()
        .and_then(|e| e.get(1))
        .and_then(Reply::items)
        .is_some_and(|fields| {
            fields
                .chunks(2)
                .any(|pair| matches!(pair, [n, v] if n.bytes() == Some(b"x") && v.bytes() == Some(b"deleted")))
        })
}
