-- Forget people who ended longer ago than the retention (their status answers 404 then).
-- A place that is live again (put back from its token) only leaves the ended set. Not
-- while the room is rebuilt. ARGV: room, holder, fence, lease_ms, max_batch, retention_ms
local cfg, err = room_for_change()
if not cfg then
  return err
end
if not hold_lease('heartbeat', ARGV[2], ARGV[3], tonumber(ARGV[4])) then
  return fail('lease_lost')
end
local cutoff = now_ms() - tonumber(ARGV[6])
local old = redis.call('ZRANGEBYSCORE', K_ENDED, '-inf', cutoff, 'LIMIT', 0, tonumber(ARGV[5]))
for _, position_id in ipairs(old) do
  local p = get_person(position_id)
  if p and (p.state == 'completed' or p.state == 'expired' or p.state == 'left') then
    redis.call('HDEL', K_PEOPLE, position_id)
  end
  redis.call('ZREM', K_ENDED, position_id)
end
return #old
