-- enqueue a batch of jobs: all stored, or none if an id is already taken.
-- ARGV after the common four: 5 the call's nonce, 6 the number of jobs, then
-- per job: id, rank, state (queued/scheduled), run_at, 'k' .. idempotency
-- key ('' for none), the number of field pairs, the pairs for HSET.
-- Reply: {'dup', the first id taken (stored, or earlier in the batch)}, or
-- {'ok', one entry per job: 'n' for stored now, or the HGETALL of the job
-- its idempotency key already holds (keys resolved in order) or of the job
-- this call stored before being resent}.
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

-- all or nothing: refuse before storing any, naming the first id taken
local seen = {}
for _, s in ipairs(starts) do
  local id = ARGV[s]
  local key = jkey(id)
  if seen[id] or (alive(key) and call('HGET', key, '_nonce') ~= nonce) then
    return { 'dup', id }
  end
  seen[id] = true
end

local out, woken, scheduled = { 'ok' }, {}, false
for i, s in ipairs(starts) do
  local id, rank, idem = ARGV[s], tonumber(ARGV[s + 1]), ARGV[s + 4]
  local key = jkey(id)
  local holder = held(idem)
  if holder then
    out[i + 1] = call('HGETALL', jkey(holder))
  elseif call('HGET', key, '_nonce') == nonce then
    out[i + 1] = call('HGETALL', key) -- stored by this call before a resend
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
      if not scheduled then -- one sleeper learns the new due time, and sleeps till then
        scheduled = true
        woken[#woken + 1] = rank
      end
    else
      make_ready(id, key, rank, nil)
      woken[#woken + 1] = rank
    end
    out[i + 1] = 'n'
  end
end
wake_for(woken)
return out
