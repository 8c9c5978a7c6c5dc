-- A worker replica's liveness mark (shared/store/index.py ReplicaSet); not a room script:
-- its header gives the role's two keys, K_REPLICAS (the live replicas, scored by when
-- their marks run out, ms by the store's clock) and K_RELEASES (the count of the role's
-- leases given up early).
-- ARGV: holder, lease_ms. Marks the holder alive for lease_ms from now and drops the marks
-- run out. Answers {live replicas (this one included), leases given up so far}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', K_REPLICAS, now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', K_REPLICAS, '-inf', now)
return {redis.call('ZCARD', K_REPLICAS), tonumber(redis.call('GET', K_RELEASES) or '0')}
