-- Expire admissions not claimed before their claim deadline; their units come back.
-- ARGV: room, holder, fence, lease_ms, max_batch
local cfg, err = room_for_holder('heartbeat')
if not cfg then
  return err
end
local now = now_ms()
return expire_due(K_ADMITTED, now, 'claim_timeout', cfg, now, tonumber(ARGV[5]))
