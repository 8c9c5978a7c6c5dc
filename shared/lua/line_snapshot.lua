-- The whole line of a room with what a gateway needs to answer people from memory: the
-- scores in order, the event counter they match, the room's status and pace. Read only.
-- ARGV: room
local cfg = load_cfg()
if not cfg then
  return fail('room_not_found')
end
local st = redis.call('HMGET', K_STATS, 'event_seq', 'rate', 'rate_ts', 'rate_since')
return cjson.encode({
  event_seq = tonumber(st[1] or '0'),
  incarnation = cfg.inc,
  status = cfg.status,
  release_rate = tonumber(cfg.release_rate),
  heartbeat_interval = tonumber(cfg.heartbeat_interval),
  rate = tonumber(st[2] or '0'),
  rate_ts = tonumber(st[3] or '0'),
  rate_since = tonumber(st[4] or '0'),
  now = now_ms(),
  line = redis.call('ZRANGE', K_LINE, 0, -1, 'WITHSCORES'),
})
