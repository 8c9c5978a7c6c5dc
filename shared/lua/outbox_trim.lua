-- Drop events from the outbox once JetStream has acknowledged them, only by the relay that
-- holds the room's relay lease with this fence (a relay that lost its lease mid-batch must
-- not trim what the new holder is delivering). ARGV: room, holder, fence, lease_ms, entry_id...
if not hold_lease('relay', ARGV[2], ARGV[3], tonumber(ARGV[4])) then
  return fail('lease_lost')
end
if #ARGV < 5 then
  return 0
end
local done = 0
for i = 5, #ARGV, 1000 do
  done = done + redis.call('XDEL', K_OUTBOX, unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
return done
