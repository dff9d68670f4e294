-- prioritize: the rules every Redis broker script shares (prepended to each script).
--
-- Read src/prioritize/jobs/brokers/redis.py first: it states the key layout and
-- the theory of operation. This file is the in-Redis twin of MemoryBroker's
-- private methods (_make_ready, _unready, _start, _apply, _retry_or_bury,
-- _end, _upkeep, _expire); each function here names the one it ports.
--
-- Every script gets one key, the queue's meta hash (so a cluster client
-- routes the call to the queue's slot), and the same first four ARGV: the key
-- base, now, the number of levels, the dead TTL. Every other key (the fixed
-- ones in K, a ready, waiting and sleepers key per level, the job hashes
-- base .. 'job:' .. id) is named here from the base: they all carry the same
-- hash tag, so they live in the same cluster slot as KEYS[1].
--
-- Numbers cross into Redis as strings formatted by fmt (%.17g), never as Lua
-- numbers: redis.call would print those with %.14g and lose precision.

local call = redis.call
local base = ARGV[1]
local now_text = ARGV[2]
local now = tonumber(now_text)
local nlevels = tonumber(ARGV[3])
local dead_ttl = tonumber(ARGV[4])
local K = {}
for _, name in ipairs({ 'meta', 'counters', 'clocks', 'flows', 'gate', 'scheduled', 'leases',
  'deadlines', 'expiries', 'dead', 'idem', 'watched', 'woken', 'memo', 'memo_times' }) do
  K[name] = base .. name
end
local channel = base .. 'events'
local FINISHED = { succeeded = true, dead = true, cancelled = true, shed = true }
-- a ready or scheduled member is '<16-digit seq>:<id>': ties in score stay FIFO
local ID_AT = 18

local function fmt(x)
  return string.format('%.17g', x)
end

local function ready_key(rank)
  return base .. 'ready:' .. rank
end

local function waiting_key(rank)
  return base .. 'waiting:' .. rank
end

local function sleepers_key(rank)
  return base .. 'sleepers:' .. rank
end

local function jkey(id)
  return base .. 'job:' .. id
end

local function count(name, rank, by)
  call('HINCRBY', K.counters, name .. ':' .. rank, by)
end

local function member(id)
  return string.format('%016d', call('HINCRBY', K.meta, 'seq', 1)) .. ':' .. id
end

local function level_clock(rank)
  return tonumber(call('HGET', K.clocks, rank) or '0')
end

-- True if the job is stored and not past its TTL (dropped lazily by expire)
local function alive(key)
  local got = call('HMGET', key, 'state', '_expires')
  if not got[1] then
    return false
  end
  return not (got[2] and tonumber(got[2]) <= now)
end

-- Sleeping workers. A broker whose workers have free slots is a member of
-- the zset 'sleepers:<rank>' for each level they take, scored by when it
-- last said so. A job made ready wakes one of them (as BLPOP serves one
-- client per push), on the broker's own channel: the latest, whose workers
-- are likely awake anyway, so that under light load one busy worker takes
-- the jobs and the others sleep on. A broker woken stays a sleeper, marked
-- in 'woken' until its next reservation or sleep: that reservation comes
-- after every job made ready meanwhile, so those wake nobody else. A broker
-- that is gone (killed, closed, or its subscription lost) has no subscriber
-- on its channel: SPUBLISH reaches nobody, and the next sleeper is tried;
-- one woken that has not reserved within WOKEN_SECONDS is given up the same
-- way.
local WOKEN_SECONDS = 2

local function forget_sleeper(id)
  for rank = 0, nlevels - 1 do
    call('ZREM', sleepers_key(rank), id)
  end
  call('HDEL', K.woken, id)
end

-- Broker `id` sleeps for the ranks marked '1' in `mask` (none: it is full),
-- and has seen every job made ready so far.
local function set_sleeper(id, mask)
  if not string.find(mask, '1', 1, true) then
    forget_sleeper(id)
    return
  end
  call('HDEL', K.woken, id)
  for rank = 0, nlevels - 1 do
    if string.sub(mask, rank + 1, rank + 1) == '1' then
      call('ZADD', sleepers_key(rank), now_text, id)
    else
      call('ZREM', sleepers_key(rank), id)
    end
  end
end

-- Make sure a sleeping broker that takes jobs of `rank` will look (false if
-- none sleeps for it). With `fresh`, the message carries the queue's seq: a
-- broker whose last reservation came later has seen the job already.
local function wake_one(rank, fresh)
  while true do
    local id = call('ZRANGE', sleepers_key(rank), -1, -1)[1]
    if not id then
      return false
    end
    local woken = call('HGET', K.woken, id)
    if woken and now - tonumber(woken) < WOKEN_SECONDS then
      return true -- its reservation is on its way, and will see this job
    end
    local message = 'w'
    if fresh then
      message = 'w' .. (call('HGET', K.meta, 'seq') or '0')
    end
    if not woken and call('SPUBLISH', base .. 'wake:' .. id, message) > 0 then
      call('HSET', K.woken, id, now_text)
      return true
    end
    forget_sleeper(id)
  end
end

-- MemoryBroker._make_ready: QUEUED at the back of its flow, or at `tag` (redelivery).
local function make_ready(id, key, rank, tag)
  local got = call('HMGET', key, 'flow', 'deadline')
  if tag == nil then
    local flow_key = rank .. ':' .. (got[1] or '')
    local last = tonumber(call('HGET', K.flows, flow_key) or '0')
    tag = math.max(last, level_clock(rank)) + 1
    call('HSET', K.flows, flow_key, fmt(tag))
  end
  local m = member(id)
  call('ZADD', ready_key(rank), fmt(tag), m)
  call('ZADD', waiting_key(rank), now_text, id)
  call('HSET', key, 'state', 'queued', '_member', m)
  if got[2] then
    call('ZADD', K.deadlines, got[2], id)
  end
end

-- MemoryBroker._unready: take a QUEUED job out of its level.
local function unready(id, key, rank)
  call('ZREM', ready_key(rank), call('HGET', key, '_member'))
  call('ZREM', waiting_key(rank), id)
  call('ZREM', K.deadlines, id)
  call('HDEL', key, '_member')
end

local function schedule(id, key, rank, run_at_text)
  local m = member(id)
  call('ZADD', K.scheduled, run_at_text, m)
  call('HSET', key, 'state', 'scheduled', 'run_at', run_at_text, '_smember', m)
  count('scheduled', rank, 1)
end

-- MemoryBroker._start: the front job of level `rank` starts under a lease.
local function start(rank, worker, lease)
  local popped = call('ZPOPMIN', ready_key(rank))
  local id = string.sub(popped[1], ID_AT)
  local tag = tonumber(popped[2])
  local key = jkey(id)
  call('ZREM', waiting_key(rank), id)
  call('ZREM', K.deadlines, id)
  local clock = math.max(level_clock(rank), tag)
  call('HSET', K.clocks, rank, fmt(clock))
  local flow_key = rank .. ':' .. (call('HGET', key, 'flow') or '')
  if tonumber(call('HGET', K.flows, flow_key) or '0') <= clock then
    call('HDEL', K.flows, flow_key) -- same as absent from now on
  end
  count('running', rank, 1)
  call('HINCRBY', key, 'attempts', 1)
  local until_text = fmt(now + lease)
  call('HSET', key, 'state', 'running', 'worker', worker, 'lease_until', until_text,
    'started_at', now_text)
  call('HDEL', key, '_member')
  call('ZADD', K.leases, until_text, id)
  return id
end

-- MemoryBroker._end: a job finished; schedule its expiry, wake whoever awaits it.
local function finish_job(id, key, state, ttl)
  local expires = fmt(now + ttl)
  call('HSET', key, 'state', state, 'finished_at', now_text, '_expires', expires)
  call('ZADD', K.expiries, expires, id)
  if call('SREM', K.watched, id) == 1 then
    call('SPUBLISH', channel, 'j' .. id)
  end
end

local function result_ttl(key)
  return tonumber(call('HGET', key, 'result_ttl'))
end

-- MemoryBroker._retry_or_bury: dead, scheduled for `retry_at`, or ready again now.
local function retry_or_bury(id, key, rank, retry_at_text)
  if retry_at_text == nil then
    finish_job(id, key, 'dead', dead_ttl)
    call('ZADD', K.dead, call('HINCRBY', K.meta, 'seq', 1), id)
    count('dead', rank, 1)
  elseif tonumber(retry_at_text) > now then
    schedule(id, key, rank, retry_at_text)
  else
    call('HDEL', key, 'run_at')
    make_ready(id, key, rank, nil)
  end
end

local function set_or_clear(key, field, present, value)
  if present then
    call('HSET', key, field, value)
  else
    call('HDEL', key, field)
  end
end

-- MemoryBroker._apply, one outcome. `o` is the ARGV index of its 8 fields:
-- id, attempt, kind (s/f/r), presence flags of the next four, result, error,
-- traceback, retry_at.
local function apply_one(worker, o)
  local id = ARGV[o]
  local key = jkey(id)
  local got = call('HMGET', key, 'state', 'worker', 'attempts', 'rank')
  if got[1] ~= 'running' or got[2] ~= worker or got[3] ~= ARGV[o + 1] then
    return false
  end
  local rank = tonumber(got[4])
  local kind, present = ARGV[o + 2], ARGV[o + 3]
  count('running', rank, -1)
  call('ZREM', K.leases, id)
  call('HDEL', key, 'lease_until')
  if kind == 's' then
    count('succeeded', rank, 1)
    set_or_clear(key, 'result', string.sub(present, 1, 1) == '1', ARGV[o + 4])
    finish_job(id, key, 'succeeded', result_ttl(key))
  elseif kind == 'f' then
    count('failed', rank, 1)
    set_or_clear(key, 'error', string.sub(present, 2, 2) == '1', ARGV[o + 5])
    set_or_clear(key, 'traceback', string.sub(present, 3, 3) == '1', ARGV[o + 6])
    local retry_at = nil
    if string.sub(present, 4, 4) == '1' then
      retry_at = ARGV[o + 7]
    end
    retry_or_bury(id, key, rank, retry_at)
  else
    call('HINCRBY', key, 'attempts', -1)
    make_ready(id, key, rank, level_clock(rank))
  end
  return true
end

-- MemoryBroker._expire: drop a finished job past its TTL, and what points at it.
local function drop(id)
  local key = jkey(id)
  local got = call('HMGET', key, 'state', 'rank', 'idempotency_key')
  if got[1] == 'dead' then
    call('ZREM', K.dead, id)
    count('dead', tonumber(got[2]), -1)
  end
  if got[3] and call('HGET', K.idem, got[3]) == id then
    call('HDEL', K.idem, got[3])
  end
  call('SREM', K.watched, id)
  call('ZREM', K.expiries, id)
  call('DEL', key)
end

local function expire(batch)
  local due = call('ZRANGEBYSCORE', K.expiries, '-inf', now_text, 'LIMIT', 0, batch)
  for _, id in ipairs(due) do
    drop(id)
  end
end

-- MemoryBroker._upkeep. Leases, promotions and expiries take at most `batch`
-- each per call, so one call never blocks Redis for long; missed deadlines
-- are all shed, so no job is ever started after its deadline.
local function upkeep(batch)
  local due = call('ZRANGEBYSCORE', K.leases, '-inf', now_text, 'LIMIT', 0, batch)
  for _, id in ipairs(due) do
    local key = jkey(id)
    call('ZREM', K.leases, id)
    local got = call('HMGET', key, 'worker', 'attempts', 'retries', 'rank')
    local rank = tonumber(got[4])
    count('running', rank, -1)
    count('failed', rank, 1)
    call('HSET', key, 'error',
      'LeaseExpired: worker ' .. (got[1] or 'None') .. ' stopped renewing its lease')
    call('HDEL', key, 'traceback', 'lease_until')
    if tonumber(got[2]) >= tonumber(got[3]) + 1 then
      retry_or_bury(id, key, rank, nil)
    else
      make_ready(id, key, rank, level_clock(rank))
    end
  end
  due = call('ZRANGEBYSCORE', K.scheduled, '-inf', now_text, 'LIMIT', 0, batch)
  for _, m in ipairs(due) do
    local id = string.sub(m, ID_AT)
    local key = jkey(id)
    local rank = tonumber(call('HGET', key, 'rank'))
    call('ZREM', K.scheduled, m)
    call('HDEL', key, 'run_at', '_smember')
    count('scheduled', rank, -1)
    make_ready(id, key, rank, nil)
  end
  due = call('ZRANGEBYSCORE', K.deadlines, '-inf', now_text)
  for _, id in ipairs(due) do
    local key = jkey(id)
    local rank = tonumber(call('HGET', key, 'rank'))
    unready(id, key, rank)
    count('shed', rank, 1)
    call('HSET', key, 'reason', 'timeout')
    finish_job(id, key, 'shed', result_ttl(key))
  end
  expire(batch)
end

-- Replies kept for a while under the caller's token, so a call that redis-py
-- retries after a lost connection returns the first reply instead of acting
-- twice (a reservation would otherwise be made twice, the first one lost).
local MEMO_SECONDS = 300

local function memo_get(token)
  local packed = call('HGET', K.memo, token)
  if packed then
    return cmsgpack.unpack(packed)
  end
  return nil
end

local function memo_put(token, value)
  call('HSET', K.memo, token, cmsgpack.pack(value))
  call('ZADD', K.memo_times, now_text, token)
  local old = call('ZRANGEBYSCORE', K.memo_times, '-inf', fmt(now - MEMO_SECONDS),
    'LIMIT', 0, 16)
  for _, t in ipairs(old) do
    call('HDEL', K.memo, t)
    call('ZREM', K.memo_times, t)
  end
end

-- What bounds a sleep: the earliest scheduled run_at and lease expiry ('' for none).
local function sleep_bounds()
  local first = call('ZRANGE', K.scheduled, 0, 0, 'WITHSCORES')
  local lease = call('ZRANGE', K.leases, 0, 0, 'WITHSCORES')
  return first[2] or '', lease[2] or ''
end

-- Wake a sleeper for each rank in `ranks` (a list, repeats allowed: one
-- wakeup each), while any sleeps for that rank.
local function wake_for(ranks)
  local nobody = {}
  for _, rank in ipairs(ranks) do
    if not nobody[rank] and not wake_one(rank, true) then
      nobody[rank] = true
    end
  end
end
