-- Remove a room and all its state. The outbox stays until the relay has delivered the
-- final room_deleted event; the event counter stays so seq keeps rising. ARGV: room
local cfg = load_cfg()
if not cfg then
  return fail('room_not_found')
end
emit(cfg.inc, 'room_deleted', nil, {}, now_ms())
local eseq = redis.call('HGET', K_STATS, 'eseq')
local fence = redis.call('HGET', K_STATS, 'fence') or '0'
redis.call('DEL', K_CFG, K_STATS, K_LINE, K_SEEN, K_PEOPLE, K_ADMITTED, K_ACTIVE, K_IPS,
           K_ENDED, K_LEASE.admission, K_LEASE.heartbeat)
redis.call('HSET', K_STATS, 'eseq', eseq, 'fence', fence)
return 1
