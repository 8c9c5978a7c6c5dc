-- A worker replica says it is alive: its mark in the role's live set runs until now +
-- ARGV[2] ms by this server's clock (so skew between pods neither expires a live replica
-- nor keeps a dead one); marks that ran out go; the answer is how many are alive.
-- KEYS[1]: the role's live set (not a room's key). ARGV: holder, lease ms.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
