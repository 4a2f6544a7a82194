//! What Redis must be for ssed's promises to hold, checked each time the
//! link comes up: an eviction policy that never drops ssed's keys, and a
//! user that may run everything ssed runs. A check that fails keeps the
//! link down, with one sentence that names what is wrong and the fix;
//! the feed thread tries again with back-off. And the fence: which Redis
//! server holds the log, so that a restart from an older snapshot or a
//! failover to a replica that lagged is noticed by any instance that
//! joins, also one that never saw the events lost.

use super::conn::{small_reply, Conn, LinkError};
use super::keys::{
    stream_key, BYTES, COST, CUT, CUT_FLOOR, FEED, FENCE, IDEM_PREFIX, INSTANCES, RUN, SEQ,
    SUBS_PREFIX, TOPICS, TOPIC_PREFIX, TOTAL,
};
use super::{Limits, Reply, Shared};
use crate::hub::new_run;
use crate::log;
use crate::sync::lock;

/// Checks what a user may run, with Redis 7's `redis.acl_check_cmd`
/// (older Redis has no ACL of that kind: `unknown`). Returns the first
/// command refused with its keys, or `ok`.
/// KEYS: run, seq, a topic stream, feed, topics, bytes, cut, cost, total,
/// an idempotency key, the instances, an instance's counts.
pub(super) const CAN: &str = r"
if not redis.acl_check_cmd then
  return 'unknown'
end
local checks = {
  {'get', KEYS[1]}, {'set', KEYS[1], 'x'}, {'incr', KEYS[2]},
  {'sismember', KEYS[5], 'x'}, {'scard', KEYS[5]}, {'sadd', KEYS[5], 'x'},
  {'xadd', KEYS[3], '1-0', 'e', '', 'd', ''},
  {'xadd', KEYS[4], 'MAXLEN', '~', '1', '1-0', 't', '', 'e', '', 'd', ''},
  {'xrange', KEYS[3], '-', '+', 'COUNT', '1'}, {'xdel', KEYS[3], '1-0'},
  {'xlen', KEYS[3]}, {'xrevrange', KEYS[3], '+', '-', 'COUNT', '1'},
  {'hincrby', KEYS[6], 'x', '1'}, {'hset', KEYS[7], 'x', '1'},
  {'zincrby', KEYS[8], '1', 'x'}, {'zrevrange', KEYS[8], '0', '1'}, {'zrem', KEYS[8], 'x'},
  {'incrby', KEYS[9], '1'}, {'get', KEYS[10]}, {'set', KEYS[10], 'x', 'EX', '1'},
  {'del', KEYS[3]}, {'srem', KEYS[5], 'x'}, {'hdel', KEYS[6], 'x'}, {'zscore', KEYS[8], 'x'},
  {'zadd', KEYS[11], '1', 'x'}, {'zremrangebyscore', KEYS[11], '0', '1'}, {'zrange', KEYS[11], '0', '1'},
  {'hset', KEYS[12], 'x', '1'}, {'pexpire', KEYS[12], '1'}, {'hgetall', KEYS[12]}, {'del', KEYS[12]},
}
for _, c in ipairs(checks) do
  if not redis.acl_check_cmd(unpack(c)) then
    return string.upper(c[1]) .. ' ' .. c[2]
  end
end
return 'ok'
";

impl Shared {
    /// The checks of a new link, after the join found run `run`: the
    /// server (a replica cannot take publishes), the eviction policy,
    /// what the user may run, and whether the server that holds the log
    /// changed since (then, unless its history is known whole, the run is
    /// renewed: returned with the count).
    pub(super) fn check_redis(
        &self,
        conn: &mut Conn,
        run: &str,
    ) -> Result<Option<(String, u64)>, String> {
        let info = conn
            .call(&[b"INFO"], &info_limits())
            .map_err(|e| e.to_string())?;
        let text = match &info {
            Reply::Bulk(Some(bytes)) => Some(String::from_utf8_lossy(bytes).into_owned()),
            Reply::Error(e) => {
                log::line(&format!(
                    "redis {}: cannot read INFO ({e}); ssed cannot check the eviction policy (it must be noeviction) nor notice a restart from an older snapshot by itself",
                    self.target
                ));
                None
            }
            other => return Err(format!("an unexpected answer to INFO: {other:?}")),
        };
        if let Some(text) = &text {
            check_info(text)?;
        }
        self.check_permissions(conn)?;
        let server = text.as_deref().and_then(|t| info_field(t, "run_id"));
        let (Some(text), Some(server)) = (text.as_deref(), server) else {
            // Which server answers cannot be known: not checked.
            *lock(&self.server) = None;
            return Ok(None);
        };
        // Whole: the same server's AOF (not a replica promoted; a replica
        // keeps its former primary's id as master_replid2).
        let aof = info_field(text, "aof_enabled") == Some("1");
        let promoted =
            info_field(text, "master_replid2").is_some_and(|r| r.bytes().any(|b| b != b'0'));
        let trust = if aof && !promoted { "1" } else { "0" };
        let fresh = new_run();
        let reply = conn
            .eval(
                &self.fence_script,
                &[RUN.as_bytes(), SEQ.as_bytes(), FENCE.as_bytes()],
                &[
                    server.as_bytes(),
                    trust.as_bytes(),
                    fresh.as_bytes(),
                    run.as_bytes(),
                ],
                &small_reply(),
            )
            .map_err(|e| e.to_string())?;
        if matches!(reply.items(), Some([_, _, Reply::Int(_)])) {
            // Checked: command connections may use this server now.
            *lock(&self.server) = Some(server.to_string());
        }
        match reply.items() {
            Some([now, seq, Reply::Int(1)]) => {
                let now = now.text().unwrap_or(&fresh).to_string();
                let seq = seq.int().unwrap_or(0).max(0) as u64;
                let why = if promoted {
                    "a replica was promoted"
                } else {
                    "it restarted without an AOF"
                };
                log::line(&format!(
                    "redis {}: another Redis server holds the log now ({why}): its history may have gone back, so ids go on under a new run ({now}, was {run}) and none names two events; clients resume told of the gap",
                    self.target
                ));
                Ok(Some((now, seq)))
            }
            Some([_, _, Reply::Int(0)]) => Ok(None),
            _ => Err(format!("an unexpected answer to the fence: {reply:?}")),
        }
    }

    /// Everything ssed runs, tried or asked before anything is written:
    /// reads directly, writes through Redis 7's ACL check.
    fn check_permissions(&self, conn: &mut Conn) -> Result<(), String> {
        let fix = "grant it to the user ssed logs in as (ACL SETUSER NAME +@all ~ssed:* &*, or the commands docs/instances.md lists)";
        let reads: [(&str, Vec<&[u8]>); 4] = [
            (
                "XREAD",
                vec![
                    b"XREAD",
                    b"COUNT",
                    b"1",
                    b"STREAMS",
                    FEED.as_bytes(),
                    b"0-0",
                ],
            ),
            (
                "XRANGE",
                vec![b"XRANGE", FEED.as_bytes(), b"-", b"+", b"COUNT", b"1"],
            ),
            (
                "XREVRANGE",
                vec![b"XREVRANGE", FEED.as_bytes(), b"+", b"-", b"COUNT", b"1"],
            ),
            ("SMEMBERS", vec![b"SRANDMEMBER", TOPICS.as_bytes()]),
        ];
        let limits = Limits {
            depth: 6,
            ..self.replay_limits()
        };
        for (name, args) in reads {
            match conn.call(&args, &limits) {
                Ok(Reply::Error(e)) if e.starts_with("NOPERM") => {
                    return Err(format!("the Redis user may not run {name} ({e}): {fix}"));
                }
                Ok(Reply::Error(e)) => return Err(format!("Redis refused {name}: {e}")),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        let topic = stream_key("x");
        let idem = format!("{IDEM_PREFIX}x");
        let counts = format!("{SUBS_PREFIX}x");
        let keys: [&[u8]; 12] = [
            RUN.as_bytes(),
            SEQ.as_bytes(),
            topic.as_bytes(),
            FEED.as_bytes(),
            TOPICS.as_bytes(),
            BYTES.as_bytes(),
            CUT.as_bytes(),
            COST.as_bytes(),
            TOTAL.as_bytes(),
            idem.as_bytes(),
            INSTANCES.as_bytes(),
            counts.as_bytes(),
        ];
        let reply = conn
            .eval(&self.can_script, &keys, &[], &small_reply())
            .map_err(|e| e.to_string())?;
        match reply.text() {
            Some("ok" | "unknown") => Ok(()),
            Some(refused) => Err(format!(
                "the Redis user may not run {refused}, which every publish needs: {fix}"
            )),
            None => match reply {
                Reply::Error(e) if e.starts_with("NOPERM") => {
                    Err(format!("the Redis user may not run scripts ({e}): {fix}"))
                }
                other => Err(format!(
                    "an unexpected answer to the permission check: {other:?}"
                )),
            },
        }
    }
}

impl Shared {
    /// Whether Redis is out of memory (`used_memory` at `maxmemory`: then
    /// why, in words), has room (under 90% of it, or no limit: `None`), or
    /// is in between (`Some("")`: as it was; a publish refused for memory
    /// says it is full, one stored that it has room).
    pub(super) fn memory(&self, conn: &mut Conn) -> Result<Option<String>, String> {
        let info = conn
            .call(&[b"INFO", b"memory"], &info_limits())
            .map_err(|e| e.to_string())?;
        let Reply::Bulk(Some(bytes)) = info else {
            // Refused (an ACL): publishes say so when it happens.
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&bytes);
        let number = |name| info_field(&text, name).and_then(|v| v.parse::<u64>().ok());
        Ok(match (number("used_memory"), number("maxmemory")) {
            (Some(used), Some(max)) if max > 0 && used >= max => Some(format!(
                "out of memory: {used} bytes used of maxmemory {max}"
            )),
            (Some(used), Some(max)) if max > 0 && used >= max / 10 * 9 => Some(String::new()),
            _ => None,
        })
    }
}

impl Shared {
    /// A new command connection (publishes, replays, the counts), to the
    /// Redis server the feed checked the log on. After a failover a new
    /// connection may reach the new server before the feed has joined it
    /// (a balancer moves new connections first, or the feed's own
    /// connection has not failed yet); a number taken there could name an
    /// event some client holds under the same run (the new server's
    /// history may be older). Such a connection is not used, nothing was
    /// sent on it, and a feed that follows the log is made to join again,
    /// which checks the new server (and renews the run if its history
    /// cannot be trusted).
    /// (An idle connection to a server other than the one checked last is
    /// not used either: [`super::pool::Pool::with`].)
    pub(super) fn open_command(&self) -> Result<Conn, LinkError> {
        let mut conn = Conn::open(&self.target, self.settings.timeout)?;
        let Some(checked) = lock(&self.server).clone() else {
            return Ok(conn);
        };
        let info = conn
            .call(&[b"INFO", b"server"], &info_limits())
            .map_err(|e| LinkError::Setup(format!("asking which Redis server answers: {e}")))?;
        let now = match info {
            Reply::Bulk(Some(bytes)) => {
                info_field(&String::from_utf8_lossy(&bytes), "run_id").map(str::to_string)
            }
            _ => None,
        };
        if now.as_deref() == Some(checked.as_str()) {
            conn.server = now;
            return Ok(conn);
        }
        let why = format!(
            "another Redis server answers than the one the log was checked on (run_id {}, was {checked}): a failover? Nothing is written there before the feed has joined it",
            now.as_deref().unwrap_or("unreadable")
        );
        // A feed that is joining already is let be (a second kick would
        // only cut its join short).
        if self.down().is_none() {
            self.restart_feed(&why);
        }
        Err(LinkError::Setup(why))
    }
}

/// What `INFO` must say: a primary, and `maxmemory-policy noeviction`:
/// any other policy may drop the event count (ids would repeat) or
/// idempotency keys (a retry would be stored twice). (`INFO` works where
/// managed Redis disables `CONFIG`.)
fn check_info(text: &str) -> Result<(), String> {
    if info_field(text, "role") == Some("slave") {
        return Err(
            "this Redis is a replica, which cannot take publishes: point --redis at the primary"
                .into(),
        );
    }
    match info_field(text, "maxmemory_policy") {
        Some("noeviction") | None => Ok(()),
        Some(policy) => Err(format!(
            "Redis's maxmemory-policy is {policy}: it may evict ssed's keys (the event count, idempotency keys), and ids would repeat or retries be stored twice; set maxmemory-policy noeviction (CONFIG SET maxmemory-policy noeviction, or in redis.conf)"
        )),
    }
}

impl Shared {
    /// `--history-ttl` in Redis (`scripts::AGE`): ages `names`, or, with
    /// `cursor`, the next topics of the sweep; returns the sweep's next
    /// cursor (`0`: it went round). Nothing without a ttl.
    pub(super) fn age(
        &self,
        conn: &mut Conn,
        cursor: Option<&str>,
        names: &[String],
    ) -> Result<String, super::conn::LinkError> {
        let Some(ttl) = self.settings.history_ttl else {
            return Ok("0".into());
        };
        let ttl = ttl.as_millis().max(1).to_string();
        let run_len = (self.hub.run_token().len() + 1).to_string();
        let bound = (self.settings.max_topics.max(1) * 2).to_string();
        let mut args: Vec<&[u8]> = vec![
            ttl.as_bytes(),
            run_len.as_bytes(),
            TOPIC_PREFIX.as_bytes(),
            cursor.unwrap_or("").as_bytes(),
            b"200",
            bound.as_bytes(),
        ];
        args.extend(names.iter().map(|n| n.as_bytes()));
        let keys: [&[u8]; 6] = [
            TOPICS.as_bytes(),
            BYTES.as_bytes(),
            CUT.as_bytes(),
            COST.as_bytes(),
            TOTAL.as_bytes(),
            CUT_FLOOR.as_bytes(),
        ];
        let reply = conn.eval(&self.age_script, &keys, &args, &small_reply())?;
        match reply.items() {
            Some([next, _]) => Ok(next.text().unwrap_or("0").to_string()),
            _ => Err(super::conn::LinkError::Unexpected(format!(
                "an unexpected answer to the sweep of --history-ttl: {reply:?}"
            ))),
        }
    }
}

fn info_limits() -> Limits {
    Limits {
        bulk: 64 * 1024,
        items: 1,
        depth: 1,
        total: 64 * 1024,
    }
}

/// A field of an `INFO` text (`name:value` lines).
pub(super) fn info_field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_fields() {
        let text =
            "# Memory\r\nused_memory:1024\r\nmaxmemory:0\r\nmaxmemory_policy:allkeys-lru\r\n";
        assert_eq!(info_field(text, "maxmemory_policy"), Some("allkeys-lru"));
        assert_eq!(info_field(text, "maxmemory"), Some("0"));
        assert_eq!(info_field(text, "used_memory"), Some("1024"));
        assert_eq!(info_field(text, "nothing"), None);
    }
}
