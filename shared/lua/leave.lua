-- Give up a place (or an admission, or a session). ARGV: room, pid
local pid = ARGV[2]
local cfg, err = room_for_change()
if not cfg then
  return fail(err)
end
local p = get_person(pid)
if not p then
  return fail('position_not_found')
end
local now = now_ms()
if p.state == 'waiting' or p.state == 'admitted' or p.state == 'active' then
  local was = p.state
  finish(pid, p, 'left', 'left', now)
  emit(cfg.inc, 'left', pid, { from_state = was, size = p.size }, now)
end
return view(pid, p, cfg, now, false)
