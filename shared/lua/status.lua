-- Where does this person stand. ARGV: room, position_id, touch (1 = a heartbeat: mark them seen).
-- A heartbeat is liveness, not a state change: it appends no event.
local position_id = ARGV[2]
local cfg, err = room_for_read()
if not cfg then
  return err
end
local p = get_person(position_id)
if not p then
  return fail('position_not_found')
end
local now = now_ms()
if ARGV[3] == '1' and p.state == 'waiting' then
  redis.call('ZADD', K_SEEN, 'XX', now, position_id)
end
return view(position_id, p, cfg, now, false)
