-- Expire admissions not claimed before their claim deadline; their units come back.
-- ARGV: room, holder, fence, lease_ms, max_batch
local cfg, err = room_for_change()
if not cfg then
  return err
end
if not hold_lease('heartbeat', ARGV[2], ARGV[3], tonumber(ARGV[4])) then
  return fail('lease_lost')
end
local now = now_ms()
return expire_due(K_ADMITTED, now, 'claim_timeout', cfg, now, tonumber(ARGV[5]))
