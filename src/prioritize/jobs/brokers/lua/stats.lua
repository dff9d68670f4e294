-- upkeep, then per level: queued, running, scheduled, dead, succeeded,
-- failed, cancelled, shed, oldest_wait (seconds, as text). ARGV[5]: batch.
upkeep(tonumber(ARGV[5]))
local names = { 'running', 'scheduled', 'dead', 'succeeded', 'failed', 'cancelled', 'shed' }
local out = {}
for rank = 0, nlevels - 1 do
  out[#out + 1] = call('ZCARD', ready_key(rank))
  for _, name in ipairs(names) do
    out[#out + 1] = tonumber(call('HGET', K.counters, name .. ':' .. rank) or '0')
  end
  local oldest = call('ZRANGE', waiting_key(rank), 0, 0, 'WITHSCORES')
  out[#out + 1] = oldest[2] and fmt(now - tonumber(oldest[2])) or '0'
end
return out
