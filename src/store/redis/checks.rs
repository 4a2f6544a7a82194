//! What Redis must be for ssed's promises to hold, checked each time the
//! link comes up: an eviction policy that never drops ssed's keys, and a
//! user that may run everything ssed runs. A check that fails keeps the
//! link down, with one sentence that names what is wrong and the fix;
//! the feed thread tries again with back-off.

use super::conn::{small_reply, Conn};
use super::keys::{stream_key, BYTES, COST, CUT, FEED, IDEM_PREFIX, RUN, SEQ, TOPICS, TOTAL};
use super::{Limits, Reply, Shared};
use crate::log;

/// Checks what a user may run, with Redis 7's `redis.acl_check_cmd`
/// (older Redis has no ACL of that kind: `unknown`). Returns the first
/// command refused with its keys, or `ok`.
/// KEYS: run, seq, a topic stream, feed, topics, bytes, cut, cost, total,
/// an idempotency key.
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
}
for _, c in ipairs(checks) do
  if not redis.acl_check_cmd(unpack(c)) then
    return string.upper(c[1]) .. ' ' .. c[2]
  end
end
return 'ok'
";

impl Shared {
    /// The checks of a new link: the eviction policy, then what the user
    /// may run.
    pub(super) fn check_redis(&self, conn: &mut Conn) -> Result<(), String> {
        self.check_policy(conn)?;
        self.check_permissions(conn)
    }

    /// `maxmemory-policy` must be `noeviction`: any other may drop the
    /// event count (ids would repeat) or idempotency keys (a retry would
    /// be stored twice). Read from `INFO memory`, which managed Redis
    /// allows where `CONFIG` is disabled.
    fn check_policy(&self, conn: &mut Conn) -> Result<(), String> {
        let info = conn
            .call(&[b"INFO", b"memory"], &info_limits())
            .map_err(|e| e.to_string())?;
        let text = match &info {
            Reply::Bulk(Some(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
            Reply::Error(e) => {
                log::line(&format!(
                    "redis {}: cannot read the eviction policy (INFO memory: {e}); ssed's promises hold only with maxmemory-policy noeviction",
                    self.target
                ));
                return Ok(());
            }
            other => return Err(format!("an unexpected answer to INFO memory: {other:?}")),
        };
        match info_field(&text, "maxmemory_policy") {
            Some("noeviction") | None => Ok(()),
            Some(policy) => Err(format!(
                "Redis's maxmemory-policy is {policy}: it may evict ssed's keys (the event count, idempotency keys), and ids would repeat or retries be stored twice; set maxmemory-policy noeviction (CONFIG SET maxmemory-policy noeviction, or in redis.conf)"
            )),
        }
    }

    /// Everything ssed runs, tried or asked before anything is written:
    /// reads directly, writes through Redis 7's ACL check.
    fn check_permissions(&self, conn: &mut Conn) -> Result<(), String> {
        let fix = "grant it to the user ssed logs in as (ACL SETUSER NAME +@all ~ssed:* &*, or the commands the README lists)";
        let reads: [(&str, Vec<&[u8]>); 4] = [
            ("XREAD", vec![b"XREAD", b"COUNT", b"1", b"STREAMS", FEED.as_bytes(), b"0-0"]),
            ("XRANGE", vec![b"XRANGE", FEED.as_bytes(), b"-", b"+", b"COUNT", b"1"]),
            ("XREVRANGE", vec![b"XREVRANGE", FEED.as_bytes(), b"+", b"-", b"COUNT", b"1"]),
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
        let keys: [&[u8]; 10] = [
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
                other => Err(format!("an unexpected answer to the permission check: {other:?}")),
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
        let text = "# Memory\r\nused_memory:1024\r\nmaxmemory:0\r\nmaxmemory_policy:allkeys-lru\r\n";
        assert_eq!(info_field(text, "maxmemory_policy"), Some("allkeys-lru"));
        assert_eq!(info_field(text, "maxmemory"), Some("0"));
        assert_eq!(info_field(text, "used_memory"), Some("1024"));
        assert_eq!(info_field(text, "nothing"), None);
    }
}
