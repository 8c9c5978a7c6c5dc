-- The whole state of a room at its current event counter, for a snapshot on the stream:
-- recovery restores it (room_restore.lua) and replays only the events after `seq`.
-- Liveness (last seen) is left out: a restore starts it afresh. ARGV: room
local cfg, err = room_for_change()
if not cfg then
  return err
end
local function zset(key)
  return redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
end
local kept = {}
for _, name in ipairs({ 'arrival', 'event_seq', 'used_units', 'admitted_total', 'expired_total',
                        'enqueued_total', 'completed_total', 'left_total', 'gone' }) do
  kept[name] = redis.call('HGET', K_STATS, name) or '0'
end
return cjson.encode({
  v = SCHEMA_VERSION,
  seq = tonumber(kept.event_seq),
  ts = now_ms() / 1000,
  cfg = cfg,
  stats = kept,
  people = redis.call('HGETALL', K_PEOPLE),
  line = zset(K_LINE),
  admitted = zset(K_ADMITTED),
  active = zset(K_ACTIVE),
  ended = zset(K_ENDED),
  pow = zset(K_POW),
  ips = redis.call('HGETALL', K_IPS),
})
