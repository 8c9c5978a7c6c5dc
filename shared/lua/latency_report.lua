-- The protected site's response times, as its WaitroomGuard reports them with a session
-- heartbeat: kept per place (the latest report of each), for the admission pace to follow.
-- Like a heartbeat, a report is liveness, not a state change: it appends no event.
-- ARGV: room, position_id, count, p50_ms, p95_ms, max_ms, window_ms, max_reports
-- Reports older than the window go once the room holds more than max_reports; the whole
-- set expires when reports stop coming.
local cfg, err = room_for_read()
if not cfg then
  return err
end
local now = now_ms()
local window, most = tonumber(ARGV[7]), tonumber(ARGV[8])
redis.call('HSET', K_LATENCY, ARGV[2], cjson.encode({
  t = now, n = tonumber(ARGV[3]), p50 = tonumber(ARGV[4]), p95 = tonumber(ARGV[5]),
  max = tonumber(ARGV[6]),
}))
if redis.call('HLEN', K_LATENCY) > most then
  local flat = redis.call('HGETALL', K_LATENCY)
  local kept = {}
  for i = 1, #flat, 2 do
    local at = cjson.decode(flat[i + 1]).t
    if at < now - window then
      redis.call('HDEL', K_LATENCY, flat[i])
    else
      kept[#kept + 1] = { at, flat[i] }
    end
  end
  table.sort(kept, function(a, b) return a[1] < b[1] end)
  for i = 1, #kept - most do
    redis.call('HDEL', K_LATENCY, kept[i][2])
  end
end
redis.call('PEXPIRE', K_LATENCY, window * 2)
return 1
