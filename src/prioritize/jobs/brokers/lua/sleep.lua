-- a worker is about to sleep: note it (ARGV[5], the broker's id) so the next
-- enqueue, finish or requeue publishes 'w'; reply the earliest scheduled
-- run_at and lease expiry ('' for none), which bound its sleep.
call('SADD', K.sleepers, ARGV[5])
local first = call('ZRANGE', K.scheduled, 0, 0, 'WITHSCORES')
local lease = call('ZRANGE', K.leases, 0, 0, 'WITHSCORES')
return { first[2] or '', lease[2] or '' }
