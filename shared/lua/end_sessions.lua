-- End sessions past their deadline (session_ttl since activation or the last session
-- heartbeat); their units come back. ARGV: room, holder, fence, lease_ms, max_batch
local cfg, err = room_for_holder('heartbeat')
if not cfg then
  return err
end
local now = now_ms()
return expire_due(K_ACTIVE, now, 'session_timeout', cfg, now, tonumber(ARGV[5]))
