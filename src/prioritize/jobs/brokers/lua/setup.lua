-- first use of a queue: record its level names (ARGV[5]); reply the names
-- recorded, which differ from ARGV[5] if the queue was made with other levels.
call('HSETNX', K.meta, 'levels', ARGV[5])
return call('HGET', K.meta, 'levels')
