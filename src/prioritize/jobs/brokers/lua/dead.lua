-- the dead-letter set, oldest failure first: up to ARGV[5] jobs' HGETALL.
local limit = tonumber(ARGV[5])
expire(limit + 1000)
local out, from = {}, 0
while #out < limit do
  local ids = call('ZRANGE', K.dead, from, from + limit - 1)
  if #ids == 0 then
    break
  end
  for _, id in ipairs(ids) do
    local key = jkey(id)
    if #out < limit and alive(key) then
      out[#out + 1] = call('HGETALL', key)
    end
  end
  from = from + limit
end
return out
