-- The protected site says the visit is over: free its units at once. ARGV: room, pid
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
if p.state == 'admitted' or p.state == 'active' then
  local was = p.state
  finish(pid, p, 'completed', 'completed', now)
  emit(cfg.inc, 'completed', pid, { from_state = was, size = p.size }, now)
elseif p.state == 'waiting' then
  return fail('not_admitted')
end
return view(pid, p, cfg, now, false)
