//! The Lua scripts of the Redis store: every multi-key step runs atomically on the server.

use redis::Script;

/// Adds or refreshes a node unless a live record is held by another replica.
///
/// KEYS: node hash, node index. ARGV: node id, record JSON, replica, sessions, draining (0/1),
/// last seen ms, now ms, TTL ms.
const REGISTER_LUA: &str = r"
local held_by = redis.call('HGET', KEYS[1], 'replica')
if held_by and held_by ~= ARGV[3] then
  local last = tonumber(redis.call('HGET', KEYS[1], 'last_seen_ms'))
  if last and tonumber(ARGV[7]) - last < tonumber(ARGV[8]) then
    return 0
  end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'json', ARGV[2], 'replica', ARGV[3], 'sessions', ARGV[4],
  'draining', ARGV[5], 'last_seen_ms', ARGV[6])
redis.call('PEXPIRE', KEYS[1], ARGV[8])
redis.call('SADD', KEYS[2], ARGV[1])
return 1
";

/// A heartbeat: only for a record held by the same replica. An operator's drain sticks.
///
/// KEYS: node hash, node index. ARGV: node id, replica, sessions, draining (0/1), now ms,
/// TTL ms.
const HEARTBEAT_LUA: &str = r"
if redis.call('HGET', KEYS[1], 'replica') ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], 'sessions', ARGV[3], 'last_seen_ms', ARGV[5])
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[1], 'draining', '1')
end
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('SADD', KEYS[2], ARGV[1])
return 1
";

/// Marks a live node draining.
///
/// KEYS: node hash. ARGV: now ms, TTL ms.
const SET_DRAINING_LUA: &str = r"
local last = tonumber(redis.call('HGET', KEYS[1], 'last_seen_ms'))
if not last or tonumber(ARGV[1]) - last >= tonumber(ARGV[2]) then
  return 0
end
redis.call('HSET', KEYS[1], 'draining', '1')
return 1
";

/// Removes a node held by the given replica.
///
/// KEYS: node hash, node index. ARGV: node id, replica.
const REMOVE_NODE_LUA: &str = r"
if redis.call('HGET', KEYS[1], 'replica') == ARGV[2] then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[1])
  return 1
end
return 0
";

/// The live nodes (dropping expired ids from the index) with each one's live reservations, in
/// one round trip: what assignment reads per request. Rows are
/// `{id, json, replica, sessions, draining, last_seen_ms, used}`.
///
/// KEYS: node index. ARGV: node key prefix, slots key prefix, `(now_ms`.
const FLEET_LUA: &str = r"
local rows = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[1] .. id
  if redis.call('EXISTS', key) == 0 then
    redis.call('SREM', KEYS[1], id)
  else
    local f = redis.call('HMGET', key, 'json', 'replica', 'sessions', 'draining', 'last_seen_ms')
    local used = redis.call('ZCOUNT', ARGV[2] .. id, ARGV[3], '+inf')
    rows[#rows + 1] = {id, f[1], f[2], f[3], f[4], f[5], tostring(used)}
  end
end
return rows
";

/// Reserves a slot: drops expired leases, refuses when full, else gives out the next epoch.
///
/// KEYS: slots, slot epochs, epoch counter. ARGV: capacity, session id, now ms, expiry ms.
const RESERVE_LUA: &str = r"
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
for _, session in ipairs(expired) do
  redis.call('HDEL', KEYS[2], session)
end
if #expired > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return false
end
local epoch = redis.call('INCR', KEYS[3])
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], epoch)
return epoch
";

/// Extends a live reservation whose epoch matches.
///
/// KEYS: slots, slot epochs. ARGV: session id, epoch, now ms, new expiry ms.
const RENEW_LUA: &str = r"
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then
  return 0
end
local expires = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not expires or tonumber(expires) <= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], 'XX', ARGV[4], ARGV[1])
return 1
";

/// Frees a reservation whose epoch matches.
///
/// KEYS: slots, slot epochs. ARGV: session id, epoch.
const RELEASE_LUA: &str = r"
if redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[2] then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  return 1
end
return 0
";

/// Writes a session record; a new one gets the next sequence number, a replaced one keeps its
/// place. Drops the oldest records beyond the limit.
///
/// KEYS: records, order, sequence counter. ARGV: session id, JSON, limit.
const PUT_SESSION_LUA: &str = r"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  local seq = redis.call('INCR', KEYS[3])
  redis.call('ZADD', KEYS[2], seq, ARGV[1])
  local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[3])
  if excess > 0 then
    for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, excess - 1)) do
      redis.call('HDEL', KEYS[1], id)
    end
    redis.call('ZREMRANGEBYRANK', KEYS[2], 0, excess - 1)
  end
end
return 1
";

/// The newest records, newest first, as `id, json` pairs.
///
/// KEYS: records, order. ARGV: how many.
const SESSIONS_LUA: &str = r"
local out = {}
for _, id in ipairs(redis.call('ZREVRANGE', KEYS[2], 0, tonumber(ARGV[1]) - 1)) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[1], id)
end
return out
";

/// The Lua scripts, each sent by hash (`EVALSHA`) and loaded again if Redis forgot it.
pub(super) struct Scripts {
    pub(super) register: Script,
    pub(super) heartbeat: Script,
    pub(super) set_draining: Script,
    pub(super) remove_node: Script,
    pub(super) fleet: Script,
    pub(super) reserve: Script,
    pub(super) renew: Script,
    pub(super) release: Script,
    pub(super) put_session: Script,
    pub(super) sessions: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Scripts {
            register: Script::new(REGISTER_LUA),
            heartbeat: Script::new(HEARTBEAT_LUA),
            set_draining: Script::new(SET_DRAINING_LUA),
            remove_node: Script::new(REMOVE_NODE_LUA),
            fleet: Script::new(FLEET_LUA),
            reserve: Script::new(RESERVE_LUA),
            renew: Script::new(RENEW_LUA),
            release: Script::new(RELEASE_LUA),
            put_session: Script::new(PUT_SESSION_LUA),
            sessions: Script::new(SESSIONS_LUA),
        }
    }
}
