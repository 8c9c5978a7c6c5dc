-- A room's config and live figures in one consistent read. ARGV: room
local cfg, err = room_for_read()
if not cfg then
  return err
end
local flat = redis.call('HGETALL', K_STATS)
local stats = {}
for i = 1, #flat, 2 do
  stats[flat[i]] = flat[i + 1]
end
-- the oldest undelivered event's time (ms, the entry id), 0 when the outbox is empty
local first = redis.call('XRANGE', K_OUTBOX, '-', '+', 'COUNT', 1)
local oldest = 0
if #first > 0 then
  oldest = tonumber(string.match(first[1][1], '^(%d+)'))
end
return cjson.encode({
  config = cfg,
  stats = stats,
  waiting = redis.call('ZCARD', K_LINE),
  admitted = redis.call('ZCARD', K_ADMITTED),
  active = redis.call('ZCARD', K_ACTIVE),
  outbox = redis.call('XLEN', K_OUTBOX),
  latency = redis.call('HVALS', K_LATENCY),
  outbox_oldest = oldest,
  prequeue = redis.call('ZCARD', K_PREQUEUE),
  invites = redis.call('HLEN', K_INVITES),
  now = now_ms(),
})
