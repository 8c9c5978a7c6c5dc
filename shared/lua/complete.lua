-- The protected site says the visit is over: free its units at once. ARGV: room, position_id
-- (called with a valid access token: a place the store has in line had its admission lost
-- with the store; its visit is over all the same)
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
if p.state == 'admitted' or p.state == 'active' or p.state == 'waiting' then
  local was = p.state
  finish(position_id, p, 'completed', 'completed', now)
  emit(cfg.inc, 'completed', position_id, { from_state = was, size = p.size }, now)
end
return view(position_id, p, cfg, now, false)
