//! The Lua scripts ssed runs in Redis, each one atomic step, and how they
//! are loaded (once per Redis, then run by their SHA). Their contracts,
//! which the backend relies on, are each script's doc; `tests/redis.rs`
//! holds them against a real `redis-server`.

use std::sync::Mutex;

/// Makes the run if Redis has none, and says where the log is:
/// `{run, last number}`.
pub(super) const JOIN: &str = r"
local run = redis.call('get', KEYS[1])
if not run then
  run = ARGV[1]
  redis.call('set', KEYS[1], run)
end
return {run, tonumber(redis.call('get', KEYS[2]) or '0')}
";

/// Gives the log a new run, if it still has the run `ARGV[1]`: its history
/// went back (an older snapshot, a promoted replica that lagged, a lost
/// counter), so numbers from here on would name events that some client
/// already holds under the old run. Ids go on under run `ARGV[2]`; an
/// instance that already renewed it is not overruled. Returns `{run, last
/// number}` as [`JOIN`] does.
pub(super) const RENEW: &str = r"
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('set', KEYS[1], ARGV[2])
end
return {redis.call('get', KEYS[1]) or ARGV[2], tonumber(redis.call('get', KEYS[2]) or '0')}
";

/// Notes which Redis server holds the log (`ARGV[1]`, its `run_id`). If
/// another one held it before (a restart, a failover) and its history
/// cannot be trusted to be whole (`ARGV[2]` is not `1`: no AOF, or a
/// promoted replica), the run `ARGV[4]` is renewed to `ARGV[3]`, so that
/// no number given from now on names an event some client holds under
/// the old run. Returns `{run, last number, 1 if renewed}`.
pub(super) const FENCE: &str = r"
local fence = redis.call('get', KEYS[3])
local renewed = 0
if fence ~= ARGV[1] then
  if fence and ARGV[2] ~= '1' and redis.call('get', KEYS[1]) == ARGV[4] then
    redis.call('set', KEYS[1], ARGV[3])
    renewed = 1
  end
  redis.call('set', KEYS[3], ARGV[1])
end
return {redis.call('get', KEYS[1]) or ARGV[3], tonumber(redis.call('get', KEYS[2]) or '0'), renewed}
";

/// Deletes topic `ARGV[2]`: its stream and its part of the accounting,
/// and appends to the feed, under the next number, an entry that tells
/// every instance (`x` = `deleted`). Returns that number, or 0 when there
/// is no such topic.
/// KEYS: run, seq, topic stream, feed, topics, bytes, cut, cost, total.
/// ARGV: run, topic, feed length.
pub(super) const DELETE: &str = r"
if redis.call('get', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('SSEDRUN the shared hub was reset')
end
if redis.call('sismember', KEYS[5], ARGV[2]) == 0 then
  return 0
end
local cost = tonumber(redis.call('zscore', KEYS[8], ARGV[2]) or '0')
redis.call('del', KEYS[3])
redis.call('srem', KEYS[5], ARGV[2])
redis.call('hdel', KEYS[6], ARGV[2])
redis.call('hdel', KEYS[7], ARGV[2])
redis.call('zrem', KEYS[8], ARGV[2])
redis.call('incrby', KEYS[9], -cost)
local seq = redis.call('incr', KEYS[2])
redis.call('xadd', KEYS[4], 'MAXLEN', '~', ARGV[3], seq .. '-0', 't', ARGV[2], 'x', 'deleted')
return seq
";

/// Counts subscribers across instances: stores this instance's counts
/// (`ARGV[3..]`: topic, count, ...) under `KEYS[2]` for `ARGV[2]` ms,
/// notes the instance (`ARGV[1]`) alive in `KEYS[1]` (scored by Redis's
/// own clock, so instances' clocks do not matter), forgets instances not
/// heard from within that time, and returns every other live instance's
/// counts summed: topic, count, ...
/// (The other instances' keys are made from `KEYS[2]`'s prefix: fine on
/// one Redis, not meant for Redis Cluster.)
pub(super) const COUNTS: &str = r"
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('del', KEYS[2])
for i = 3, #ARGV - 1, 2 do
  redis.call('hset', KEYS[2], ARGV[i], ARGV[i + 1])
end
if #ARGV > 2 then
  redis.call('pexpire', KEYS[2], ttl)
end
redis.call('zadd', KEYS[1], now, ARGV[1])
redis.call('zremrangebyscore', KEYS[1], '-inf', now - ttl)
local prefix = string.sub(KEYS[2], 1, #KEYS[2] - #ARGV[1])
local sums = {}
for _, id in ipairs(redis.call('zrange', KEYS[1], 0, -1)) do
  if id ~= ARGV[1] then
    local counts = redis.call('hgetall', prefix .. id)
    for i = 1, #counts, 2 do
      sums[counts[i]] = (sums[counts[i]] or 0) + tonumber(counts[i + 1])
    end
  end
end
local out = {}
for topic, n in pairs(sums) do
  table.insert(out, topic)
  table.insert(out, n)
end
return out
";

/// `--history-ttl` in Redis: drops the events of topics past their age
/// (`ARGV[1]` ms, by Redis's clock), with the accounting the publish keeps,
/// and forgets a topic left with none (its cut stays, so that a resume from
/// before is told of the gap; past `ARGV[6]` cuts, their highest stands for
/// all in `KEYS[6]`). The topics: those after `ARGV[6]` (a replay's), or,
/// with a cursor in `ARGV[4]`, the next `ARGV[5]` of an `SSCAN` of the
/// topics (the sweep). Returns `{next cursor, events dropped}`.
/// KEYS: topics, bytes, cut, cost, total, cut floor.
/// ARGV: ttl, run length, prefix of topic streams, cursor ('' for the
/// names given), count, cut bound, names...
pub(super) const AGE: &str = r"
local clock = redis.call('time')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local cutoff = now - tonumber(ARGV[1])
local run_len = tonumber(ARGV[2])
local function cost(topic, entry_id, fields)
  return #fields[4] + #fields[2] + #topic + run_len + #entry_id - 2 + 128
end
local function age(topic)
  local key = ARGV[3] .. topic
  local dropped = 0
  while true do
    local oldest = redis.call('xrange', key, '-', '+', 'COUNT', 1)[1]
    if not oldest then break end
    local w = nil
    for i = 1, #oldest[2], 2 do
      if oldest[2][i] == 'w' then w = tonumber(oldest[2][i + 1]) end
    end
    if w and w >= cutoff then break end
    redis.call('xdel', key, oldest[1])
    redis.call('hincrby', KEYS[2], topic, -#oldest[2][4])
    redis.call('hset', KEYS[3], topic, oldest[1])
    local c = cost(topic, oldest[1], oldest[2])
    redis.call('zincrby', KEYS[4], -c, topic)
    redis.call('incrby', KEYS[5], -c)
    dropped = dropped + 1
  end
  if redis.call('xlen', key) == 0 and redis.call('sismember', KEYS[1], topic) == 1 then
    redis.call('del', key)
    redis.call('srem', KEYS[1], topic)
    redis.call('hdel', KEYS[2], topic)
    redis.call('zrem', KEYS[4], topic)
  end
  return dropped
end
local names = {}
local cursor = '0'
if ARGV[4] == '' then
  for i = 7, #ARGV do table.insert(names, ARGV[i]) end
else
  local r = redis.call('sscan', KEYS[1], ARGV[4], 'COUNT', ARGV[5])
  cursor = r[1]
  names = r[2]
end
local dropped = 0
for _, topic in ipairs(names) do
  dropped = dropped + age(topic)
end
if redis.call('hlen', KEYS[3]) > tonumber(ARGV[6]) then
  local floor = tonumber(redis.call('get', KEYS[6]) or '0')
  for _, id in ipairs(redis.call('hvals', KEYS[3])) do
    floor = math.max(floor, tonumber(string.match(id, '^(%d+)')))
  end
  redis.call('set', KEYS[6], floor)
  redis.call('del', KEYS[3])
end
return {cursor, dropped}
";

/// Where the newest `ARGV[2]` events up to number `ARGV[1]` of the topics
/// KEYS start: the number just before them (0: there are no more than
/// that). Only a number comes back, whatever the events hold. (The one
/// before the newest n is among some topic's newest n + 1.)
pub(super) const LAST: &str = r"
local upto = ARGV[1] .. '-0'
local n = tonumber(ARGV[2])
local seqs = {}
for _, key in ipairs(KEYS) do
  for _, entry in ipairs(redis.call('xrevrange', key, upto, '-', 'COUNT', n + 1)) do
    table.insert(seqs, tonumber(string.match(entry[1], '^(%d+)')))
  end
end
if #seqs <= n then
  return 0
end
table.sort(seqs, function(a, b) return a > b end)
return seqs[n + 1]
";

/// Appends one event; returns its number. Refuses before taking a number,
/// so that numbers have no holes. Then trims: the topic to its history
/// (events and data), and all topics together to the total budget, the
/// largest topic first, as the hub in memory does (`Hub::enforce_budget`).
/// An event's cost is counted as there: its data, id, name and topic, and
/// 128 bytes. `ssed:cost` is a sorted set of each topic's cost, so that
/// the largest is found at once.
/// A publish carries an idempotency key (the client's `Idempotency-Key`, or
/// one ssed draws): a key already stored answers with its number, and
/// nothing is appended, so that a retry (ssed's after a lost reply, or the
/// client's) stores the event once.
/// KEYS: run, seq, topic stream, feed, topics, bytes, cut, cost, total,
/// idempotency key.
/// ARGV: run, topic, name, data, history, history bytes, max topics, feed
/// length, history total, the prefix of topic streams, the key's lifetime
/// in seconds, the publish's fingerprint (`idempotency::fingerprint`, in
/// hex): the key holds `NUMBER:FINGERPRINT`, and the same key with another
/// fingerprint is refused (`SSEDREUSED`); `--history-ttl` in ms (0: none).
/// Each entry carries when it was published (`w`, ms by Redis's clock).
/// (Each error reply is a code and a message: Redis makes one without a
/// message `ERR CODE`.)
/// (The budget trims topics other than `KEYS[3]`, whose keys it makes from
/// the prefix: fine on one Redis, not meant for Redis Cluster.)
pub(super) const PUBLISH: &str = r"
if redis.call('get', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('SSEDRUN the shared hub was reset')
end
local done = redis.call('get', KEYS[10])
if done then
  local seq, fingerprint = string.match(done, '^(%d+):?(%x*)$')
  if not seq then
    return redis.error_reply('SSEDKEY the idempotency key holds ' .. string.sub(done, 1, 40))
  end
  if fingerprint ~= '' and fingerprint ~= ARGV[12] then
    return redis.error_reply('SSEDREUSED the key was used for another publish')
  end
  return {tonumber(seq), 0, 1}
end
local new_topic = redis.call('sismember', KEYS[5], ARGV[2]) == 0
if new_topic and redis.call('scard', KEYS[5]) >= tonumber(ARGV[7]) then
  return redis.error_reply('SSEDTOPICS there are too many topics')
end
-- Everything that can refuse is asked before anything changes: the
-- count must be past every number the log holds (Redis lost it, or
-- evicted it: a number given again would name two events), and the
-- user must be allowed to write (Redis 7's ACL).
local next = tonumber(redis.call('get', KEYS[2]) or '0') + 1
for _, key in ipairs({KEYS[4], KEYS[3]}) do
  local newest = redis.call('xrevrange', key, '+', '-', 'COUNT', 1)[1]
  if newest and tonumber(string.match(newest[1], '^(%d+)')) >= next then
    return redis.error_reply('SSEDBEHIND the event count is behind the log: Redis lost or evicted it')
  end
end
if redis.acl_check_cmd then
  for _, c in ipairs({{'incr', KEYS[2]}, {'xadd', KEYS[3], '1-0', 'd', ''}, {'xadd', KEYS[4], '1-0', 'd', ''}, {'sadd', KEYS[5], 'x'}, {'set', KEYS[10], 'x'}}) do
    if not redis.acl_check_cmd(unpack(c)) then
      return redis.error_reply('SSEDNOPERM the Redis user may not run ' .. string.upper(c[1]) .. ' on ' .. c[2])
    end
  end
end
if new_topic then
  redis.call('sadd', KEYS[5], ARGV[2])
end
local seq = redis.call('incr', KEYS[2])
local id = seq .. '-0'
local run_len = #ARGV[1] + 1
local function cost(topic, entry_id, fields)
  return #fields[4] + #fields[2] + #topic + run_len + #entry_id - 2 + 128
end
local added = cost(ARGV[2], id, {'e', ARGV[3], 'd', ARGV[4]})
-- When it was published, by Redis's clock: --history-ttl ages by it.
local clock = redis.call('time')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
-- The feed is for instances catching up: it keeps about what the history
-- keeps in all (ARGV[9]), in events the size of this one, and at most
-- ARGV[8].
local feed_len = math.min(tonumber(ARGV[8]), math.max(64, math.floor(tonumber(ARGV[9]) / added)))
redis.call('xadd', KEYS[3], id, 'e', ARGV[3], 'd', ARGV[4], 'w', now)
redis.call('xadd', KEYS[4], 'MAXLEN', '~', feed_len, id, 't', ARGV[2], 'e', ARGV[3], 'd', ARGV[4], 'w', now)
-- Drops the oldest event of a topic; returns what it cost and the data
-- the topic keeps after it, or nil.
local function drop_oldest(topic, key)
  local oldest = redis.call('xrange', key, '-', '+', 'COUNT', 1)[1]
  if not oldest then
    return nil
  end
  redis.call('xdel', key, oldest[1])
  local left = redis.call('hincrby', KEYS[6], topic, -#oldest[2][4])
  redis.call('hset', KEYS[7], topic, oldest[1])
  local c = cost(topic, oldest[1], oldest[2])
  redis.call('zincrby', KEYS[8], -c, topic)
  redis.call('incrby', KEYS[9], -c)
  return c, left
end
redis.call('zincrby', KEYS[8], added, ARGV[2])
local total = redis.call('incrby', KEYS[9], added)
local bytes = redis.call('hincrby', KEYS[6], ARGV[2], #ARGV[4])
local len = redis.call('xlen', KEYS[3])
local history = tonumber(ARGV[5])
local max_bytes = tonumber(ARGV[6])
while len > 0 and (len > history or (bytes > max_bytes and len > 1)) do
  local c, left = drop_oldest(ARGV[2], KEYS[3])
  if not c then break end
  total = total - c
  bytes = left
  len = len - 1
end
-- --history-ttl (ARGV[13] ms, 0: none): the topic's events past their age
-- (one without a time is of before: past it too).
local ttl = tonumber(ARGV[13])
while ttl > 0 and len > 1 do
  local oldest = redis.call('xrange', KEYS[3], '-', '+', 'COUNT', 1)[1]
  local w = nil
  for i = 1, #oldest[2], 2 do
    if oldest[2][i] == 'w' then w = tonumber(oldest[2][i + 1]) end
  end
  if w and w >= now - ttl then break end
  local c = drop_oldest(ARGV[2], KEYS[3])
  if not c then break end
  total = total - c
  len = len - 1
end
local budget = tonumber(ARGV[9])
local trimmed = 0
while total > budget do
  local top = redis.call('zrevrange', KEYS[8], 0, 1, 'WITHSCORES')
  if #top == 0 then break end
  local topic = top[1]
  local mine = tonumber(top[2])
  local second = tonumber(top[4] or '0')
  local dropped = 0
  while total > budget and (dropped == 0 or mine >= second) do
    local c = drop_oldest(topic, ARGV[10] .. topic)
    if not c then break end
    total = total - c
    mine = mine - c
    dropped = dropped + 1
  end
  if dropped == 0 then
    -- Nothing left to drop there: forget its cost, so the next is tried.
    redis.call('zrem', KEYS[8], topic)
  end
  trimmed = trimmed + dropped
end
redis.call('set', KEYS[10], seq .. ':' .. ARGV[12], 'EX', ARGV[11])
return {seq, trimmed, 0}
";

/// How many KEYS and ARGV `PUBLISH` reads (held to the script's text by a
/// test).
pub(super) const PUBLISH_KEYS: usize = 10;
pub(super) const PUBLISH_ARGS: usize = 13;

/// A Lua script, loaded once per Redis and run by its SHA.
pub(super) struct LuaScript {
    pub(super) text: &'static str,
    pub(super) sha: Mutex<Option<String>>,
}

impl LuaScript {
    pub(super) const fn new(text: &'static str) -> LuaScript {
        LuaScript {
            text,
            sha: Mutex::new(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The highest `NAME[n]` a script reads.
    fn highest(script: &str, name: &str) -> usize {
        let mut top = 0;
        let mut rest = script;
        while let Some(i) = rest.find(&format!("{name}[")) {
            rest = &rest[i + name.len() + 1..];
            let n: String = rest.chars().take_while(char::is_ascii_digit).collect();
            top = top.max(n.parse().unwrap_or(0));
        }
        top
    }

    #[test]
    fn the_scripts_read_what_the_backend_passes() {
        // The publish passes exactly what the script reads.
        assert_eq!(highest(PUBLISH, "KEYS"), PUBLISH_KEYS);
        assert_eq!(highest(PUBLISH, "ARGV"), PUBLISH_ARGS);
        // The join: run and seq; one fresh run. The renewal: the old run
        // and a fresh one.
        assert_eq!((highest(JOIN, "KEYS"), highest(JOIN, "ARGV")), (2, 1));
        assert_eq!((highest(RENEW, "KEYS"), highest(RENEW, "ARGV")), (2, 2));
        // The delete: what the publish keeps, less the key; run, topic,
        // the feed's length.
        assert_eq!((highest(DELETE, "KEYS"), highest(DELETE, "ARGV")), (9, 3));
        // The fence: run, seq, fence; the server, trust, a fresh run, the
        // run joined.
        assert_eq!((highest(FENCE, "KEYS"), highest(FENCE, "ARGV")), (3, 4));
        // The replay's start: any number of topic streams, two numbers.
        assert_eq!(highest(LAST, "ARGV"), 2);
        assert!(LAST.contains("ipairs(KEYS)"));
    }

    #[test]
    fn every_error_reply_is_a_code_and_a_message() {
        // Redis 7.0 turns `error_reply('CODE')` into `ERR CODE`, which the
        // backend would not recognise.
        for script in [JOIN, LAST, PUBLISH, RENEW, FENCE, DELETE, COUNTS, AGE] {
            let mut rest = script;
            while let Some(i) = rest.find("error_reply('") {
                rest = &rest[i + "error_reply('".len()..];
                let text: String = rest.chars().take_while(|c| *c != '\'').collect();
                let (code, message) = text.split_once(' ').unwrap_or((&text, ""));
                assert!(
                    code.starts_with("SSED") && code.chars().all(|c| c.is_ascii_uppercase()),
                    "{text}"
                );
                assert!(!message.trim().is_empty(), "{text}");
            }
        }
    }
}
