-- The admission pace of a room whose pace follows the site (auto_release), as the
-- admission worker's controller decided it, by the replica holding the admission lease.
-- ARGV: room, holder, fence, lease_ms, pace ('' when auto_release is off: the pace is
-- release_rate again), site_p95_ms ('' when no report came), reports
-- Appends `pace_changed` so a replay and an audit see every change of pace.
local cfg, err = room_for_change()
if not cfg then
  return err
end
if not hold_lease('admission', ARGV[2], ARGV[3], tonumber(ARGV[4])) then
  return fail('lease_lost')
end
local now = now_ms()
local fields = { release_rate = tonumber(cfg.release_rate),
                 target_latency_ms = tonumber(cfg.target_latency_ms or '0'),
                 reports = tonumber(ARGV[7]), site_p95_ms = tonumber(ARGV[6]) }
if ARGV[5] == '' then
  if redis.call('HDEL', K_STATS, 'pace') == 0 then
    return 0 -- nothing to clear
  end
  fields.pace = tonumber(cfg.release_rate)
  fields.auto_release = false
else
  local pace = tonumber(ARGV[5])
  if tonumber(redis.call('HGET', K_STATS, 'pace') or '-1') == pace then
    return 0
  end
  redis.call('HSET', K_STATS, 'pace', ARGV[5])
  fields.pace = pace
  fields.auto_release = true
end
emit(cfg.inc, 'pace_changed', nil, fields, now)
return 1
