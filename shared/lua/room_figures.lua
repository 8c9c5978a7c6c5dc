-- A room's config and live figures in one consistent read. ARGV: room
local cfg = load_cfg()
if not cfg then
  return fail('room_not_found')
end
local flat = redis.call('HGETALL', K_STATS)
local stats = {}
for i = 1, #flat, 2 do
  stats[flat[i]] = flat[i + 1]
end
return cjson.encode({
  config = cfg,
  stats = stats,
  waiting = redis.call('ZCARD', K_LINE),
  admitted = redis.call('ZCARD', K_ADMITTED),
  active = redis.call('ZCARD', K_ACTIVE),
  outbox = redis.call('XLEN', K_OUTBOX),
  latency = redis.call('HVALS', K_LATENCY),
  now = now_ms(),
})
