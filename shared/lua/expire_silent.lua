-- Expire people waiting whose last heartbeat is older than heartbeat_timeout.
-- ARGV: room, holder, fence, lease_ms, max_batch
local cfg, err = room_for_holder('heartbeat')
if not cfg then
  return err
end
local now = now_ms()
local cutoff = now - tonumber(cfg.heartbeat_timeout) * 1000
return expire_due(K_SEEN, cutoff, 'heartbeat_timeout', cfg, now, tonumber(ARGV[5]))
