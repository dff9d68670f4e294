-- read one job (HGETALL, empty if unknown or past its TTL); with ARGV[6] =
-- '1', also ask to be told when it finishes: the finishing script publishes
-- 'j' .. id on the queue's channel if the id is in the watched set.
local id = ARGV[5]
local key = jkey(id)
if not alive(key) then
  return {}
end
if ARGV[6] == '1' and not FINISHED[call('HGET', key, 'state')] then
  call('SADD', K.watched, id)
end
return call('HGETALL', key)
