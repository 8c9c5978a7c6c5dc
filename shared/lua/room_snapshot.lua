-- The whole state of a room at its current event counter, for a snapshot on the stream:
-- recovery restores it (room_restore.lua) and replays only the events after `seq`.
-- Liveness (last seen) is left out: a restore starts it afresh. The policies' state (units
-- per lane, the pre-queue and its draw, invites) is in. ARGV: room
local cfg, err = room_for_change()
if not cfg then
  return err
end
local function zset(key)
  return redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
end
-- the counters, units per lane and the pre-queue's draw; not the rate bucket, the observed
-- rate, the lease fence or the recovering mark (a restore starts or keeps those)
local LEFT_OUT = { tokens = true, tokens_ts = true, tokens_short = true, rate = true,
                   rate_ts = true, rate_since = true, fence = true, recovering = true }
local kept = { event_seq = '0', gone = '0' }
local stats = redis.call('HGETALL', K_STATS)
for i = 1, #stats, 2 do
  if not LEFT_OUT[stats[i]] then
    kept[stats[i]] = stats[i + 1]
  end
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
  prequeue = zset(K_PREQUEUE),
  invites = redis.call('HGETALL', K_INVITES),
})
