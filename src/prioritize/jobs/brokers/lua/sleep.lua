-- a worker is about to sleep: the broker (ARGV[5], its sleeper id) sleeps for
-- the levels marked '1' in ARGV[6], so the next job of one of them wakes it.
-- ARGV[7]: the queue's seq at the broker's last reservation when that one
-- could not make it a sleeper ('' otherwise). Reply: the earliest scheduled
-- run_at and lease expiry ('' for none), which bound its sleep, and '1' if
-- jobs were made ready or scheduled since that reservation: look again now.
set_sleeper(ARGV[5], ARGV[6])
local first, lease = sleep_bounds()
local since = ARGV[7]
local changed = since ~= '' and tonumber(call('HGET', K.meta, 'seq') or '0') > tonumber(since)
return { first, lease, changed and '1' or '0' }
