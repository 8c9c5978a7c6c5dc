-- Where does this person stand. ARGV: room, pid, touch (1 = a heartbeat: mark them seen).
-- A heartbeat is liveness, not a state change: it appends no event.
local pid = ARGV[2]
local cfg = load_cfg()
if not cfg then
  return fail('room_not_found')
end
local p = get_person(pid)
if not p then
  return fail('position_not_found')
end
local now = now_ms()
if ARGV[3] == '1' and p.state == 'waiting' then
  redis.call('ZADD', K_SEEN, 'XX', now, pid)
end
return view(pid, p, cfg, now, false)
