-- enqueue a batch of jobs: all stored, or none if an id is already taken.
-- ARGV after the common four: 5 the call's nonce, 6 the number of jobs, then
-- per job: id, rank, state (queued/scheduled), run_at, 'k' .. idempotency
-- key ('' for none), the number of field pairs, the pairs for HSET.
-- Reply: {'dup', ids...}, or {'ok', one entry per job: 'n' for stored, or
-- the HGETALL of the job an idempotency key already holds}.
-- A job already holding this call's nonce was stored by this very call
-- before redis-py retried it: it counts as stored, not as a duplicate.
local nonce = ARGV[5]
local starts = {}
local at = 7
for i = 1, tonumber(ARGV[6]) do
  starts[i] = at
  at = at + 6 + 2 * tonumber(ARGV[at + 5])
end

local function held(idem)
  if idem == '' then
    return nil
  end
  local id = call('HGET', K.idem, string.sub(idem, 2))
  if id and alive(jkey(id)) then
    return id
  end
  return nil
end

local dups = { 'dup' }
for _, s in ipairs(starts) do
  local key = jkey(ARGV[s])
  if not held(ARGV[s + 4]) and alive(key) and call('HGET', key, '_nonce') ~= nonce then
    dups[#dups + 1] = ARGV[s]
  end
end
if #dups > 1 then
  return dups
end

local out, stored = { 'ok' }, false
for i, s in ipairs(starts) do
  local id, rank, idem = ARGV[s], tonumber(ARGV[s + 1]), ARGV[s + 4]
  local key = jkey(id)
  local holder = held(idem)
  if holder then
    out[i + 1] = call('HGETALL', jkey(holder))
  elseif call('HGET', key, '_nonce') == nonce then
    out[i + 1] = 'n'
  else
    if call('EXISTS', key) == 1 then
      drop(id) -- past its TTL, not yet dropped
    end
    call('HSET', key, '_nonce', nonce, unpack(ARGV, s + 6, s + 5 + 2 * tonumber(ARGV[s + 5])))
    if idem ~= '' then
      call('HSET', K.idem, string.sub(idem, 2), id)
    end
    if ARGV[s + 2] == 'scheduled' then
      schedule(id, key, rank, ARGV[s + 3])
    else
      make_ready(id, key, rank, nil)
    end
    stored = true
    out[i + 1] = 'n'
  end
end
if stored then
  wake_workers()
end
return out
