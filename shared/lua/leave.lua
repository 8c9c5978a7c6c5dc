-- Give up a place (or an admission, or a session). ARGV: room, position_id
local position_id = ARGV[2]
local cfg, err = room_for_change()
if not cfg then
  return err
end
local p = get_person(position_id)
if not p then
  return fail('position_not_found')
end
local now = now_ms()
if p.state == 'waiting' or p.state == 'admitted' or p.state == 'active' then
  local was = p.state
  finish(position_id, p, 'left', 'left', now)
  emit(cfg.inc, 'left', position_id, { from_state = was, size = p.size }, now)
end
return view(position_id, p, cfg, now, false)
