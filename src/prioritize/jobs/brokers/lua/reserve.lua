-- reserve and finish: apply outcomes, then upkeep, then up to `limit` jobs.
-- ARGV after the common four: 5 token, 6 worker, 7 limit, 8 lease, 9 upkeep
-- batch (0: finish only, no upkeep), 10 sleeper id, 11 allowed levels ('1'
-- or '0' per rank), 12.. the gate's rules (gate_rules), then the number of
-- outcomes and 8 fields per outcome (apply_one).
-- Reply: the applied flags ('1'/'0' per outcome), then each job's HGETALL.
local token, worker = ARGV[5], ARGV[6]
local limit, lease, batch = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local g, at = gate_rules(nlevels, 12)

local function reply(flags, ids)
  local out = { flags }
  for i, id in ipairs(ids) do
    out[i + 1] = call('HGETALL', jkey(id))
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
if applied then
  wake_workers()
end

local ids = {}
if batch > 0 then
  upkeep(batch)
  local queued, running = {}, {}
  for i = 1, nlevels do
    queued[i] = 0
    if string.sub(ARGV[11], i, i) == '1' then
      queued[i] = call('ZCARD', ready_key(i - 1))
    end
    running[i] = tonumber(call('HGET', K.counters, 'running:' .. (i - 1)) or '0')
  end
  local fields = gate_fields(nlevels)
  local before = call('HMGET', K.gate, unpack(fields))
  gate_set_state(g, before)
  for _ = 1, limit do
    local rank = gate_reserve(g, queued, running)
    if rank == nil then
      break
    end
    ids[#ids + 1] = start(rank - 1, worker, lease)
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
  if #ids < limit then
    call('SADD', K.sleepers, ARGV[10])
  end
end
memo_put(token, { flags, ids })
return reply(flags, ids)
