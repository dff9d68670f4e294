-- extend the leases ARGV[5] (the worker) holds on ARGV[7..] by ARGV[6]
-- seconds (MemoryBroker.heartbeat). Reply: the ids it no longer holds.
local worker, lease = ARGV[5], tonumber(ARGV[6])
local lost = {}
for i = 7, #ARGV do
  local id = ARGV[i]
  local key = jkey(id)
  local got = call('HMGET', key, 'state', 'worker', 'lease_until')
  if got[1] ~= 'running' or got[2] ~= worker or tonumber(got[3]) <= now then
    lost[#lost + 1] = id -- expired: it is the reaper's, even if not reaped yet
  else
    local until_text = fmt(now + lease)
    call('HSET', key, 'lease_until', until_text)
    call('ZADD', K.leases, until_text, id)
  end
end
return lost
