//! The feed thread: follows the log (`XREAD BLOCK` on the feed stream)
//! and inserts each event into the local hub in order; joins the log again
//! after any failure, with back-off, and resets the mirror when the log is
//! not the one it followed.

use super::conn::{small_reply, Conn};
use super::keys::{parse_entry, parse_id, FEED, RUN, SEQ};
use super::{
    Limits, Reply, Shared, BLOCK, FIRST_BACKOFF, MAX_BACKOFF, PING_EVERY, RUN_CHECK_EVERY,
};
use crate::hub::new_run;
use crate::log;
use crate::sync::lock;
use std::sync::atomic::Ordering;
use std::time::Instant;

impl Shared {
    /// The feed thread: connects, joins the log, follows it; again after
    /// any failure, with back-off.
    pub(super) fn follow_feed(&self) {
        let mut backoff = FIRST_BACKOFF;
        // The number of the last event this instance has (None: never
        // linked yet).
        let mut pos: Option<u64> = None;
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
            backoff = FIRST_BACKOFF;
            self.mark_up(&run, seq);
            let why = self.follow(&mut conn, &mut pos, &run);
            if self.stopping() {
                break;
            }
            self.mark_down(why);
        }
    }

    /// Joins the log: learns its run and where it is, and decides whether
    /// this instance carries on from `pos` or resets its mirror.
    fn join(&self, conn: &mut Conn, pos: &mut Option<u64>) -> Result<(String, u64), String> {
        let fresh = new_run();
        let reply = conn
            .eval(
                &self.join_script,
                &[RUN.as_bytes(), SEQ.as_bytes()],
                &[fresh.as_bytes()],
                &small_reply(),
            )
            .map_err(|e| e.to_string())?;
        let (run, seq) = match reply.items() {
            Some([run, seq]) => match (run.text(), seq.int()) {
                (Some(run), Some(seq)) if seq >= 0 => (run.to_string(), seq as u64),
                _ => return Err(format!("an unexpected answer to the join: {reply:?}")),
            },
            _ => return Err(format!("Redis refused the join: {reply:?}")),
        };
        let reset = match *pos {
            // The first link: the mirror starts from the log's end (what
            // came before is replayed from Redis).
            None => false,
            Some(_) if run != self.hub.run_token() => {
                log::line(&format!(
                    "redis {}: the shared hub's data is not what this instance followed (run {run}, was {}): Redis lost it; hub streams here end and clients resume from Redis",
                    self.target,
                    self.hub.run_token()
                ));
                true
            }
            Some(p) if seq < p => {
                log::line(&format!(
                    "redis {}: the event count went back from {p} to {seq}; hub streams here end and clients resume from Redis",
                    self.target
                ));
                true
            }
            Some(p) if seq > p => {
                // Were the events after p trimmed from the feed meanwhile?
                let oldest = conn
                    .call(
                        &[b"XRANGE", FEED.as_bytes(), b"-", b"+", b"COUNT", b"1"],
                        &self.replay_limits(),
                    )
                    .map_err(|e| e.to_string())?;
                let oldest = oldest
                    .items()
                    .and_then(|i| i.first())
                    .and_then(|e| e.items()?.first()?.text().and_then(parse_id));
                let missed = oldest.is_none_or(|o| o > p + 1);
                if missed {
                    log::line(&format!(
                        "redis {}: events {}..{seq} left the feed while this instance was away; hub streams here end and clients resume from Redis",
                        self.target,
                        p + 1
                    ));
                }
                missed
            }
            Some(_) => false,
        };
        match *pos {
            Some(p) if !reset => {
                // Same log: carry on after p.
                self.hub.rejoin(&run, p, false);
            }
            _ => {
                if reset {
                    self.resets.fetch_add(1, Ordering::Relaxed);
                }
                self.hub.rejoin(&run, seq, reset);
                *pos = Some(seq);
            }
        }
        Ok((run, seq))
    }

    /// Follows the feed until the link fails or ssed stops; returns why.
    fn follow(&self, conn: &mut Conn, pos: &mut Option<u64>, run: &str) -> String {
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
        while !self.stopping() {
            // An instance that does not publish learns of a FLUSHALL (or
            // of another Redis in its place) only by looking.
            if run_checked.elapsed() >= RUN_CHECK_EVERY {
                match conn.call(&[b"GET", RUN.as_bytes()], &small_reply()) {
                    Ok(reply) if reply.text() == Some(run) => {}
                    Ok(reply) => {
                        let now = reply
                            .text()
                            .map_or_else(|| "no run".to_string(), |r| format!("run {r}"));
                        log::line(&format!(
                            "redis {}: the shared hub's data changed under this instance ({now}, was run {run}): Redis lost or replaced it; hub streams here end and clients resume from Redis",
                            self.target
                        ));
                        return "the shared hub's data changed under this instance".into();
                    }
                    Err(e) => return e.to_string(),
                }
                run_checked = Instant::now();
            }
            if pinged.elapsed() >= PING_EVERY {
                let started = Instant::now();
                match conn.call(&[b"PING"], &small_reply()) {
                    Ok(Reply::Simple(_)) => lock(&self.link).rtt = Some(started.elapsed()),
                    Ok(other) => return format!("an unexpected answer to PING: {other:?}"),
                    Err(e) => return e.to_string(),
                }
                pinged = Instant::now();
            }
            let after = format!("{}-0", pos.unwrap_or(0));
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
                let p = pos.unwrap_or(0);
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
                self.hub.insert_remote(&topic, seq, event);
                *pos = Some(seq);
            }
        }
        "stopping".into()
    }
}
