-- cancel a job that has not started (MemoryBroker.cancel); ARGV[5] is its id.
-- Reply: its HGETALL as it now is, empty if unknown or past its TTL.
local id = ARGV[5]
local key = jkey(id)
if not alive(key) then
  return {}
end
local got = call('HMGET', key, 'state', 'rank', '_smember')
local rank = tonumber(got[2])
if got[1] == 'queued' then
  unready(id, key, rank)
elseif got[1] == 'scheduled' then
  call('ZREM', K.scheduled, got[3])
  call('HDEL', key, '_smember')
  count('scheduled', rank, -1)
else
  return call('HGETALL', key)
end
count('cancelled', rank, 1)
call('HSET', key, 'reason', 'cancelled')
finish_job(id, key, 'cancelled', result_ttl(key))
return call('HGETALL', key)
