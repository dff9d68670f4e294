-- put dead jobs back in their queues with fresh attempts (MemoryBroker.requeue_dead).
-- ARGV after the common four: 5 token, 6 'all' or 'ids', 7 batch, 8.. ids.
-- 'all' takes the first `batch` of the dead-letter set. Reply: {requeued,
-- dead jobs left}.
local token = ARGV[5]
local seen = memo_get(token)
if seen then
  return seen
end
local chosen, picked = {}, {}
if ARGV[6] == 'all' then
  chosen = call('ZRANGE', K.dead, 0, tonumber(ARGV[7]) - 1)
else
  for i = 8, #ARGV do
    local id = ARGV[i]
    if not picked[id] and call('ZSCORE', K.dead, id) then
      picked[id] = true
      chosen[#chosen + 1] = id
    end
  end
end
local requeued, woken = 0, {}
for _, id in ipairs(chosen) do
  local key = jkey(id)
  if alive(key) then
    local rank = tonumber(call('HGET', key, 'rank'))
    call('ZREM', K.dead, id)
    call('ZREM', K.expiries, id)
    count('dead', rank, -1)
    call('HSET', key, 'attempts', 0)
    call('HDEL', key, 'finished_at', 'run_at', 'worker', '_expires')
    make_ready(id, key, rank, nil)
    requeued = requeued + 1
    woken[#woken + 1] = rank
  else
    drop(id)
  end
end
wake_for(woken)
local reply = { requeued, call('ZCARD', K.dead) }
memo_put(token, reply)
return reply
