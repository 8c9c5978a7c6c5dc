-- The whole line of a room with what a gateway needs to answer people from memory: the
-- scores in order, the event counter they match, the room's status and pace. Read only.
-- ARGV: room
local cfg, err = room_for_read()
if not cfg then
  return err
end
local st = redis.call('HMGET', K_STATS, 'event_seq', 'rate', 'rate_ts', 'rate_since',
                      'gone_rate', 'gone_rate_ts', 'pace')
return cjson.encode({
  event_seq = tonumber(st[1] or '0'),
  incarnation = cfg.inc,
  status = cfg.status,
  release_rate = tonumber(cfg.release_rate),
  heartbeat_interval = tonumber(cfg.heartbeat_interval),
  rate = tonumber(st[2] or '0'),
  rate_ts = tonumber(st[3] or '0'),
  rate_since = tonumber(st[4] or '0'),
  gone_rate = tonumber(st[5] or '0'),
  gone_rate_ts = tonumber(st[6] or '0'),
  auto_release = cfg.auto_release == 'true',
  pace = tonumber(st[7] or '-1'),
  now = now_ms(),
  line = redis.call('ZRANGE', K_LINE, 0, -1, 'WITHSCORES'),
})
