"""The two Lua scripts of the shared budget in Redis (shared.redis_limiter says what they
do and why): one asks for a slot, one records what an answer said. Each reads Redis's own
`TIME`, so pod clocks never decide when a request may go."""

# KEYS: tat, pause, server limit, window, in flight, grants by priority, waiting priorities,
# answers of the last period.
# ARGV: [1] period_us (0: learn), [2] configured limit, [3] safety, [4] take (1/0),
# [5] ticket, [6] jitter_us, [7] in-flight ttl_us, [8] wait while a reset is probed (us),
# [9] conservative period_us, [10] priority (1: highest), [11] minimum share, [12] grace_us,
# [13] how long a window's probe may stay unanswered before another goes (us), [14] paced
# (1: spend a known fixed window no faster than evenly, at any priority).
# Returns {allowed (1/0), wait_us}.
ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local take, prio, grace = ARGV[4] == '1', tonumber(ARGV[10]), tonumber(ARGV[12])
local paced = ARGV[14] == '1'
local jitter, probe_wait, ttl = tonumber(ARGV[6]), tonumber(ARGV[8]), tonumber(ARGV[7])
local function refuse(wait)
  -- A caller told to wait marks its priority until then, so lower ones leave it the slot.
  local until_us = now + wait + grace
  if until_us > tonumber(redis.call('HGET', KEYS[7], prio) or '0') then
    redis.call('HSET', KEYS[7], prio, until_us)
  end
  redis.call('PEXPIRE', KEYS[7], math.floor((wait + grace) / 1000) + 1000)
  return {0, wait}
end
local pause = tonumber(redis.call('GET', KEYS[2]) or '0')
if pause > now then return refuse(pause - now) end
local limit = tonumber(ARGV[2])
local server_limit = tonumber(redis.call('GET', KEYS[3]) or '0')
if server_limit > 0 and server_limit < limit then limit = server_limit end
local w = redis.call('HMGET', KEYS[4], 'reset', 'remaining', 'limit', 'fallback', 'period',
  'windows', 'probe_at', 'sliding', 'log_since')
local sliding = w[8] == '1'
local reset, fallback = tonumber(w[1]), tonumber(w[4] or '0')
local period = tonumber(ARGV[1])
if period == 0 then
  period = tonumber(ARGV[9])
  if tonumber(w[6] or '0') >= 2 then period = tonumber(w[5]) end
end
-- Priority: this priority's grants in the last period (KEYS[6] is its own), and whether a
-- higher one waits.
redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now - period)
local owed, waiting = false, 0  -- waiting: until when a higher priority claims the slot
if prio > 1 and take then redis.call('HSET', KEYS[4], 'a' .. prio, now) end
if prio > 1 then
  -- below its minimum share: no one goes first
  owed = redis.call('ZCARD', KEYS[6]) < tonumber(ARGV[11]) * limit
  local want = redis.call('HGETALL', KEYS[7])
  for i = 1, #want, 2 do
    local claim = tonumber(want[i + 1])
    if not owed and tonumber(want[i]) < prio and claim >= now and claim > waiting then
      waiting = claim
    end
  end
end
-- A lower priority looks again when the higher one's claim ends (it has taken the slot by
-- then, or given it up): not in a tight loop.
local function yield() return {0, waiting - now + 1000} end
local function grant()
  if take then
    if reset then redis.call('HINCRBY', KEYS[4], 'n' .. prio, 1) end
    redis.call('ZADD', KEYS[5], now, ARGV[5])
    redis.call('PEXPIRE', KEYS[5], math.floor(ttl / 1000) + 1000)
    redis.call('ZADD', KEYS[6], now, ARGV[5])
    redis.call('PEXPIRE', KEYS[6], math.floor(period / 1000) + 1000)
    redis.call('HDEL', KEYS[7], prio)
  end
  return {1, 0}
end
if reset and fallback <= now then
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - ttl)
  local inflight = redis.call('ZCARD', KEYS[5])
  local since = tonumber(w[9] or '0')
  if sliding and since > 0 and since <= now - period then
    -- Every request the server counts now was answered within the last period (an
    -- answer comes after its count) or is still in flight: below the limit, one more fits.
    local room = tonumber(w[3]) - math.max(tonumber(w[3]) - tonumber(ARGV[2]), 0)
    local used = redis.call('ZCOUNT', KEYS[8], '(' .. (now - period), '+inf') + inflight
    if used < room then
      if waiting > 0 then return yield() end
      return grant()
    end
    -- Otherwise a slot frees when the answer that makes room is a period old (or when
    -- requests in flight are answered): no probe goes before, it could take that slot twice.
    local k = used - room
    if k >= used - inflight then return refuse(probe_wait) end
    local at = redis.call('ZRANGEBYSCORE', KEYS[8], '(' .. (now - period), '+inf',
      'WITHSCORES', 'LIMIT', k, 1)
    reset = tonumber(at[2]) + period
  end
  if now < reset + jitter then
    local over = tonumber(w[3]) - tonumber(ARGV[2])
    if over < 0 then over = 0 end
    local avail = tonumber(w[2]) - over - inflight
    if avail <= 0 then return refuse(reset + jitter - now) end
    if waiting > 0 then return yield() end
    if owed or (sliding and prio > 1) then return grant() end
    -- Leave lower priorities asking now (within a second or two slots) what remains of
    -- their share of this window.
    local share = math.ceil(tonumber(ARGV[11]) * (tonumber(w[3]) - over))
    local lately = now - 1000000 - 2 * period / (tonumber(w[3]) - over)
    for p = prio + 1, sliding and 0 or 9 do
      local seen = redis.call('HMGET', KEYS[4], 'a' .. p, 'n' .. p)
      if tonumber(seen[1] or '0') >= lately then
        local left = share - tonumber(seen[2] or '0')
        if left > 0 then avail = avail - left end
      end
    end
    if avail <= 0 then return refuse(reset + jitter - now) end
    if prio == 1 and (sliding or not paced) then return grant() end
    -- Below the highest priority, and for a paced backlog, spend no faster than evenly over
    -- the window, so that whatever a higher one needs next finds a slot; it alone may go
    -- ahead of that pace.
    local window_limit = tonumber(w[3]) - over
    if avail >= math.ceil(window_limit * (reset - now) / period) then return grant() end
    local wait = reset - math.floor(avail * period / window_limit) - now
    if wait < probe_wait then wait = probe_wait end
    return {0, wait}
  end
  -- The window has ended: one request goes alone, its answer states the next window.
  if waiting > 0 then return yield() end
  if tonumber(w[7] or '0') > now - tonumber(ARGV[13]) then return {0, probe_wait} end
  if take then redis.call('HSET', KEYS[4], 'probe', ARGV[5], 'probe_at', now) end
  return grant()
end
local interval = math.floor((period + jitter) / limit * (1 + tonumber(ARGV[3])))
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
if tat > now then return refuse(tat - now) end
if waiting > 0 then return yield() end
if take then
  redis.call('SET', KEYS[1], tat + interval, 'PX', math.floor(interval / 1000) + 60000)
end
return grant()
"""

# KEYS: pause, server limit, window, in flight, answers of the last period.
# ARGV: [1] pause_until_us (0: none), [2] lower server limit (0: none), [3] max pause us,
# [4] period_us (limit key lifetime, fallback length), [5] ticket,
# [6] answered (1), no answer (0: may have been counted), never sent (2),
# [7] header limit (-1), [8] remaining (-1), [9] server's reset as epoch us (-1),
# [10] us from now to that reset (-1), [11] throttled (1/0), [12] configured period us (0).
# Returns {learned period us, windows seen, header limit}.
FEEDBACK_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local was_out = redis.call('ZREM', KEYS[4], ARGV[5])
local w = redis.call('HMGET', KEYS[3], 'id', 'remaining', 'period', 'windows', 'probe', 'sliding')
local probed = w[5] == ARGV[5]
if probed then redis.call('HDEL', KEYS[3], 'probe', 'probe_at') end
if ARGV[6] == '2' then return {0, 0, 0} end
local period = tonumber(ARGV[4])
local function counted()
  -- When the server counted it, at the latest: a sliding window frees its slot a period on.
  if w[6] ~= '1' then return end
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - period)
  redis.call('ZADD', KEYS[5], now, ARGV[5] ~= '' and ARGV[5] or tostring(now))
  redis.call('PEXPIRE', KEYS[5], math.floor(period / 1000) + 60000)
  redis.call('HSETNX', KEYS[3], 'log_since', now)
end
if ARGV[6] ~= '1' then
  -- No answer (a timeout, a reset connection): the server may have counted it.
  local left = tonumber(w[2] or '0')
  if was_out == 1 and left > 0 then redis.call('HSET', KEYS[3], 'remaining', left - 1) end
  if was_out == 1 then counted() end
  return {0, 0, 0}
end
local until_us = tonumber(ARGV[1])
if until_us > 0 then
  if until_us > now + tonumber(ARGV[3]) then until_us = now + tonumber(ARGV[3]) end
  local current = tonumber(redis.call('GET', KEYS[1]) or '0')
  if until_us > current and until_us > now then
    redis.call('SET', KEYS[1], until_us, 'PX', math.floor((until_us - now) / 1000) + 1)
  end
end
local lower = tonumber(ARGV[2])
if lower > 0 then
  local current = tonumber(redis.call('GET', KEYS[2]) or '0')
  if current == 0 or lower < current then
    redis.call('SET', KEYS[2], lower, 'PX', math.floor(period / 1000) * 10)
  end
end
local limit, remaining = tonumber(ARGV[7]), tonumber(ARGV[8])
local id, reset_in = tonumber(ARGV[9]), tonumber(ARGV[10])
local learned, windows = tonumber(w[3] or '0'), tonumber(w[4] or '0')
redis.call('PEXPIRE', KEYS[3], math.floor(period / 1000) * 10 + 60000)
-- No headers at all (a gateway's page): the API never counted it; nothing changes.
if ARGV[11] ~= '1' and limit < 0 and remaining < 0 and id < 0 then return {learned, windows, 0} end
if ARGV[11] ~= '1' then counted() end
if ARGV[11] == '1' or limit < 1 or remaining < 0 or remaining > limit or id < 0
    or reset_in > tonumber(ARGV[3]) then
  redis.call('HDEL', KEYS[3], 'reset', 'remaining', 'id')
  redis.call('HSET', KEYS[3], 'fallback', now + period)
  return {learned, windows, limit}
end
-- Read after the window it speaks of had ended (a busy reader): nothing left to use.
if reset_in <= 0 then return {learned, windows, limit} end
local seen = tonumber(w[1])
-- A probe's answer states the window afresh even with the same reset: a sliding window's
-- next request to expire often does so within the same whole second.
if seen == nil or id > seen or (probed and id == seen) then
  -- A window ends at most one period after this answer: sooner than a reset rounded up.
  local known = tonumber(ARGV[12])
  if known == 0 and windows >= 2 then known = learned end
  local ends_in = reset_in
  if known > 0 and known < ends_in then ends_in = known end
  redis.call('HSET', KEYS[3], 'id', id, 'reset', now + ends_in, 'remaining', remaining,
    'limit', limit)
end
if seen == nil or id > seen then
  redis.call('HDEL', KEYS[3], 'n1', 'n2', 'n3', 'n4', 'n5', 'n6', 'n7', 'n8', 'n9')
  windows = windows + 1
  redis.call('HSET', KEYS[3], 'windows', windows)
  -- A fixed window's reset moves a whole period on; a sliding one's moves when its oldest
  -- request stops counting, far sooner. There a reset is no window's end to pace against.
  local span = learned > 0 and learned or tonumber(ARGV[12])
  if seen ~= nil and span > 0 and id - seen < span / 2 then
    redis.call('HSET', KEYS[3], 'sliding', 1)
  end
elseif id == seen and remaining < tonumber(w[2]) then
  redis.call('HSET', KEYS[3], 'remaining', remaining)
end
if reset_in > learned then
  learned = reset_in
  redis.call('HSET', KEYS[3], 'period', learned)
end
return {learned, windows, limit}
"""
