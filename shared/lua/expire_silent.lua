-- Expire people waiting whose last heartbeat is older than heartbeat_timeout.
-- ARGV: room, holder, fence, lease_ms, max_batch
local cfg, err = room_for_change()
if not cfg then
  return err
end
if not hold_lease('heartbeat', ARGV[2], ARGV[3], tonumber(ARGV[4])) then
  return fail('lease_lost')
end
local now = now_ms()
local cutoff = now - tonumber(cfg.heartbeat_timeout) * 1000
return expire_due(K_SEEN, cutoff, 'heartbeat_timeout', cfg, now, tonumber(ARGV[5]))
