-- reserve and finish: apply outcomes, then upkeep, then up to `limit` jobs.
-- ARGV after the common four: 5 token, 6 worker, 7 limit, 8 lease, 9 upkeep
-- batch (0: finish only, no upkeep), 10 the broker's sleeper id ('' when it
-- cannot be woken yet: not subscribed), 11 allowed levels ('1' or '0' per
-- rank), 12 the levels the broker's other workers with free slots take,
-- 13.. the gate's rules (gate_rules), then the number of outcomes and 8
-- fields per outcome (apply_one).
-- Reply: the applied flags ('1'/'0' per outcome), the queue's seq (see
-- sleep.lua), the bounds of sleep.lua if it is now a sleeper ('' if not),
-- then each job's HGETALL.
local token, worker, sleeper = ARGV[5], ARGV[6], ARGV[10]
local limit, lease, batch = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local allowed, others = ARGV[11], ARGV[12]
local g, at = gate_rules(nlevels, 13)

local function reply(flags, ids)
  local out = { flags, call('HGET', K.meta, 'seq') or '0', '', '' }
  if sleeper ~= '' and #ids < limit then -- so its next sleep needs no call
    out[3], out[4] = sleep_bounds()
  end
  for i, id in ipairs(ids) do
    out[i + 4] = call('HGETALL', jkey(id))
  end
  return out
end

local seen = memo_get(token)
if seen then
  return reply(seen[1], seen[2])
end

local flags, applied = {}, false
local outcomes = tonumber(ARGV[at])
for i = 1, outcomes do
  local ok = apply_one(worker, at + 1 + (i - 1) * 8)
  flags[i] = ok and '1' or '0'
  applied = applied or ok
end
flags = table.concat(flags)

if batch > 0 then
  upkeep(batch)
end
local queued, running = {}, {}
for i = 1, nlevels do
  queued[i] = call('ZCARD', ready_key(i - 1))
  running[i] = tonumber(call('HGET', K.counters, 'running:' .. (i - 1)) or '0')
end

local ids = {}
if batch > 0 then
  local mine = {}
  for i = 1, nlevels do
    mine[i] = string.sub(allowed, i, i) == '1' and queued[i] or 0
  end
  local fields = gate_fields(nlevels)
  local before = call('HMGET', K.gate, unpack(fields))
  gate_set_state(g, before)
  for _ = 1, limit do
    local rank = gate_reserve(g, mine, running)
    if rank == nil then
      break
    end
    ids[#ids + 1] = start(rank - 1, worker, lease)
    mine[rank] = mine[rank] - 1
    queued[rank] = queued[rank] - 1
    running[rank] = running[rank] + 1
  end
  local after = gate_state(g)
  for i = 1, #fields do
    if after[i] ~= (before[i] or '0') then
      local kv = {}
      for j = 1, #fields do
        kv[#kv + 1] = fields[j]
        kv[#kv + 1] = after[j]
      end
      call('HSET', K.gate, unpack(kv))
      break
    end
  end
  if sleeper ~= '' then -- asleep for the levels of its workers with free slots
    local mask = {}
    for i = 1, nlevels do
      local free = #ids < limit and string.sub(allowed, i, i) == '1'
      mask[i] = (free or string.sub(others, i, i) == '1') and '1' or '0'
    end
    set_sleeper(sleeper, table.concat(mask))
  end
end

-- Hand the wakeup on. Jobs this worker left (it is full, or they are of
-- levels it does not take), or that the outcomes made startable (a seat
-- freed, a retry due now): if the gate would start one, wake one sleeper
-- for it, who hands on in turn if it fills up.
local left, any = {}, false
for i = 1, nlevels do
  left[i] = 0
  if applied or #ids == limit or string.sub(allowed, i, i) ~= '1' then
    left[i] = queued[i]
    any = any or queued[i] > 0
  end
end
if any then
  local rank = gate_reserve(g, left, running) -- g's state is not stored again
  if rank ~= nil then
    wake_one(rank - 1, false)
  end
end
memo_put(token, { flags, ids })
return reply(flags, ids)
